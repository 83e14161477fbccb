"""The same configs against Debian's mosquitto 2.0: where it refuses (exit 3, "Error found
at FILE:LINE"), midge refuses at the same line; where it starts, midge loads."""

from __future__ import annotations

import re
import subprocess

import pytest

from midge.config import ConfigError, load_config
from tests.brokerproc import free_port, start_mosquitto

# (config lines after `listener PORT`, the line Mosquitto and midge both point at)
REFUSED = [
    ("max_inflight_messages 70000", 2),
    ("max_packet_size 19", 2),
    ("max_packet_size 0", 2),
    ("sys_interval 65536", 2),
    ("message_size_limit 268435456", 2),
    ("max_qos 3", 2),
    ("max_topic_alias 65536", 2),
    ("max_keepalive 5", 2),
    ("listener\t1884", 2),
    ("  # indented comment", 2),
    ("password_file /a\npassword_file /b", 3),
    ("allow_anonymous yes", 2),
    ("keyfile_password_file_typo /x", 2),
    ("topic a/b", 2),
    ("persistent_client_expiration 5x", 2),
    ("log_type nonsense", 2),
    ("log_dest nowhere", 2),
    ("log_dest file /tmp/a\nlog_dest file /tmp/b", 3),
    ("plugin_opt_x y", 2),
    ("auth_plugin_deny_special_chars true", 2),
    ("socket_domain ipv5", 2),
    ("protocol mqttsn", 2),
    ("auto_id_prefix", 2),
]


def _mosquitto_refuses(tmp_path, text) -> int:
    broker = start_mosquitto(text, tmp_path, port=0, wait=False)
    try:
        code = broker.proc.wait(10)
    except subprocess.TimeoutExpired:
        broker.stop()
        pytest.fail("mosquitto started with a config it was expected to refuse:\n" + broker.output)
    broker.stop()
    assert code == 3, broker.output
    match = re.search(r"Error found at .*:(\d+)\.", broker.output)
    assert match, broker.output
    return int(match.group(1))


@pytest.mark.parametrize("lines,line", REFUSED)
def test_refused_by_both_at_the_same_line(tmp_path, lines, line):
    text = f"listener {free_port()}\n{lines}\n"
    assert _mosquitto_refuses(tmp_path, text) == line
    path = tmp_path / "midge.conf"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.line == line, str(info.value)


def test_per_listener_settings_after_security_option_both_refuse(tmp_path):
    port = free_port()
    text = f"check_retain_source true\nper_listener_settings true\nlistener {port}\n"
    assert _mosquitto_refuses(tmp_path, text) == 2
    path = tmp_path / "midge.conf"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert (info.value.line, info.value.option) == (2, "per_listener_settings")


@pytest.mark.parametrize("lines", [
    "allow_anonymous true # trailing words after a bool",
    "max_connections -5",
    "retry_interval 10",
    "log_type",
])
def test_accepted_by_both(tmp_path, lines):
    port = free_port()
    text = f"listener {port} 127.0.0.1\n{lines}\n"
    broker = start_mosquitto(text, tmp_path, port)
    broker.stop()
    path = tmp_path / "midge.conf"
    path.write_text(text)
    load_config(str(path))
