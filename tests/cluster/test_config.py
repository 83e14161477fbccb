"""The cluster options: parsing, errors naming file:line:option, `midge check`."""

from __future__ import annotations

import pytest

from midge.cli.check import main as check_main
from midge.config import ConfigError, load_config, read_config


def load(tmp_path, text):
    path = tmp_path / "m.conf"
    path.write_text("listener 1883\nallow_anonymous true\n" + text)
    return load_config(str(path))


def test_defaults(tmp_path):
    config = load(tmp_path, "")
    assert config.cluster_url == [] and config.cluster_name == "midge"
    assert config.cluster_node_id is None and config.workers == 1


def test_repeatable_urls_and_names(tmp_path):
    config = load(tmp_path, "cluster_url nats://127.0.0.1:4222\ncluster_url tls://u:p@nats.example:4443\n"
                            "cluster_name plant-7\ncluster_node_id node.a-1\nworkers 4\n")
    assert config.cluster_url == ["nats://127.0.0.1:4222", "tls://u:p@nats.example:4443"]
    assert (config.cluster_name, config.cluster_node_id, config.workers) == ("plant-7", "node.a-1", 4)


@pytest.mark.parametrize("line,words", [
    ("cluster_url http://x:1", "expected nats://HOST:PORT"),
    ("cluster_url nats://x", "expected nats://HOST:PORT"),
    ("cluster_url nats://x:70000", "invalid port 70000"),
    ("cluster_name a.b", "letters, digits"),
    ("cluster_node_id a b", "unexpected text"),
    ("workers 0", "workers"),
])
def test_bad_values_name_line_and_option(tmp_path, line, words):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, line + "\n")
    text = str(info.value)
    assert ":3:" in text and line.split()[0] in text and words in text


def test_certfile_needs_keyfile(tmp_path):
    (tmp_path / "c.pem").write_text("x")
    with pytest.raises(ConfigError, match="cluster_keyfile"):
        load(tmp_path, f"cluster_url tls://h:4222\ncluster_certfile {tmp_path / 'c.pem'}\n")


def test_options_without_cluster_warn(tmp_path):
    path = tmp_path / "m.conf"
    path.write_text("listener 1883\ncluster_name x\n")
    result = read_config(str(path))
    assert any("cluster_name: ignored" in w for w in result.warnings)


def test_check_reports_missing_cluster_files_and_summary(tmp_path, capsys):
    path = tmp_path / "m.conf"
    path.write_text("listener 1883\nallow_anonymous true\ncluster_url nats://u:secret@127.0.0.1:4222\n"
                    f"cluster_credentials {tmp_path / 'none.creds'}\n")
    assert check_main([str(path)]) == 3
    out = capsys.readouterr().out
    assert "cluster_credentials" in out and "does not exist" in out
    (tmp_path / "none.creds").write_text("x")
    assert check_main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "cluster midge through NATS nats://u:***@127.0.0.1:4222" in out and "secret" not in out
