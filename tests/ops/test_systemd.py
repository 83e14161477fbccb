"""midge under the shipped systemd unit (issue 13): Type=notify, reload, stop, user switch.

There is no systemd (PID 1) here, so the test plays the service manager: it reads
contrib/systemd/midge.service, starts the unit's ExecStart with $NOTIFY_SOCKET pointing
at its own datagram socket, runs ExecReload with $MAINPID, sends SIGTERM as `systemctl
stop` does, and checks what midge reports and when.
"""

from __future__ import annotations

import os
import pwd
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.brokerproc import BrokerProcess, free_port
from tests.ops.notify import NotifySocket
from tests.peers import require_peer

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "midge.service"


def read_unit(path: Path = UNIT) -> dict[str, list[str]]:
    """`Section.Key` -> values, in order (a key may repeat, e.g. ExecStartPre)."""
    unit: dict[str, list[str]] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        unit.setdefault(f"{section}.{key}", []).append(value)
    return unit


def test_the_unit_is_type_notify_with_reload_and_hardening():
    unit = read_unit()
    assert unit["Service.Type"] == ["notify"]
    assert unit["Service.NotifyAccess"] == ["main"]
    assert unit["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert shlex.split(unit["Service.ExecStart"][0])[1:3] == ["broker", "-c"]
    assert "User" not in unit  # midge starts as root and switches to `user` itself
    for key, value in (("NoNewPrivileges", "true"), ("ProtectSystem", "strict"),
                       ("PrivateTmp", "true"), ("ProtectKernelTunables", "true"),
                       ("RestrictSUIDSGID", "true"), ("SystemCallFilter", "@system-service")):
        assert unit[f"Service.{key}"] == [value], key
    assert "CAP_NET_BIND_SERVICE" in unit["Service.CapabilityBoundingSet"][0]


def test_systemd_analyze_accepts_the_unit(tmp_path):
    analyze = require_peer("systemd-analyze")
    # ExecStart must name an existing program for `verify`: point it at this midge.
    midge = Path(sys.executable).with_name("midge")
    if not midge.exists():
        pytest.skip("no midge script beside the interpreter")
    unit = tmp_path / "midge.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/midge", str(midge)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "midge.service" not in result.stderr, result.stderr  # no complaint about our unit


def exec_start(conf: Path) -> list[str]:
    """The unit's ExecStart with this checkout's midge and the test's config."""
    argv = shlex.split(read_unit()["Service.ExecStart"][0])
    assert argv[-2] == "-c"
    return [sys.executable, "-m", "midge", *argv[1:-1], str(conf)]


def exec_reload(pid: int) -> None:
    command = read_unit()["Service.ExecReload"][0].replace("$MAINPID", str(pid))
    subprocess.run(shlex.split(command), check=True, timeout=10)


def expected_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("mosquitto")
    except KeyError:
        return pwd.getpwnam("nobody")


def process_ids(pid: int) -> dict[str, list[int]]:
    ids = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid"):
            ids[key] = [int(v) for v in value.split()]
    return ids


def test_midge_speaks_the_notify_protocol_under_the_unit(tmp_path):
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    # No `user` line: started as root, midge switches to mosquitto, as the unit expects.
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    notify = NotifySocket(tmp_path / "notify")
    env = dict(os.environ, NOTIFY_SOCKET=notify.path, PYTHONUNBUFFERED="1")
    broker = BrokerProcess(exec_start(conf), cwd="/", env=env)
    pid = broker.proc.pid
    try:
        ready, sender = notify.wait_for("READY")
        assert ready["READY"] == "1" and sender == pid, broker.output  # NotifyAccess=main
        assert ready["STATUS"].startswith(f"Listening on {port} on 127.0.0.1")
        # READY=1 means every listener accepts: a client connects at once, no retry.
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        if os.geteuid() == 0:
            user = expected_user()
            assert process_ids(pid) == {"Uid": [user.pw_uid] * 4, "Gid": [user.pw_gid] * 4}
            broker.wait_for_log(f"Switched to user {user.pw_name}")

        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        exec_reload(pid)
        reloading, sender = notify.wait_for("RELOADING")
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert reloading["RELOADING"] == "1" and sender == pid
        assert before <= int(reloading["MONOTONIC_USEC"]) <= after  # Type=notify-reload needs it
        ready, _ = notify.wait_for("READY")
        assert ready["READY"] == "1"
        broker.wait_for_log("Reload complete.")
        assert "Reload failed" not in broker.output  # the config is in a root-only directory

        broker.signal(signal.SIGTERM)  # systemctl stop
        stopping, sender = notify.wait_for("STOPPING")
        assert stopping["STOPPING"] == "1" and sender == pid
        assert broker.proc.wait(10) == 0
    finally:
        broker.stop()
        notify.close()


def test_without_notify_socket_nothing_is_sent_and_nothing_breaks():
    from midge.server.sdnotify import SdNotify

    environ = {"PATH": "/usr/bin"}
    notifier = SdNotify.from_environment(environ)
    assert not notifier.enabled
    assert notifier.ready("x") is False and notifier.reloading() is False and notifier.stopping() is False


def test_notify_socket_is_read_once_and_removed_from_the_environment(tmp_path):
    from midge.server.sdnotify import SdNotify

    notify = NotifySocket(tmp_path / "n")
    try:
        environ = {"NOTIFY_SOCKET": notify.path}
        notifier = SdNotify.from_environment(environ)
        assert "NOTIFY_SOCKET" not in environ  # children (the keeper, plugins) must not notify
        assert notifier.status("two\nlines")
        fields, sender = notify.receive()
        assert fields == {"STATUS": "two lines"} and sender == os.getpid()
        notifier.close()
    finally:
        notify.close()
