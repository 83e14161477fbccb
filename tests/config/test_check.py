"""`midge check`: errors with file:line:option, referenced files, listener summary, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from midge.cli.check import main


def run(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def write(tmp_path, text, name="m.conf"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_valid_config_summary(tmp_path, capsys):
    cert, key, pw = (tmp_path / n for n in ("c.pem", "k.pem", "pw"))
    for f in (cert, key, pw):
        f.write_text("x")
    path = write(tmp_path, f"listener 1883\nallow_anonymous true\nlistener 8883 127.0.0.1\n"
                           f"certfile {cert}\nkeyfile {key}\nrequire_certificate true\ncafile {cert}\n"
                           f"password_file {pw}\n")
    code, out = run(capsys, path)
    assert code == 0, out
    assert "listener port 1883 on all addresses; mqtt; no TLS; global security options: anonymous allowed" in out
    assert "port 8883 on 127.0.0.1" in out and "client certificate required" in out
    assert out.rstrip().endswith(f"{path}: OK")


def test_per_listener_summary(tmp_path, capsys):
    path = write(tmp_path, "per_listener_settings true\nlistener 1\nallow_anonymous true\nlistener 2\n")
    code, out = run(capsys, "-c", path)
    assert code == 0
    assert "own security options: anonymous allowed" in out
    assert "own security options: anonymous not allowed; WARNING: no client can authenticate" in out


def test_local_only_summary(tmp_path, capsys):
    code, out = run(capsys, write(tmp_path, "max_queued_messages 10\n"))
    assert code == 0 and "Local-only mode" in out and "127.0.0.1 and ::1" in out


def test_every_error_printed_and_exit_3(tmp_path, capsys):
    path = write(tmp_path, "listener 1883\nmax_inflight_messages lots\nlistner 1884\ncertfile /x\n")
    code, out = run(capsys, path)
    assert code == 3
    assert f"Error: {path}:2: max_inflight_messages: invalid integer" in out
    assert f"Error: {path}:3: listner: unknown option; did you mean listener?" in out
    assert f"Error: {path}:4: certfile: listener 1883 has certfile but no keyfile" in out
    assert f"Error: {path}:4: certfile: /x: does not exist" in out
    assert "4 errors" in out


def test_missing_and_unreadable_files_named_with_line(tmp_path, capsys):
    key = tmp_path / "k.pem"
    key.write_text("x")
    path = write(tmp_path, f"listener 8883\ncertfile {tmp_path}/missing.pem\nkeyfile {key}\n"
                           f"capath {key}\nacl_file {tmp_path}\nplugin {tmp_path}/nope.py\n")
    code, out = run(capsys, path)
    assert code == 3
    assert f"{path}:2: certfile: {tmp_path}/missing.pem: does not exist" in out
    assert f"{path}:4: capath: {key}: is not a directory" in out
    assert f"{path}:5: acl_file: {tmp_path}: is a directory, expected a file" in out
    assert f"{path}:6: plugin: {tmp_path}/nope.py: does not exist" in out


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file(tmp_path, capsys):
    pw = tmp_path / "pw"
    pw.write_text("x")
    pw.chmod(0)
    code, out = run(capsys, write(tmp_path, f"listener 1\npassword_file {pw}\n"))
    assert code == 3 and "not readable" in out


def test_warnings_printed(tmp_path, capsys):
    code, out = run(capsys, write(tmp_path, "listener 1\nretry_interval 3\n"))
    assert code == 0 and "Warning:" in out and "retry_interval" in out


def test_missing_config_file(tmp_path, capsys):
    code, out = run(capsys, str(tmp_path / "none.conf"))
    assert code == 3 and "cannot open config file" in out


def test_through_the_midge_command(tmp_path):
    path = write(tmp_path, "listener 1883\nallow_anonymous maybe\n")
    r = subprocess.run([sys.executable, "-m", "midge", "check", path],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3
    assert f"{path}:2: allow_anonymous: invalid boolean 'maybe'" in r.stdout
