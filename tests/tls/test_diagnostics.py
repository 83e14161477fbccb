"""Failure explanations that need no handshake: first bytes, aborted handshakes."""

import socket

from midge.server.tls_diagnostics import HandshakeFacts, client_aborted, sniff_plaintext
from tests.brokerproc import free_port, start_midge
from tests.tls.memory import listener
from midge.server.tls_context import TlsListenerContext


def test_first_bytes():
    assert sniff_plaintext(b"\x10\x0c\x00\x04MQTT")[0] == "plaintext_mqtt"
    assert sniff_plaintext(b"GET / HTTP/1.1")[0] == "http"
    assert sniff_plaintext(b"PRI * HTTP/2.0")[0] == "http"
    assert sniff_plaintext(b"SSH-2.0-OpenSSH")[0] == "not_tls"
    assert sniff_plaintext(b"\x16\x03\x01\x02\x00") is None  # a ClientHello record
    assert sniff_plaintext(b"") is None


def test_aborted_handshakes():
    assert "without sending anything" in client_aborted(HandshakeFacts()).reason
    facts = HandshakeFacts(first_bytes=b"\x16\x03\x01", alert_from_client=48)
    assert "alert 'unknown CA'" in client_aborted(facts).reason
    assert client_aborted(HandshakeFacts(first_bytes=b"\x16\x03\x01")).kind == "client_aborted"


def test_stage_abort_failure_after_partial_hello(pki):
    stage = TlsListenerContext.from_listener(listener(pki), None, None).new_stage("127.0.0.1:7")
    assert stage.feed(b"\x16\x03\x01\x00\xff\x01") == b""  # a ClientHello cut short
    failure = stage.abort_failure()
    assert failure.peer == "127.0.0.1:7" and failure.kind == "client_aborted"
    assert str(failure).startswith("TLS handshake failed: ")


def test_handshake_timeout_closes_a_silent_client(pki, tmp_path):
    port = free_port()
    broker = start_midge(f"listener {port} 127.0.0.1\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
                         "tls_handshake_timeout 0.3\nallow_anonymous true\n", tmp_path, port)
    try:
        mark = broker.mark()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"\x16\x03\x01")  # starts a TLS record, never finishes it
            sock.settimeout(10)
            assert sock.recv(100) == b""  # the broker closed the connection
        broker.wait_for_log("tls_handshake_timeout", start=mark)
    finally:
        broker.stop()
