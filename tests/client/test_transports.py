"""Other transports: MQTT over WebSocket (ws://, wss://), Unix sockets (--unix),
SOCKS5 proxies (--proxy), and reconnecting after the broker restarts."""

from __future__ import annotations

import pytest

from tests.brokerproc import free_port, start_midge, start_mosquitto
from tests.client.tools import distinct_ports, finish, midge, mosquitto, run, start_subscriber

LOGGING = "log_dest stderr\nlog_type all\n"


def test_websocket_url(tmp_path):
    """Debian's mosquitto 2.0.11 cannot bind a websockets listener to 127.0.0.1,
    so this runs against midge's broker (whose WebSocket stage has its own tests)."""
    tcp, ws = distinct_ports(2)
    broker = start_midge(f"allow_anonymous true\n{LOGGING}listener {tcp} 127.0.0.1\n"
                         f"listener {ws} 127.0.0.1\nprotocol websockets\n", tmp_path, tcp)
    try:
        sub = start_subscriber(broker, midge("sub", "-L", f"ws://127.0.0.1:{ws}/over/ws", "-C", "2", "-v",
                                             "-q", "1"), "ws-sub")
        assert run(mosquitto("pub", "-p", str(tcp), "-t", "over/ws", "-m", "from tcp")).returncode == 0
        result = run(midge("pub", "-L", f"ws://127.0.0.1:{ws}/over/ws", "-m", "from ws", "-q", "2"))
        assert result.returncode == 0, result.stderr
        rc, out, err = finish(sub)
        assert (rc, out) == (0, b"over/ws from tcp\nover/ws from ws\n"), err
    finally:
        broker.stop()


def test_unix_socket(tmp_path):
    tcp = free_port()
    path = tmp_path / "mqtt.sock"
    user = "user root\n"  # mosquitto started as root would drop to a user who cannot use tmp_path
    broker = start_mosquitto(f"{user}allow_anonymous true\n{LOGGING}listener {tcp} 127.0.0.1\n"
                             f"listener 0 {path}\n", tmp_path, tcp)
    try:
        sub = start_subscriber(broker, midge("sub", "--unix", str(path), "-t", "ux", "-C", "1"), "unix-sub")
        assert run(mosquitto("pub", "-p", str(tcp), "-t", "ux", "-m", "local")).returncode == 0
        assert finish(sub)[1] == b"local\n"
        sub = start_subscriber(broker, mosquitto("sub", "-p", str(tcp), "-t", "ux", "-C", "1"), "tcp-sub")
        result = run(midge("pub", "--unix", str(path), "-t", "ux", "-m", "back", "-q", "1"))
        assert result.returncode == 0, result.stderr
        assert finish(sub)[1] == b"back\n"
    finally:
        broker.stop()


def test_sub_reconnects_and_resubscribes_like_mosquitto_sub(tmp_path):
    port = free_port()
    config = f"allow_anonymous true\n{LOGGING}listener {port} 127.0.0.1\n"
    broker = start_mosquitto(config, tmp_path, port)
    sub = start_subscriber(broker, midge("sub", "-p", str(port), "-t", "again", "-C", "1", "-d"), "phoenix")
    broker.stop()
    broker = start_mosquitto(config, tmp_path, port)
    try:
        broker.wait_for_log("Sending SUBACK to phoenix", timeout=10)
        assert run(mosquitto("pub", "-p", str(port), "-t", "again", "-m", "back")).returncode == 0
        rc, out, err = finish(sub)
        assert rc == 0, err
        lines = out.splitlines()
        assert lines.count(b"Client phoenix sending CONNECT") == 2
        assert b"Client phoenix sending SUBSCRIBE (Mid: 2, Topic: again, QoS: 0, Options: 0x00)" in lines
        assert lines[-2:] == [b"back", b"Client phoenix sending DISCONNECT"]
    finally:
        broker.stop()


def test_secure_websocket_url(tmp_path):
    from tests.certs import make_pki

    pki = make_pki(tmp_path / "pki")
    tcp, wss = distinct_ports(2)
    broker = start_midge(f"allow_anonymous true\n{LOGGING}listener {tcp} 127.0.0.1\n"
                         f"listener {wss} 127.0.0.1\nprotocol websockets\n"
                         f"certfile {pki.server_cert}\nkeyfile {pki.server_key}\n", tmp_path, tcp)
    try:
        url = f"wss://localhost:{wss}/secure/ws"
        sub = start_subscriber(broker, midge("sub", "-L", url, "--cafile", str(pki.ca_cert), "-C", "1", "-v"),
                               "wss-sub")
        assert run(mosquitto("pub", "-p", str(tcp), "-t", "secure/ws", "-m", "sealed")).returncode == 0
        rc, out, err = finish(sub)
        assert (rc, out) == (0, b"secure/ws sealed\n"), err
        # The certificate is checked over WebSockets too.
        result = run(midge("pub", "-L", url, "--cafile", str(pki.other_ca_cert), "-m", "x"))
        assert result.returncode == 1 and b"issuer is not trusted" in result.stderr, result.stderr
    finally:
        broker.stop()


@pytest.mark.parametrize("credentials", [None, ("user", "p@ss")])
def test_socks5_proxy(broker, credentials):
    from tests.client.socksproxy import SocksProxy

    proxy = SocksProxy(*(credentials or (None, None)))
    try:
        auth = f"{credentials[0]}:{credentials[1].replace('@', '%40')}@" if credentials else ""
        url = f"socks5h://{auth}127.0.0.1:{proxy.port}"
        port = str(broker.port)
        sub = start_subscriber(broker, midge("sub", "-p", port, "-t", "px", "-C", "2", "--proxy", url), "px-sub")
        if credentials is None:  # the proxy is right: Mosquitto's own client goes through it
            assert run(mosquitto("pub", "-h", "localhost", "-p", port, "-t", "px", "-m", "m",
                                 "--proxy", url)).returncode == 0
        else:
            assert run(mosquitto("pub", "-p", port, "-t", "px", "-m", "m")).returncode == 0
        result = run(midge("pub", "-h", "localhost", "-p", port, "-t", "px", "-m", "g", "--proxy", url))
        assert result.returncode == 0, result.stderr
        rc, out, err = finish(sub)
        assert (rc, out) == (0, b"m\ng\n"), err
        assert f"localhost:{port}" in proxy.targets
        if credentials:
            bad = url.replace("p%40ss", "wrong")
            result = run(midge("pub", "-p", port, "-t", "px", "-m", "x", "--proxy", bad))
            assert result.returncode == 1
            assert b"rejected the user name or password" in result.stderr
    finally:
        proxy.close()
