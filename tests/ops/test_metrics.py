"""`protocol metrics`: scraped with prometheus_client's own parser (issue 13).

One broker: a plain MQTT listener, a mutual-TLS listener with a CRL, an HTTPS metrics
listener that requires a client certificate, a plain metrics listener behind basic
auth, persistence, and two bridges (one up, one to a closed port). Clients connect,
publish and fail TLS in several ways; the scrapes must show each of those.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import socket
import ssl
import time

import pytest

from midge.security.passwords import hash_password
from tests.brokerproc import TIMEOUT_SCALE, free_port, start_midge
from tests.certs import make_pki
from tests.clients import PahoClient
from tests.peers import require_module

parser = require_module("prometheus_client.parser")


def scrape(port: int, context: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None,
           path: str = "/metrics") -> tuple[int, str, dict]:
    if context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        conn = http.client.HTTPSConnection("localhost", port, timeout=10, context=context)
    headers = {}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode(), dict(response.getheaders())
    finally:
        conn.close()


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, frozenset(labels)): value}, via prometheus_client's parser."""
    found = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels) -> float:
    return found[(name, frozenset(labels.items()))]


def tls_attempt(port: int, context: ssl.SSLContext, payload: bytes = b"") -> bool:
    """A TLS connection that ends in a failure or a CONNACK; True if the handshake worked.
    It returns only once the broker closed or answered, so the broker has counted it."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        try:
            tls = context.wrap_socket(raw, server_hostname="localhost")
        except (ssl.SSLError, ConnectionError):
            return False
        with tls:
            try:
                tls.sendall(payload or bytes.fromhex("100c00044d5154540402003c0000"))
                return bool(tls.recv(4))
            except (ssl.SSLError, ConnectionError):
                return False  # TLS 1.3: a refused client certificate shows up here
    finally:
        raw.close()


def plaintext_attempt(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(bytes.fromhex("100c00044d5154540402003c0000"))
        while raw.recv(100):
            pass  # until midge closes: then it has counted the failure


def client_context(pki, cert=None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


@pytest.fixture
def broker(tmp_path):
    pki = make_pki(tmp_path / "pki")
    revoked = pki.client("revoked")
    crl = pki.crl(revoked=[revoked])
    passwords = tmp_path / "passwords"
    passwords.write_text(f"prometheus:{hash_password(b'scrape', iterations=1000)}\n")
    plain, tls, https, basic, dead = (free_port() for _ in range(5))
    conf = f"""per_listener_settings true
persistence true
persistence_location {tmp_path}/
listener {plain} 127.0.0.1
allow_anonymous true
listener {tls} 127.0.0.1
allow_anonymous true
certfile {pki.server_cert}
keyfile {pki.server_key}
cafile {pki.ca_cert}
require_certificate true
crlfile {crl}
listener {https} 127.0.0.1
protocol metrics
allow_anonymous true
certfile {pki.server_cert}
keyfile {pki.server_key}
cafile {pki.ca_cert}
require_certificate true
listener {basic} 127.0.0.1
protocol metrics
password_file {passwords}
connection up
address 127.0.0.1:{plain}
topic bridged/# out 1
connection down
address 127.0.0.1:{dead}
topic bridged/# out 1
restart_timeout 60
"""
    process = start_midge(conf, tmp_path, basic)
    ports = {"plain": plain, "tls": tls, "https": https, "basic": basic}
    try:
        yield process, pki, ports, revoked
    finally:
        process.stop()


def test_metrics_follow_clients_tls_failures_and_publishes(broker):
    process, pki, ports, revoked = broker
    scraper = client_context(pki, pki.client("prometheus"))
    tls_name, plain_name = f"{ports['tls']} on 127.0.0.1", f"{ports['plain']} on 127.0.0.1"

    status, text, headers = scrape(ports["https"], scraper)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    before = samples(text)
    for (name, _), _v in before.items():
        assert name.startswith("midge_"), name

    publisher = PahoClient(ports["plain"], "metrics-pub", version=4)
    try:
        for n in range(5):
            publisher.publish("metrics/t", f"m{n}".encode(), qos=1)
        for _ in range(5):
            publisher.wait_event("publish")
        assert tls_attempt(ports["tls"], client_context(pki, pki.client("alice")))
        assert not tls_attempt(ports["tls"], client_context(pki, pki.client("mallory", issuer="other")))
        assert not tls_attempt(ports["tls"], client_context(pki, revoked))
        assert not tls_attempt(ports["tls"], client_context(pki))  # no client certificate
        plaintext_attempt(ports["tls"])

        # The bridge `up` connects to our own plain listener; wait until it says so.
        deadline = time.monotonic() + 10 * TIMEOUT_SCALE
        while True:
            found = samples(scrape(ports["https"], scraper)[1])
            if value(found, "midge_bridge_connected", bridge="up") == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # polling interval of a scrape, not synchronisation
        assert value(found, "midge_bridge_connected", bridge="up") == 1
        assert value(found, "midge_bridge_connected", bridge="down") == 0

        received = "midge_publish_messages_received_total"
        assert value(found, received) - value(before, received) >= 5
        assert value(found, "midge_publish_received_bytes_total") >= 10
        # the publisher and the bridge's local end and remote end are connected to the plain listener
        assert value(found, "midge_listener_connections", listener=plain_name, protocol="mqtt") >= 2
        assert value(found, "midge_clients_connected") >= 2
        handshakes = "midge_tls_handshakes_total"
        assert value(found, handshakes, listener=tls_name, result="success") == 1
        assert value(found, handshakes, listener=tls_name, result="failure") == 4
        failures = "midge_tls_handshake_failures_total"
        for kind in ("unknown_ca", "revoked", "no_certificate", "plaintext_mqtt"):
            assert value(found, failures, listener=tls_name, kind=kind) == 1, kind
        assert value(found, failures, listener=tls_name, kind="expired") == 0  # listed at 0
        # The scraper's own handshakes count on the metrics listener.
        assert value(found, handshakes, listener=f"{ports['https']} on 127.0.0.1", result="success") >= 2

        expires = value(found, "midge_tls_certificate_expires_in_seconds", listener=tls_name,
                        certfile=str(pki.server_cert))
        assert abs(expires - dt.timedelta(days=365).total_seconds()) < 3 * 86400
        crl = [v for (name, labels), v in found.items() if name == "midge_tls_crl_expires_in_seconds"]
        assert len(crl) == 1 and 25 * 86400 < crl[0] < 31 * 86400
        assert value(found, "midge_persistence_write_seconds_count") > 0
        assert value(found, "midge_persistence_write_seconds_bucket", le="+Inf") == \
            value(found, "midge_persistence_write_seconds_count")
        for (name, labels), _v in found.items():
            if name.endswith("_created"):
                pytest.fail(f"unexpected sample {name}")
        for family in parser.text_string_to_metric_families(scrape(ports["https"], scraper)[1]):
            if family.type == "counter":
                assert all(s.name.endswith("_total") for s in family.samples), family.name
    finally:
        publisher.disconnect()


def test_https_metrics_need_the_listeners_client_certificate(broker):
    process, pki, ports, _ = broker
    with pytest.raises((ssl.SSLError, ConnectionError)):
        scrape(ports["https"], client_context(pki))  # no client certificate
    with pytest.raises((ssl.SSLError, ConnectionError)):
        scrape(ports["https"], client_context(pki, pki.client("x", issuer="other")))


def test_basic_auth_with_the_listeners_password_file(broker):
    process, pki, ports, _ = broker
    status, _, headers = scrape(ports["basic"])
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert scrape(ports["basic"], auth=("prometheus", "wrong"))[0] == 401
    assert scrape(ports["basic"], auth=("nobody", "scrape"))[0] == 401
    status, text, _ = scrape(ports["basic"], auth=("prometheus", "scrape"))
    assert status == 200 and "midge_uptime_seconds" in text
    assert scrape(ports["basic"], auth=("prometheus", "scrape"), path="/")[0] == 404
    assert not [line for line in process.output.splitlines()  # scrapes are not logged
                if "connection" in line and f"port {ports['basic']}" in line]


def test_a_slow_basic_auth_hash_does_not_stall_the_broker(tmp_path):
    """A metrics password is hashed off the event loop (as MQTT logins are): while a
    wrong password to a slow $7$ hash is being checked, the broker answers other scrapes
    and MQTT clients, and the check is visible as running."""
    passwords = tmp_path / "passwords"
    # ~2 s of PBKDF2 on this machine's cores: the check is still running when looked at.
    passwords.write_text(f"prometheus:{hash_password(b'scrape', iterations=3_000_000)}\n")
    plain, open_metrics, basic = (free_port() for _ in range(3))
    conf = f"""per_listener_settings true
listener {plain} 127.0.0.1
allow_anonymous true
listener {open_metrics} 127.0.0.1
protocol metrics
allow_anonymous true
listener {basic} 127.0.0.1
protocol metrics
password_file {passwords}
"""
    process = start_midge(conf, tmp_path, basic)
    try:
        slow = socket.create_connection(("127.0.0.1", basic), timeout=30 * TIMEOUT_SCALE)
        token = base64.b64encode(b"prometheus:wrong").decode()
        slow.sendall(f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\n\r\n".encode())
        # Wait (by scraping: each answer proves the loop is free) until the hash runs.
        for _attempt in range(500):
            found = samples(scrape(open_metrics)[1])
            if value(found, "midge_password_checks_running") == 1:
                break
        else:
            pytest.fail("the slow password check was never seen running")
        # While it runs, an MQTT client connects, subscribes and gets a message.
        client = PahoClient(plain, "during-hash")
        client.connect()
        try:
            client.subscribe("t", qos=1)
            client.publish("t", b"x", qos=1)
            assert client.message().payload == b"x"
            assert value(samples(scrape(open_metrics)[1]), "midge_password_checks_running") == 1
        finally:
            client.disconnect()
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = slow.recv(4096)
            assert chunk, "the metrics connection closed without an answer"
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 401 ")
        slow.close()
        found = samples(scrape(open_metrics)[1])
        assert value(found, "midge_password_checks_running") == 0
        assert value(found, "midge_password_checks_waiting") == 0
    finally:
        process.stop()
