"""TLS on a WebSocket listener is the same TLS: mutual TLS, identity and CRL over wss://."""

import threading

from tests.brokerproc import free_port, start_midge
from tests.peers import require_module

TIMEOUT = 20


def connect(mqtt, port, pki, cert):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, transport="websockets", protocol=mqtt.MQTTv311)
    client.tls_set(ca_certs=str(pki.ca_cert), certfile=str(cert[0]), keyfile=str(cert[1]))
    done, result = threading.Event(), {}

    def on_connect(c, userdata, flags, reason_code, properties=None):
        result["rc"] = reason_code
        done.set()

    def on_disconnect(c, userdata, flags, reason_code=None, properties=None):
        result.setdefault("rc", "disconnected")
        done.set()

    client.on_connect, client.on_disconnect = on_connect, on_disconnect
    try:
        client.connect("localhost", port)
    except OSError as exc:  # the TLS handshake failed inside connect()
        return f"error: {exc}"
    client.loop_start()
    done.wait(TIMEOUT)
    client.loop_stop()
    client.disconnect()
    return result.get("rc")


def test_mutual_tls_identity_and_crl_over_websockets(pki, tmp_path):
    mqtt = require_module("paho.mqtt.client")
    port = free_port()
    revoked = pki.client("wss-revoked")
    broker = start_midge(f"listener {port} 127.0.0.1\nprotocol websockets\ncafile {pki.ca_cert}\n"
                         f"certfile {pki.server_cert}\nkeyfile {pki.server_key}\nrequire_certificate true\n"
                         f"use_identity_as_username true\ncrlfile {pki.crl(revoked=[revoked])}\n",
                         tmp_path, port, extra_args=["-v"])
    try:
        rc = connect(mqtt, port, pki, pki.client("wss-device"))
        assert rc == 0, (rc, broker.output)
        broker.wait_for_log("u'wss-device'")
        mark = broker.mark()
        rc = connect(mqtt, port, pki, revoked)
        assert rc != 0
        broker.wait_for_log("revoked", start=mark)
    finally:
        broker.stop()
