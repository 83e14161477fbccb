"""End to end: a real midge broker with password files, ACLs and plugins.

Clients are Debian's mosquitto_pub/mosquitto_sub and paho-mqtt (v3.1.1 and v5).
The ACL table is the one that tests/security/test_acl_vs_mosquitto.py checks against
Debian's mosquitto, so midge has to match it over the wire as well.
"""

from __future__ import annotations

import signal
import time
import subprocess
import sys

import pytest

from midge.security.passwords import hash_password
from tests.brokerproc import free_port, start_midge
from tests.clients import PahoClient, Subscriber, mosquitto_pub
from tests.security import aclprobe

NOT_AUTHORIZED_V5 = 135

# Failed logins slow down later CONNACKs from the same address (throttle.py); these
# tests fail logins on purpose from 127.0.0.1, so they turn that off except where tested.
NO_DELAY = "auth_fail_delay 0\n"


def _pub(port, *args, topic="t", message="m") -> int:
    return mosquitto_pub(port, "-t", topic, "-m", message, *args).returncode


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """midge with aclprobe's password and ACL files, anonymous clients allowed."""
    tmp = tmp_path_factory.mktemp("secured")
    pw, acl = aclprobe.write_files(tmp)
    port = free_port()
    broker = start_midge(f"{NO_DELAY}listener {port} 127.0.0.1\nallow_anonymous true\npassword_file {pw}\n"
                         f"acl_file {acl}\n", tmp, port)
    broker.port, broker.pw, broker.acl = port, pw, acl
    yield broker
    broker.stop()


class TestPasswords:
    @pytest.mark.parametrize("version, refused", [("mqttv311", 5), ("mqttv5", NOT_AUTHORIZED_V5)])
    def test_good_and_bad_passwords(self, secured, version, refused):
        port = secured.port
        assert _pub(port, "-V", version, "-u", "alice", "-P", "a-pw", topic="a/x") == 0
        assert _pub(port, "-V", version, "-u", "alice", "-P", "wrong") == refused
        assert _pub(port, "-V", version, "-u", "alice") == refused  # listed user, no password
        assert _pub(port, "-V", version, "-u", "nobody", "-P", "a-pw") == refused  # even with anonymous on
        assert _pub(port, "-V", version) == 0  # anonymous

    @pytest.mark.parametrize("version", [4, 5])
    def test_paho(self, secured, version):
        good = PahoClient(secured.port, "p-good", version, username="bob", password="b-pw")
        good.disconnect()
        bad = PahoClient(secured.port, "p-bad", version, username="bob", password="nope", connect=False)
        bad.client.connect(bad.host, bad.port)
        bad.client.loop_start()
        _, _, reason, _ = bad.wait_event("connect")
        bad.client.loop_stop()
        assert reason.value == NOT_AUTHORIZED_V5  # paho maps v3's 5 to 0x87 as well


def test_anonymous_off_without_password_file_refuses_everyone(tmp_path):
    port = free_port()
    broker = start_midge(f"{NO_DELAY}listener {port} 127.0.0.1\nallow_anonymous false\n", tmp_path, port)
    try:
        assert _pub(port) == 5
        assert _pub(port, "-u", "someone", "-P", "x") == 5
        assert _pub(port, "-V", "mqttv5") == NOT_AUTHORIZED_V5
    finally:
        broker.stop()


def test_anonymous_on_without_password_file_lets_everyone_in(tmp_path):
    port = free_port()
    broker = start_midge(f"{NO_DELAY}listener {port} 127.0.0.1\nallow_anonymous true\n", tmp_path, port)
    try:
        assert _pub(port) == 0
        assert _pub(port, "-u", "someone", "-P", "x") == 0
    finally:
        broker.stop()


@pytest.mark.parametrize("version", [4, 5])
def test_acl_cases_over_the_wire(secured, version):
    prober = aclprobe.Prober(secured.port, version)
    try:
        observed = {case[:4]: prober.allowed(*case[:4]) for case in aclprobe.CASES}
    finally:
        prober.close()
    expected = {case[:4]: case[4] for case in aclprobe.CASES}
    assert observed == expected


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_retained_messages_respect_read_access(secured, version):
    port = secured.port
    for topic in ("shared/ok", "shared/x/deep"):
        assert mosquitto_pub(port, "-V", version, "-u", "admin", "-P", "adm-pw", "-r", "-q", "1",
                             "-t", topic, "-m", topic).returncode == 0
    # bob reads shared/+ but not shared/x/deep: only one retained message comes.
    with Subscriber(port, "shared/#", "-V", version, "-u", "bob", "-P", "b-pw", "-i", "bob-ret", "-v") as sub:
        sub.wait_subscribed()
        assert sub.messages(1) == ["shared/ok shared/ok"]
        assert mosquitto_pub(port, "-V", version, "-u", "admin", "-P", "adm-pw", "-t", "shared/end",
                             "-m", "end").returncode == 0
        assert sub.messages(1) == ["shared/end end"]  # and nothing from shared/x/deep in between


def test_sighup_reloads_password_file_and_kicks_removed_users(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text(f"old:{hash_password(b'o', iterations=10)}\nstay:{hash_password(b's', iterations=10)}\n")
    port = free_port()
    broker = start_midge(f"{NO_DELAY}listener {port} 127.0.0.1\npassword_file {pw}\n", tmp_path, port)
    try:
        stay = PahoClient(port, "stay", 5, username="stay", password="s")
        old = PahoClient(port, "old", 5, username="old", password="o")
        assert _pub(port, "-u", "new", "-P", "n") == 5
        pw.write_text(f"new:{hash_password(b'n', iterations=10)}\nstay:{pw.read_text().split('stay:')[1]}")
        mark = broker.mark()
        broker.signal(signal.SIGHUP)
        _, _, reason, _ = old.wait_event("disconnect")
        assert reason.value == 0x98  # Administrative action
        assert _pub(port, "-u", "new", "-P", "n") == 0
        assert _pub(port, "-u", "old", "-P", "o") == 5
        stay.publish("still/here", b"1", qos=1)
        stay.disconnect()
        del mark
    finally:
        broker.stop()


def test_unreadable_password_file_stops_the_start(tmp_path):
    (tmp_path / "midge.conf").write_text(f"listener {free_port()} 127.0.0.1\npassword_file {tmp_path}/none\n")
    result = subprocess.run([sys.executable, "-m", "midge", "broker", "-c", str(tmp_path / "midge.conf")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 13  # as mosquitto 2.0.11 (3 for other config errors)
    assert "Unable to open pwfile" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_bad_acl_file_stops_the_start_naming_the_line(tmp_path):
    (tmp_path / "acl").write_text("topic a\nbogus line\n")
    (tmp_path / "midge.conf").write_text(f"listener {free_port()} 127.0.0.1\nacl_file {tmp_path}/acl\n")
    result = subprocess.run([sys.executable, "-m", "midge", "broker", "-c", str(tmp_path / "midge.conf")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 3
    assert f"{tmp_path}/acl:2: Invalid line" in result.stdout + result.stderr


def test_c_plugin_stops_the_start(tmp_path):
    (tmp_path / "midge.conf").write_text(f"listener {free_port()} 127.0.0.1\n"
                                         "plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so\n")
    result = subprocess.run([sys.executable, "-m", "midge", "broker", "-c", str(tmp_path / "midge.conf")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "C plugin" in result.stdout + result.stderr


def test_python_plugin_with_options(tmp_path):
    plugin = tmp_path / "auth.py"
    plugin.write_text("OPTIONS = {}\n"
                      "def plugin_init(options):\n    OPTIONS.update(options)\n"
                      "def basic_auth(client, username, password):\n"
                      "    return password == OPTIONS['secret'].encode()\n"
                      "def acl_check(client, topic, access):\n"
                      "    return not topic.startswith('forbidden/')\n")
    port = free_port()
    broker = start_midge(f"{NO_DELAY}listener {port} 127.0.0.1\nplugin {plugin}\nplugin_opt_secret s3cret\n",
                         tmp_path, port)
    try:
        assert _pub(port, "-u", "anyone", "-P", "s3cret") == 0
        assert _pub(port, "-u", "anyone", "-P", "nope") == 5
        with Subscriber(port, "#", "-u", "w", "-P", "s3cret", "-v") as sub:
            sub.wait_subscribed()
            assert _pub(port, "-u", "anyone", "-P", "s3cret", topic="forbidden/x") == 0
            assert _pub(port, "-u", "anyone", "-P", "s3cret", topic="fine/x", message="ok") == 0
            assert sub.messages(1) == ["fine/x ok"]
    finally:
        broker.stop()


def test_failed_logins_slow_down_the_next_connacks(tmp_path):
    port = free_port()
    broker = start_midge(f"auth_fail_delay 0.3\nauth_fail_delay_max 0.6\nlistener {port} 127.0.0.1\n"
                         "allow_anonymous false\n", tmp_path, port)
    try:
        started = time.monotonic()
        assert _pub(port) == 5  # first failure: answered at once
        first = time.monotonic() - started
        assert _pub(port) == 5  # delayed 0.3 s
        assert _pub(port) == 5  # delayed 0.6 s
        assert time.monotonic() - started >= first + 0.9
    finally:
        broker.stop()


def test_per_listener_settings(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text(f"u:{hash_password(b'p', iterations=10)}\n")
    open_port, locked_port = free_port(), free_port()
    broker = start_midge(f"{NO_DELAY}per_listener_settings true\n"
                         f"listener {open_port} 127.0.0.1\nallow_anonymous true\n"
                         f"listener {locked_port} 127.0.0.1\npassword_file {pw}\n", tmp_path, open_port)
    try:
        assert _pub(open_port) == 0
        assert _pub(open_port, "-u", "u", "-P", "wrong") == 0  # no password file on this listener
        assert _pub(locked_port) == 5
        assert _pub(locked_port, "-u", "u", "-P", "wrong") == 5
        assert _pub(locked_port, "-u", "u", "-P", "p") == 0
    finally:
        broker.stop()


def test_sighup_with_a_broken_acl_file_keeps_the_old_one(tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite ok/#\n")
    port = free_port()
    broker = start_midge(f"{NO_DELAY}listener {port} 127.0.0.1\nallow_anonymous true\nacl_file {acl}\n",
                         tmp_path, port)
    try:
        acl.write_text("topic readwrite ok/#\nnonsense here\n")
        mark = broker.mark()
        broker.signal(signal.SIGHUP)
        line = broker.wait_for_log("keeping the old ones", start=mark)
        assert f"{acl}:2" in line
        with Subscriber(port, "#", "-v") as sub:
            sub.wait_subscribed()
            assert _pub(port, topic="other/x", message="no") == 0
            assert _pub(port, topic="ok/x", message="yes") == 0
            assert sub.messages(1) == ["ok/x yes"]
    finally:
        broker.stop()


def test_midge_accepts_a_mosquitto_passwd_file(tmp_path):
    from tests.peers import require_peer

    tool = require_peer("mosquitto_passwd")
    pw = tmp_path / "pw"
    subprocess.run([tool, "-c", "-b", pw, "seven", "s7"], check=True)
    subprocess.run([tool, "-H", "sha512", "-b", pw, "six", "s6"], check=True)
    port = free_port()
    broker = start_midge(f"{NO_DELAY}listener {port} 127.0.0.1\npassword_file {pw}\n", tmp_path, port)
    try:
        assert _pub(port, "-u", "seven", "-P", "s7") == 0
        assert _pub(port, "-u", "six", "-P", "s6", "-V", "mqttv5") == 0
        assert _pub(port, "-u", "six", "-P", "s7") == 5
    finally:
        broker.stop()
