"""Issue 12: the pytest plugin's fixtures, used directly by this suite (the package's
`pytest11` entry point registers them; test_wheel.py checks the same from a wheel)."""

from __future__ import annotations

import socket
import ssl

import pytest

from tests.clients import PahoClient


def test_mqtt_broker_is_running_on_a_free_port(mqtt_broker):
    client = PahoClient(mqtt_broker.port, host=mqtt_broker.host)
    client.subscribe("t")
    mqtt_broker.publish("t", "x")
    assert client.message().payload == b"x"
    client.disconnect()


def test_mqtt_tls_broker_needs_the_client_certificate(mqtt_tls_broker):
    with mqtt_tls_broker.messages("who/#") as messages:
        client = PahoClient(mqtt_tls_broker.port, version=5, tls_context=mqtt_tls_broker.client_context())
        client.publish("who/am/i", b"?", qos=1)
        assert messages.get(timeout=10).topic == "who/am/i"
        client.disconnect()
    no_certificate = ssl.create_default_context(cafile=str(mqtt_tls_broker.cafile))
    with socket.create_connection((mqtt_tls_broker.host, mqtt_tls_broker.port), timeout=10) as sock:
        with no_certificate.wrap_socket(sock, server_hostname=mqtt_tls_broker.host) as tls:
            with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"):
                tls.sendall(bytes.fromhex("100c00044d5154540402003c0000"))
                tls.recv(4)  # TLS 1.3: the refusal arrives after the client's handshake


@pytest.mark.midge_tls(psk=True)
def test_psk_on_request(mqtt_tls_broker):
    client = PahoClient(mqtt_tls_broker.port, tls_context=mqtt_tls_broker.client_context(psk=True))
    client.subscribe("psk")
    mqtt_tls_broker.publish("psk", "ok")
    assert client.message().payload == b"ok"
    client.disconnect()


def test_psk_needs_the_marker(mqtt_tls_broker):
    with pytest.raises(ValueError, match="midge_tls"):
        mqtt_tls_broker.client_context(psk=True)


def test_factory_takes_config_text_and_keywords(mqtt_broker_factory, tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite open/#\n")
    first = mqtt_broker_factory(f"listener auto 127.0.0.1\nallow_anonymous true\nacl_file {acl}\n")
    second = mqtt_broker_factory(allow_anonymous=True)
    assert first.port != second.port
    client = PahoClient(first.port)
    client.subscribe("#")
    first.publish("closed/x", "hidden")
    first.publish("open/x", "seen")
    assert client.message().topic == "open/x"  # the ACL applies to network clients
    client.disconnect()


def test_session_fixtures_are_shared(mqtt_broker_session, mqtt_tls_broker_session, request):
    assert request.getfixturevalue("mqtt_broker_session") is mqtt_broker_session
    assert mqtt_tls_broker_session.listeners[0].kind == "mqtts"
