"""`user`: started as root, midge switches user after binding and keeps working (issue 13).

The broker process is checked from outside (/proc/PID/status), then a TLS handshake,
a SIGHUP reload of a root-only password file and a TLS file watcher reload of a
root-only certificate run after the switch. Everything sits in pytest's tmp_path,
which only root can enter, and the interpreter of this machine may live in /root:
nothing may need reading as the new user, and no module may be imported late.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from midge.server.keeper import FileKeeper, KeeperError
from tests.brokerproc import free_port, start_midge
from tests.certs import make_pki

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")

def connect(port: int, username: bytes, password: bytes, ca: Path | None = None) -> tuple[int, bytes | None]:
    """CONNECT (3.1.1) with credentials over TLS (ca) or TCP; (CONNACK code, server cert DER)."""
    body = (b"\x00\x04MQTT\x04\xc2\x00\x3c" + b"\x00\x02id" + len(username).to_bytes(2, "big")
            + username + len(password).to_bytes(2, "big") + password)
    packet = bytes([0x10, len(body)]) + body
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    der = None
    if ca is not None:
        context = ssl.create_default_context(cafile=str(ca))
        raw = context.wrap_socket(raw, server_hostname="localhost")
        der = raw.getpeercert(binary_form=True)
    with raw:
        raw.sendall(packet)
        connack = raw.recv(4)
    return connack[3], der


def status_ids(pid: int) -> dict[str, list[int]]:
    ids = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            ids[key] = [int(v) for v in value.split()]
    return ids


def password_line(user: str, password: str) -> str:
    from midge.security.passwords import hash_password

    return f"{user}:{hash_password(password.encode(), iterations=1000)}\n"


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """True once `pid` has exited (gone, or a zombie nobody reaped)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)  # polling interval for a process to vanish, not synchronisation
    return False


@root_only
def test_switch_after_binding_then_tls_and_reload_keep_working(tmp_path):
    nobody = pwd.getpwnam("nobody")
    pki = make_pki(tmp_path / "pki")
    certs = tmp_path / "live"  # like /etc/letsencrypt/live: root only
    certs.mkdir(mode=0o700)
    cert, key = certs / "server.crt", certs / "server.key"
    cert.write_bytes(Path(pki.server_cert).read_bytes())
    key.write_bytes(Path(pki.server_key).read_bytes())
    key.chmod(0o600)
    passwords = tmp_path / "passwords"
    passwords.write_text(password_line("alice", "wonderland"))
    passwords.chmod(0o600)
    plain, tls = free_port(), free_port()
    conf = (f"user nobody\ntls_watch_interval 0.2\nper_listener_settings false\n"
            f"password_file {passwords}\n"
            f"listener {plain} 127.0.0.1\n"
            f"listener {tls} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\n")
    broker = start_midge(conf, tmp_path, tls)
    try:
        pid = broker.proc.pid
        broker.wait_for_log("Switched to user nobody")
        ids = status_ids(pid)
        assert ids["Uid"] == [nobody.pw_uid] * 4 and ids["Gid"] == [nobody.pw_gid] * 4
        assert ids["Groups"] == sorted(os.getgrouplist("nobody", nobody.pw_gid))
        keeper_pid = int(broker.wait_for_log("root keeper process").split("root keeper process ")[1].split()[0])
        assert status_ids(keeper_pid)["Uid"] == [0, 0, 0, 0]

        # A TLS handshake after the switch (key read as root before it).
        code, der = connect(tls, b"alice", b"wonderland", ca=pki.ca_cert)
        assert code == 0
        assert der == ssl.PEM_cert_to_DER_cert(Path(pki.server_cert).read_text().split("-----END CERTIFICATE-----")[0]
                                               + "-----END CERTIFICATE-----\n")

        # SIGHUP re-reads the root-only config and password file (through the keeper).
        passwords.write_text(password_line("bob", "builder"))
        mark = broker.mark()
        broker.signal(signal.SIGHUP)
        broker.wait_for_log("Reload complete.", start=mark)
        assert "Reload failed" not in broker.output and "failed, keeping" not in broker.output
        assert connect(plain, b"bob", b"builder")[0] == 0
        assert connect(plain, b"alice", b"wonderland")[0] == 5

        # The TLS file watcher swaps in a renewed certificate from the root-only directory.
        new_cert, new_key = pki.server("localhost", dns=["renewed.example"])
        mark = broker.mark()
        key.write_bytes(Path(new_key).read_bytes())
        cert.write_bytes(Path(new_cert).read_bytes())
        broker.wait_for_log("reloaded; new connections use them", start=mark, timeout=20)
        code, der = connect(tls, b"bob", b"builder", ca=pki.ca_cert)
        assert code == 0
        from cryptography import x509

        names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        assert "renewed.example" in names

        assert "imported after the switch" not in broker.output, broker.output
        assert "refused, keeping" not in broker.output, broker.output
    finally:
        assert broker.stop() == 0, broker.output
    assert wait_gone(keeper_pid)  # the keeper ends with the broker


@root_only
def test_user_root_says_plainly_that_it_keeps_root(tmp_path):
    port = free_port()
    broker = start_midge(f"user root\nlistener {port} 127.0.0.1\nallow_anonymous true\n", tmp_path, port)
    try:
        line = broker.wait_for_log("running as root")
        assert "keeps every privilege" in line
        assert status_ids(broker.proc.pid)["Uid"][0] == 0
    finally:
        broker.stop()


@root_only
def test_a_user_that_does_not_exist_is_an_error(tmp_path):
    conf = tmp_path / "m.conf"
    conf.write_text("user no-such-user-midge\nlistener 1883 127.0.0.1\n")
    result = subprocess.run([sys.executable, "-m", "midge", "broker", "-c", str(conf)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "user no-such-user-midge: no such user" in result.stderr


def test_the_keeper_serves_only_what_the_config_names(tmp_path):
    named = tmp_path / "named.pem"
    named.write_text("named\n")
    other = tmp_path / "other.pem"
    other.write_text("other\n")
    capath = tmp_path / "capath"
    capath.mkdir()
    (capath / "abcd1234.0").write_text("ca\n")
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener 1883\ncertfile {named}\nkeyfile {named}\ncapath {capath}\n")
    keeper = FileKeeper.start(str(conf))
    try:
        assert keeper.read(str(named)) == b"named\n"
        assert keeper.read(str(conf)).startswith(b"listener")
        assert keeper.listdir(str(capath)) == ["abcd1234.0"]
        assert keeper.read(str(capath / "abcd1234.0")) == b"ca\n"
        assert keeper.stat(str(named))[1] == len("named\n")
        for path in (other, "/etc/shadow", tmp_path):
            with pytest.raises(KeeperError) as refused:
                keeper.read(str(path))
            assert refused.value.errno == 13
        with pytest.raises(KeeperError):
            keeper.listdir(str(tmp_path))
        # A reload that names another file: the keeper re-reads the config and serves it.
        conf.write_text(f"listener 1883\ncertfile {other}\nkeyfile {other}\n")
        assert keeper.read(str(other)) == b"other\n"
    finally:
        keeper.close()
