"""`midge certs`: files, permissions, and the printed config/commands work with real peers."""

import shlex
import stat
import subprocess

import pytest

from midge.cli import certs
from tests.brokerproc import free_port, start_mosquitto
from tests.peers import require_peer


def run_certs(capsys, *argv):
    assert certs.main(list(argv)) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("key_type", ["rsa", "ec"])
def test_files_verify_and_keys_are_private(tmp_path, capsys, key_type):
    openssl = require_peer("openssl")
    d = tmp_path / "c"
    run_certs(capsys, "--dir", str(d), "--client", "alice", "--client", "bob/2", "--server-name", "mqtt.lan",
              "--server-name", "10.9.8.7", "--key-type", key_type, "--days", "30")
    for name in ("ca.key", "server.key", "alice.key", "bob_2.key"):
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600
    out = subprocess.run([openssl, "verify", "-CAfile", str(d / "ca.crt"), "-CRLfile", str(d / "crl.pem"),
                          "-crl_check", str(d / "server.crt"), str(d / "alice.crt"), str(d / "bob_2.crt")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    sans = subprocess.run([openssl, "x509", "-in", str(d / "server.crt"), "-noout", "-ext", "subjectAltName"],
                          capture_output=True, text=True, check=True).stdout
    for name in ("DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1", "DNS:mqtt.lan",
                 "IP Address:10.9.8.7"):
        assert name in sans


def test_existing_ca_is_reused(tmp_path, capsys):
    d = tmp_path / "c"
    run_certs(capsys, "--dir", str(d), "--key-type", "ec")
    ca = (d / "ca.crt").read_bytes()
    out = run_certs(capsys, "--dir", str(d), "--client", "later", "--key-type", "ec")
    assert out.startswith("Reused CA") and (d / "ca.crt").read_bytes() == ca


def test_printed_config_and_commands_work_with_mosquitto(tmp_path, capsys):
    require_peer("mosquitto_sub")
    port = free_port()
    d = tmp_path / "c"
    out = run_certs(capsys, "--dir", str(d), "--client", "alice", "--key-type", "ec", "--port", str(port))
    conf = out.split("# mosquitto.conf (works with midge and mosquitto)\n", 1)[1].split("\n\n", 1)[0]
    commands = {line.split()[0]: line for line in out.splitlines() if line.startswith("mosquitto_")}
    # `user root`: mosquitto started as root would drop to user mosquitto, who cannot read tmp_path
    broker = start_mosquitto("user root\n" + conf + "\n", tmp_path, port)
    try:
        sub = subprocess.Popen(shlex.split(commands["mosquitto_sub"]) + ["-C", "1", "-W", "10"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        broker.wait_for_log("New client connected")
        pub = subprocess.run(shlex.split(commands["mosquitto_pub"]), capture_output=True, text=True, timeout=10)
        assert pub.returncode == 0, pub.stderr
        stdout, stderr = sub.communicate(timeout=15)
        assert stdout.strip() == "test/hello hi", stderr
        broker.wait_for_log("u'alice'")  # use_identity_as_username took the CN
    finally:
        broker.stop()


def test_revoke_adds_to_the_crl_and_keeps_the_server(tmp_path, capsys):
    openssl = require_peer("openssl")
    d = tmp_path / "c"
    run_certs(capsys, "--dir", str(d), "--client", "alice", "--client", "bob", "--key-type", "ec")
    server = (d / "server.crt").read_bytes()
    out = run_certs(capsys, "--dir", str(d), "--revoke", "alice", "--key-type", "ec")
    assert "revoked: alice" in out
    run_certs(capsys, "--dir", str(d), "--client", "carol", "--key-type", "ec")  # keeps alice revoked
    assert (d / "server.crt").read_bytes() == server

    def verify(name):
        return subprocess.run([openssl, "verify", "-CAfile", str(d / "ca.crt"), "-CRLfile", str(d / "crl.pem"),
                               "-crl_check", str(d / f"{name}.crt")], capture_output=True, text=True)
    assert "certificate revoked" in verify("alice").stdout + verify("alice").stderr
    assert verify("bob").returncode == 0 and verify("carol").returncode == 0
