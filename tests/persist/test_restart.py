"""End to end: a real midge process with `persistence true`, real mosquitto_pub/_sub
peers, clean restarts (SIGTERM), crashes (SIGKILL), SIGUSR1, a real Mosquitto
database, and Debian's stock mosquitto.conf."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from pathlib import Path

import pytest

from tests.brokerproc import free_port, start_midge, start_mosquitto
from tests.peers import REQUIRE_PEERS, require_peer

TIMEOUT = 10


def config(port: int, tmp_path: Path, extra: str = "") -> str:
    return (f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {tmp_path}/\nlog_type all\n{extra}")


def run(tool: str, port: int, *args: str) -> str:
    done = subprocess.run([require_peer(tool), "-h", "127.0.0.1", "-p", str(port), *args],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, (tool, args, done.returncode, done.stdout, done.stderr)
    return done.stdout


def subscribe_persistent(port: int) -> None:
    """Create session `keeper` (clean session off) subscribed to a/# at QoS 1, then leave."""
    run("mosquitto_sub", port, "-c", "-i", "keeper", "-q", "1", "-t", "a/#", "-E")


def receive_persistent(port: int, count: int) -> list[str]:
    out = run("mosquitto_sub", port, "-c", "-i", "keeper", "-q", "1", "-t", "a/#",
              "-C", str(count), "-W", str(TIMEOUT), "-v")
    return out.splitlines()


def test_restart_keeps_retained_and_delivers_queued_qos1(tmp_path):
    port = free_port()
    broker = start_midge(config(port, tmp_path), tmp_path, port)
    try:
        subscribe_persistent(port)
        run("mosquitto_pub", port, "-t", "a/ret", "-m", "kept", "-r", "-q", "1")
        for i in range(3):
            run("mosquitto_pub", port, "-t", "a/q", "-m", f"queued{i}", "-q", "1")
    finally:
        assert broker.stop() == 0, broker.output
    assert (tmp_path / "mosquitto.db").read_bytes().startswith(b"SQLite format 3")

    broker = start_midge(config(port, tmp_path), tmp_path, port)
    try:
        broker.wait_for_log("Loaded 1 retained messages and 1 persistent sessions")
        assert receive_persistent(port, 4) == ["a/ret kept", "a/q queued0", "a/q queued1", "a/q queued2"]
        out = run("mosquitto_sub", port, "-t", "a/ret", "-C", "1", "-W", str(TIMEOUT), "-v")
        assert out.splitlines() == ["a/ret kept"]
    finally:
        assert broker.stop() == 0, broker.output


def test_kill_9_after_the_write_loses_nothing(tmp_path):
    port = free_port()
    broker = start_midge(config(port, tmp_path), tmp_path, port)
    try:
        subscribe_persistent(port)
        mark = broker.mark()
        run("mosquitto_pub", port, "-t", "a/crash", "-m", "survives", "-q", "1")
        broker.wait_for_log("Persisted", start=mark)
        mark = broker.mark()
        run("mosquitto_pub", port, "-t", "a/ret", "-m", "retained", "-r")
        broker.wait_for_log("Persisted", start=mark)
        broker.signal(signal.SIGKILL)
        broker.proc.wait(TIMEOUT)
    finally:
        broker.stop()
    broker = start_midge(config(port, tmp_path), tmp_path, port)
    try:
        assert receive_persistent(port, 2) == ["a/crash survives", "a/ret retained"]
    finally:
        assert broker.stop() == 0, broker.output


def test_sigusr1_saves_now(tmp_path):
    port = free_port()
    broker = start_midge(config(port, tmp_path), tmp_path, port)
    try:
        run("mosquitto_pub", port, "-t", "a/ret", "-m", "x", "-r")
        mark = broker.mark()
        broker.signal(signal.SIGUSR1)
        broker.wait_for_log("Saved 1 sessions and retained messages", start=mark)
    finally:
        assert broker.stop() == 0, broker.output


def test_mosquitto_database_is_refused_not_overwritten(tmp_path):
    port = free_port()
    location = tmp_path / "db"
    location.mkdir()
    user = pwd.getpwuid(os.getuid()).pw_name   # else Mosquitto run as root drops to "mosquitto"
    mosquitto = start_mosquitto(f"user {user}\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
                                f"persistence true\npersistence_location {location}/\n", tmp_path, port)
    run("mosquitto_pub", port, "-t", "a/ret", "-m", "x", "-r")
    assert mosquitto.stop() == 0, mosquitto.output
    database = location / "mosquitto.db"
    original = database.read_bytes()
    assert b"mosquitto db" in original[:16]

    broker = start_midge(config(port, location), tmp_path, port, wait=False)
    assert broker.proc.wait(TIMEOUT) != 0
    broker.stop()
    assert f"persistence file {database} is a Mosquitto database" in broker.output
    assert "persistence_file" in broker.output
    assert database.read_bytes() == original


def test_debian_stock_config_starts(tmp_path):
    """/etc/mosquitto/mosquitto.conf as Debian ships it, paths moved into tmp_path."""
    stock = Path("/etc/mosquitto/mosquitto.conf")
    if not stock.exists():
        message = "Debian's mosquitto.conf is not installed (apt-get install mosquitto)"
        if REQUIRE_PEERS:
            pytest.fail(message + "; MIDGE_REQUIRE_PEERS is set", pytrace=False)
        pytest.skip(message)
    port = free_port()
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "listener.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    (tmp_path / "lib").mkdir()
    text = stock.read_text()
    replaced = {
        "/run/mosquitto/mosquitto.pid": str(tmp_path / "mosquitto.pid"),
        "/var/lib/mosquitto/": f"{tmp_path}/lib/",
        "/var/log/mosquitto/mosquitto.log": str(tmp_path / "mosquitto.log"),
        "/etc/mosquitto/conf.d": str(conf_d),
    }
    for old, new in replaced.items():
        assert old in text, f"{old} no longer in the stock config"
        text = text.replace(old, new)
    broker = start_midge(text, tmp_path, port)
    try:
        run("mosquitto_pub", port, "-t", "a/ret", "-m", "x", "-r")
    finally:
        assert broker.stop() == 0, broker.output
    log = (tmp_path / "mosquitto.log").read_text()
    assert "persistent sessions from" in log, log
    assert (tmp_path / "lib" / "mosquitto.db").read_bytes().startswith(b"SQLite format 3")


def test_acl_still_lets_a_loaded_offline_session_receive(tmp_path):
    """Messages for a session loaded from disk are checked against its stored username."""
    port = free_port()
    (tmp_path / "acl").write_text("user reader\ntopic read a/#\n\nuser writer\ntopic write a/#\n")
    extra = f"allow_anonymous true\nacl_file {tmp_path / 'acl'}\n"
    broker = start_midge(config(port, tmp_path, extra), tmp_path, port)
    try:
        run("mosquitto_sub", port, "-u", "reader", "-c", "-i", "keeper", "-q", "1", "-t", "a/#", "-E")
    finally:
        assert broker.stop() == 0, broker.output
    broker = start_midge(config(port, tmp_path, extra), tmp_path, port)
    try:
        run("mosquitto_pub", port, "-u", "writer", "-t", "a/acl", "-m", "allowed", "-q", "1")
        out = run("mosquitto_sub", port, "-u", "reader", "-c", "-i", "keeper", "-q", "1", "-t", "a/#",
                  "-C", "1", "-W", str(TIMEOUT), "-v")
        assert out.splitlines() == ["a/acl allowed"]
    finally:
        assert broker.stop() == 0, broker.output


def test_sighup_applies_autosave_and_asks_for_a_restart_for_the_file(tmp_path):
    port = free_port()
    broker = start_midge(config(port, tmp_path), tmp_path, port)
    try:
        (tmp_path / "midge.conf").write_text(config(port, tmp_path, "persistence_file other.db\n"))
        mark = broker.mark()
        broker.signal(signal.SIGHUP)
        broker.wait_for_log("persistence_file: changed from 'mosquitto.db' to 'other.db'; takes effect "
                            "after a restart", start=mark)
        run("mosquitto_pub", port, "-t", "a/ret", "-m", "x", "-r")   # still persisting
    finally:
        assert broker.stop() == 0, broker.output
    assert not (tmp_path / "other.db").exists()
    broker = start_midge(config(port, tmp_path), tmp_path, port)
    try:
        out = run("mosquitto_sub", port, "-t", "a/ret", "-C", "1", "-W", str(TIMEOUT), "-v")
        assert out.splitlines() == ["a/ret x"]
    finally:
        assert broker.stop() == 0, broker.output
