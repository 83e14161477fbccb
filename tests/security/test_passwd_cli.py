"""`midge passwd` against `mosquitto_passwd` and a real mosquitto broker."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from midge.security.passwords import load_password_file
from tests.brokerproc import free_port, start_mosquitto
from tests.peers import require_peer

# Running as root, mosquitto drops to user `mosquitto`, which cannot read pytest's tmp_path.
MOSQUITTO_USER = "user root\n" if os.geteuid() == 0 else ""
FAST = ["-I", "1000"]  # keep the tests quick; the default (210000) is tested once


def midge_passwd(*args, stdin: str | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "midge", "passwd", *map(str, args)], input=stdin,
                          capture_output=True, text=True, cwd=cwd)


def users(path) -> dict:
    return load_password_file(str(path))


@pytest.mark.parametrize("args", [
    [],
    ["-c", "-D", "f", "u"],
    ["-c", "-U", "f"],
    ["-D", "-U", "f"],
    ["-b", "-D", "f", "u"],
    ["-c", "f"],
    ["-c", "-b", "f", "u"],
    ["-D", "f"],
    ["-U"],
    ["-b", "f", "u"],
    ["-b", "f", "u", "p", "extra"],
    ["-H", "md5", "-b", "f", "u", "p"],
    ["-H"],
    ["-I", "0", "-b", "f", "u", "p"],
    ["-I", "abc", "-b", "f", "u", "p"],
    ["-b", "missing", "u", "p"],
    ["-c", "-b", "f", "a:b", "p"],
    ["-c", "-b", "f", "a\tb", "p"],
    ["-c", "-b", "/nonexistent/dir/f", "u", "p"],
])
def test_errors_match_mosquitto_passwd(tmp_path, args):
    tool = require_peer("mosquitto_passwd")
    (tmp_path / "m").mkdir()
    (tmp_path / "g").mkdir()
    theirs = subprocess.run([tool, *args], capture_output=True, text=True, cwd=tmp_path / "m")
    ours = midge_passwd(*args, cwd=tmp_path / "g")
    assert ours.returncode == theirs.returncode
    assert ours.stderr == theirs.stderr


@pytest.mark.parametrize("stdin, code, message", [
    ("\n", 1, "Error: Empty password.\n"),
    ("", 1, "Error: Empty password.\n"),
    ("x\ny\n", 2, "Error: Passwords do not match.\n"),
    ("x\n", 1, "Error: Empty password.\n"),
])
def test_interactive_prompts_match_mosquitto_passwd(tmp_path, stdin, code, message):
    tool = require_peer("mosquitto_passwd")
    theirs = subprocess.run([tool, "-c", tmp_path / "m", "u"], input=stdin, capture_output=True, text=True)
    ours = midge_passwd("-c", tmp_path / "g", "u", stdin=stdin)
    assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr)
    assert (ours.returncode, ours.stderr) == (code, message)


def test_interactive_create_and_update(tmp_path):
    path = tmp_path / "pw"
    result = midge_passwd(*FAST, "-c", path, "u", stdin="pw1\npw1\n")
    assert result.returncode == 0 and result.stdout == "Password: \nReenter password: \n"
    assert midge_passwd(*FAST, path, "u", stdin="pw2\npw2\n").returncode == 0
    assert users(path)["u"].verify(b"pw2")


def test_default_iterations_are_modern(tmp_path):
    path = tmp_path / "pw"
    assert midge_passwd("-c", "-b", path, "u", "p").returncode == 0
    assert path.read_text().startswith("u:$7$210000$")
    assert "210000" in midge_passwd("--help").stdout


def test_comments_and_blank_lines_are_kept_and_order_preserved(tmp_path):
    path = tmp_path / "pw"
    path.write_text("# operators\n\n")
    for user in ("a", "b", "c"):
        assert midge_passwd(*FAST, "-b", path, user, user).returncode == 0
    assert midge_passwd(*FAST, "-b", path, "b", "new").returncode == 0
    lines = path.read_text().splitlines()
    assert lines[:2] == ["# operators", ""]
    assert [line.split(":")[0] for line in lines[2:]] == ["a", "b", "c"]
    assert users(path)["b"].verify(b"new") and users(path)["c"].verify(b"c")


def test_delete(tmp_path):
    path = tmp_path / "pw"
    midge_passwd(*FAST, "-c", "-b", path, "a", "1")
    midge_passwd(*FAST, "-b", path, "b", "2")
    assert midge_passwd("-D", path, "a").returncode == 0
    assert list(users(path)) == ["b"]
    result = midge_passwd("-D", path, "a")
    assert (result.returncode, result.stderr) == (1, "Warning: User a not found in password file.\n")


def test_update_plaintext_file(tmp_path):
    path = tmp_path / "pw"
    path.write_text("# c\na:pw\n\nb:pw2\n")
    assert midge_passwd(*FAST, "-U", path).returncode == 0
    first = path.read_text()
    assert users(path)["a"].verify(b"pw") and users(path)["b"].verify(b"pw2")
    assert first.startswith("# c\n")
    assert midge_passwd(*FAST, "-U", path).returncode == 0  # already hashed: unchanged
    assert path.read_text() == first


def test_rewrite_keeps_mode_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "pw"
    midge_passwd(*FAST, "-c", "-b", path, "a", "1")
    os.chmod(path, 0o640)
    midge_passwd(*FAST, "-b", path, "b", "2")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["pw"]


def test_sha512_option(tmp_path):
    path = tmp_path / "pw"
    assert midge_passwd("-H", "sha512", "-c", "-b", path, "u", "p").returncode == 0
    assert path.read_text().startswith("u:$6$")


def test_mosquitto_passwd_edits_a_midge_file(tmp_path):
    tool = require_peer("mosquitto_passwd")
    path = tmp_path / "pw"
    midge_passwd(*FAST, "-c", "-b", path, "ours", "1")
    subprocess.run([tool, "-b", path, "theirs", "2"], check=True)
    midge_passwd(*FAST, "-b", path, "ours2", "3")
    loaded = users(path)
    assert loaded["ours"].verify(b"1") and loaded["theirs"].verify(b"2") and loaded["ours2"].verify(b"3")


def _pub(port, *auth) -> int:
    tool = require_peer("mosquitto_pub")
    return subprocess.run([tool, "-h", "127.0.0.1", "-p", str(port), "-t", "t", "-m", "m", *auth],
                          capture_output=True, timeout=10).returncode


def test_real_mosquitto_accepts_midge_passwd_files(tmp_path):
    path = tmp_path / "pw"
    assert midge_passwd("-c", "-b", path, "modern", "m-pass").returncode == 0  # 210000 iterations
    assert midge_passwd("-I", "5", "-b", path, "few", "f-pass").returncode == 0
    assert midge_passwd("-H", "sha512", "-b", path, "old", "o-pass").returncode == 0
    with open(path, "a") as f:
        f.write("# a comment midge keeps; mosquitto's broker ignores it\n")
    port = free_port()
    broker = start_mosquitto(f"{MOSQUITTO_USER}listener {port} 127.0.0.1\npassword_file {path}\n", tmp_path, port)
    try:
        assert _pub(port, "-u", "modern", "-P", "m-pass") == 0
        assert _pub(port, "-u", "few", "-P", "f-pass") == 0
        assert _pub(port, "-u", "old", "-P", "o-pass") == 0
        assert _pub(port, "-u", "modern", "-P", "wrong") == 5  # CONNACK 5: not authorised
        assert _pub(port, "-u", "nobody", "-P", "m-pass") == 5
    finally:
        broker.stop()


def test_terminal_prompts_do_not_echo(tmp_path):
    import pty
    import select
    import time

    path = tmp_path / "pw"
    fd, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "midge", "passwd", *FAST, "-c", str(path), "u"],
                            stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True)
    os.close(terminal)
    output = b""

    def read_until(needle: bytes) -> None:
        nonlocal output
        deadline = time.monotonic() + 20
        while needle not in output:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                proc.kill()
                raise AssertionError(f"no {needle!r} on the terminal; got {output!r}")
            output += os.read(fd, 1024)

    try:
        read_until(b"Password: ")
        os.write(fd, b"typed-secret\n")
        read_until(b"Reenter password: ")
        os.write(fd, b"typed-secret\n")
        status = proc.wait(20)
    finally:
        os.close(fd)
    assert status == 0
    assert b"typed-secret" not in output
    assert users(path)["u"].verify(b"typed-secret")
