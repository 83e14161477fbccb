"""Bridges: midge bridged to Debian's mosquitto (and mosquitto bridged to midge).

Every test runs real brokers on free loopback ports and waits on messages or log
lines, never on sleeps. The bridge's retained state topic (`1` once the remote
connection, its subscriptions and the local subscriptions are in place) is the
signal that a bridge is ready.
"""

from __future__ import annotations

import pytest

from midge.config import ConfigError, load_config
from tests.bridge.helpers import STATE, USER, bridge_conf, expect, mosquitto_conf
from tests.brokerproc import free_port, start_midge, start_mosquitto
from tests.clients import PahoClient

# -- Configuration ---------------------------------------------------------------------------

@pytest.mark.parametrize("line, needle", [("bridge_require_ocsp true", "bridge_require_ocsp")])
def test_unsupported_bridge_options_are_refused_clearly(tmp_path, line, needle):
    conf = tmp_path / "m.conf"
    conf.write_text(f"connection b\naddress 127.0.0.1:1883\ntopic # out\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(conf))
    assert needle in str(info.value) and "not supported yet" in str(info.value)


def test_connection_is_accepted(tmp_path):
    conf = tmp_path / "m.conf"
    conf.write_text("connection b\naddress 127.0.0.1:1883\ntopic # out\n")
    assert load_config(str(conf)).bridges[0].name == "b"


# -- midge bridged to mosquitto ---------------------------------------------------------------

@pytest.mark.parametrize("version", ["mqttv311", "mqttv50", "mqttv31"])
def test_midge_bridge_to_mosquitto_both_directions_with_remapping(tmp_path, version):
    rport, lport = free_port(), free_port()
    remote = start_mosquitto(mosquitto_conf(rport), tmp_path, rport)
    midge = None
    try:
        watcher = PahoClient(rport, "watcher")
        watcher.subscribe([("r/#", 1), (STATE.format("b1-remote"), 1)])
        midge = start_midge(bridge_conf(lport, "b1", rport, ["out/# out 1 l/ r/", "in/# in 1 l/ r/"],
                                        f"bridge_protocol_version {version}\n"), tmp_path, lport)
        expect(watcher, STATE.format("b1-remote"), b"1")
        local = PahoClient(lport, "local-sub")
        local.subscribe([("l/#", 1), (STATE.format("b1-remote"), 1)])
        expect(local, STATE.format("b1-remote"), b"1")

        local.publish("l/out/a", b"hello", qos=1)
        message = expect(watcher, "r/out/a")
        assert (message.payload, message.qos) == (b"hello", 1)

        watcher.publish("r/in/b", b"world", qos=1)
        message = expect(local, "l/in/b")
        assert (message.payload, message.qos) == (b"world", 1)
        midge.wait_for_log("Connecting bridge b1 (127.0.0.1:")
        # try_private sets the bridge bit for MQTT 3.x; MQTT 5 uses No Local instead
        kind = "client" if version == "mqttv50" else "bridge"
        remote.wait_for_log(f"New {kind} connected from")
        watcher.disconnect()
        local.disconnect()
    finally:
        if midge is not None:
            midge.stop()
        remote.stop()


def test_no_loop_on_a_both_topic(tmp_path):
    rport, lport = free_port(), free_port()
    remote = start_mosquitto(mosquitto_conf(rport), tmp_path, rport)
    midge = None
    try:
        watcher = PahoClient(rport, "watcher")
        watcher.subscribe([("loop/#", 1), (STATE.format("b2-remote"), 1)])
        midge = start_midge(bridge_conf(lport, "b2", rport, ["loop/# both 1"]), tmp_path, lport)
        expect(watcher, STATE.format("b2-remote"), b"1")
        local = PahoClient(lport, "local-sub")
        local.subscribe("loop/#", 1)

        local.publish("loop/x", b"once", qos=1)
        assert local.message().topic == "loop/x"
        assert expect(watcher, "loop/x").payload == b"once"
        # An echo would reach midge before this marker (same remote connection, in order).
        watcher.publish("loop/end", b"marker", qos=1)
        assert local.message().topic == "loop/end"
        assert watcher.message().topic == "loop/end"  # and the remote got no echo either
        watcher.disconnect()
        local.disconnect()
    finally:
        if midge is not None:
            midge.stop()
        remote.stop()


def test_reconnects_after_remote_restart_and_delivers_queued_qos1(tmp_path):
    rport, lport = free_port(), free_port()
    remote_conf = mosquitto_conf(rport, "log_type all\n")  # its PUBLISH log lines are the proof
    remote = start_mosquitto(remote_conf, tmp_path, rport)
    midge = None
    try:
        midge = start_midge(bridge_conf(lport, "b3", rport, ['q/# out 1 "" r/']), tmp_path, lport)
        local = PahoClient(lport, "local-sub")
        local.subscribe(STATE.format("b3-remote"), 1)
        expect(local, STATE.format("b3-remote"), b"1")

        mark = midge.mark()
        remote.stop()
        midge.wait_for_log("Bridge b3 disconnected", start=mark)
        expect(local, STATE.format("b3-remote"), b"0")
        local.publish("q/while-down", b"kept", qos=1)  # queued in the bridge's local session

        mark = midge.mark()
        remote = start_mosquitto(remote_conf, tmp_path, rport)
        midge.wait_for_log("Connecting bridge b3", start=mark)
        expect(local, STATE.format("b3-remote"), b"1")
        remote.wait_for_log("Received PUBLISH from b3-remote (d0, q1, r0, m3, 'r/q/while-down'")
        local.disconnect()
    finally:
        if midge is not None:
            midge.stop()
        remote.stop()


def test_notifications_will_and_clean_stop(tmp_path):
    rport, lport = free_port(), free_port()
    remote = start_mosquitto(mosquitto_conf(rport), tmp_path, rport)
    midge = None
    topic = "bridges/b4/up"
    try:
        watcher = PahoClient(rport, "watcher")
        watcher.subscribe(topic, 1)
        conf = bridge_conf(lport, "b4", rport, ["n/# out 0"], f"notification_topic {topic}\n")
        midge = start_midge(conf, tmp_path, lport)
        assert expect(watcher, topic).payload == b"1"
        midge.proc.kill()  # no DISCONNECT: the remote publishes the bridge's will
        assert expect(watcher, topic).payload == b"0"

        midge = start_midge(conf, tmp_path, lport)
        assert expect(watcher, topic).payload == b"1"
        midge.stop()  # clean shutdown still says 0
        assert expect(watcher, topic).payload == b"0"
        midge = None
        late = PahoClient(rport, "late")
        late.subscribe(topic, 1)
        message = expect(late, topic)
        assert (message.payload, message.retain) == (b"0", True)
        late.disconnect()
        watcher.disconnect()
    finally:
        if midge is not None:
            midge.stop()
        remote.stop()


def test_notifications_local_only_publish_nothing_remotely(tmp_path):
    rport, lport = free_port(), free_port()
    remote = start_mosquitto(mosquitto_conf(rport, "log_type all\n"), tmp_path, rport)
    midge = None
    try:
        watcher = PahoClient(rport, "watcher")
        watcher.subscribe([("$SYS/broker/connection/#", 1), ("o/#", 1)])
        midge = start_midge(bridge_conf(lport, "b5", rport, ["o/# out 1"], "notifications_local_only true\n"),
                            tmp_path, lport)
        local = PahoClient(lport, "local-sub")
        local.subscribe(STATE.format("b5-remote"), 1)
        expect(local, STATE.format("b5-remote"), b"1")
        local.publish("o/x", b"1", qos=1)
        assert watcher.message().topic == "o/x"  # no state message came before it
        local.disconnect()
        watcher.disconnect()
    finally:
        if midge is not None:
            midge.stop()
        remote.stop()


# -- TLS and PSK bridges --------------------------------------------------------------------

def test_tls_bridge_with_client_certificate(tmp_path):
    from tests.certs import make_pki

    pki = make_pki(tmp_path / "pki")
    cert, key = pki.client("bridge-user")
    tport, rport, lport = free_port(), free_port(), free_port()
    remote = start_mosquitto(
        mosquitto_conf(rport, f"listener {tport} 127.0.0.1\ncafile {pki.ca_cert}\n"
                              f"certfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
                              "require_certificate true\nuse_identity_as_username true\n"),
        tmp_path, rport)
    midge = None
    try:
        watcher = PahoClient(rport, "watcher")
        watcher.subscribe([("t/#", 1), (STATE.format("b6-remote"), 1)])
        extra = f"bridge_cafile {pki.ca_cert}\nbridge_certfile {cert}\nbridge_keyfile {key}\n"
        midge = start_midge(bridge_conf(lport, "b6", tport, ["t/# out 1"], extra, host="localhost"),
                            tmp_path, lport)
        expect(watcher, STATE.format("b6-remote"), b"1")
        remote.wait_for_log("as b6-remote (p2, c0, k60, u'bridge-user')")
        local = PahoClient(lport, "local-pub")
        local.publish("t/secure", b"over tls", qos=1)
        assert expect(watcher, "t/secure").payload == b"over tls"
        local.disconnect()
        watcher.disconnect()
    finally:
        if midge is not None:
            midge.stop()
        remote.stop()


def test_tls_bridge_refuses_untrusted_remote(tmp_path):
    from tests.certs import make_pki

    pki = make_pki(tmp_path / "pki")
    tport, lport = free_port(), free_port()
    remote = start_mosquitto(f"{USER}listener {tport} 127.0.0.1\nallow_anonymous true\n"
                             f"certfile {pki.server_cert}\nkeyfile {pki.server_key}\n", tmp_path, tport)
    midge = None
    try:
        extra = f"bridge_cafile {pki.other_ca_cert}\n"
        midge = start_midge(bridge_conf(lport, "b7", tport, ["t/# out 1"], extra, host="localhost"),
                            tmp_path, lport)
        line = midge.wait_for_log("Error creating bridge b7")
        assert "issuer is not trusted" in line
    finally:
        if midge is not None:
            midge.stop()
        remote.stop()


def test_psk_bridge(tmp_path):
    pport, rport, lport = free_port(), free_port(), free_port()
    (tmp_path / "psk").write_text("bridge-id:deadbeef0123\n")
    remote = start_mosquitto(
        mosquitto_conf(rport, f"listener {pport} 127.0.0.1\npsk_hint hint\npsk_file {tmp_path}/psk\n"
                              "use_identity_as_username true\n"),
        tmp_path, rport)
    midge = None
    try:
        watcher = PahoClient(rport, "watcher")
        watcher.subscribe([("p/#", 1), (STATE.format("b8-remote"), 1)])
        extra = "bridge_identity bridge-id\nbridge_psk deadbeef0123\n"
        midge = start_midge(bridge_conf(lport, "b8", pport, ["p/# out 1"], extra), tmp_path, lport)
        expect(watcher, STATE.format("b8-remote"), b"1")
        local = PahoClient(lport, "local-pub")
        local.publish("p/x", b"psk", qos=1)
        assert expect(watcher, "p/x").payload == b"psk"
        local.disconnect()
        watcher.disconnect()
    finally:
        if midge is not None:
            midge.stop()
        remote.stop()


# -- mosquitto bridged to midge ---------------------------------------------------------------

def test_mosquitto_bridge_to_midge(tmp_path):
    mport, rport = free_port(), free_port()
    midge = start_midge(f"listener {mport} 127.0.0.1\nallow_anonymous true\n", tmp_path, mport)
    remote = None
    try:
        watcher = PahoClient(mport, "watcher")
        watcher.subscribe([("m/#", 1), (STATE.format("mosq-b"), 1)])
        conf = mosquitto_conf(rport, f"connection mb\naddress 127.0.0.1:{mport}\n"
                                     "remote_clientid mosq-b\ntopic m/# both 1\n")
        remote = start_mosquitto(conf, tmp_path, rport)
        expect(watcher, STATE.format("mosq-b"), b"1")
        midge.wait_for_log("New bridge connected from")
        mosq_side = PahoClient(rport, "mosq-side")
        mosq_side.subscribe("m/#", 1)

        mosq_side.publish("m/from-mosquitto", b"a", qos=1)
        assert expect(watcher, "m/from-mosquitto").payload == b"a"
        assert mosq_side.message().topic == "m/from-mosquitto"

        watcher.publish("m/from-midge", b"b", qos=1)
        assert expect(mosq_side, "m/from-midge").payload == b"b"
        # midge must not echo the bridge's own messages back to it (try_private, v3)
        mosq_side.publish("m/end", b"marker", qos=1)
        assert mosq_side.message().topic == "m/end"
        assert watcher.message().topic == "m/from-midge"
        assert watcher.message().topic == "m/end"
        mosq_side.disconnect()
        watcher.disconnect()
    finally:
        if remote is not None:
            remote.stop()
        midge.stop()


# -- Options: addresses, credentials, retain, packet size ---------------------------------------

def test_second_address_used_when_the_first_is_down(tmp_path):
    dead, rport, lport = free_port(), free_port(), free_port()
    remote = start_mosquitto(mosquitto_conf(rport), tmp_path, rport)
    midge = None
    try:
        watcher = PahoClient(rport, "watcher")
        watcher.subscribe(STATE.format("b9-remote"), 1)
        conf = bridge_conf(lport, "b9", dead, ["a/# out 0"]).replace(
            f"address 127.0.0.1:{dead}", f"addresses 127.0.0.1:{dead} 127.0.0.1:{rport}")
        midge = start_midge(conf, tmp_path, lport)
        midge.wait_for_log("Error creating bridge b9: Connection refused.")
        expect(watcher, STATE.format("b9-remote"), b"1")
        midge.wait_for_log(f"Bridge b9 connected to 127.0.0.1:{rport}")
        watcher.disconnect()
    finally:
        if midge is not None:
            midge.stop()
        remote.stop()


def test_remote_credentials(tmp_path):
    import subprocess

    from tests.peers import require_peer

    rport, lport = free_port(), free_port()
    passwd = tmp_path / "passwd"
    subprocess.run([require_peer("mosquitto_passwd"), "-c", "-b", str(passwd), "bridgeuser", "s3cret"], check=True)
    remote = start_mosquitto(f"{USER}listener {rport} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n",
                             tmp_path, rport)
    midges = []
    try:
        good = start_midge(bridge_conf(lport, "good", rport, ["c/# out 0"],
                                       "remote_username bridgeuser\nremote_password s3cret\n"), tmp_path, lport)
        midges.append(good)
        remote.wait_for_log("as good-remote (p2, c0, k60, u'bridgeuser')")
        bad_port = free_port()
        bad_dir = tmp_path / "bad"
        bad_dir.mkdir()
        bad = start_midge(bridge_conf(bad_port, "bad", rport, ["c/# out 0"],
                                      "remote_username bridgeuser\nremote_password wrong\n"), bad_dir, bad_port)
        midges.append(bad)
        bad.wait_for_log("Connection Refused: not authorised (bridge bad)")
        v5_port = free_port()
        v5_dir = tmp_path / "v5"
        v5_dir.mkdir()
        v5 = start_midge(bridge_conf(v5_port, "bad5", rport, ["c/# out 0"],
                                     "remote_username bridgeuser\nremote_password wrong\n"
                                     "bridge_protocol_version mqttv50\n"), v5_dir, v5_port)
        midges.append(v5)
        v5.wait_for_log("Connection Refused: Not authorized (0x87) (bridge bad5)")
    finally:
        for midge in midges:
            midge.stop()
        remote.stop()


def test_outgoing_retain_false_and_max_packet_size(tmp_path):
    rport, lport = free_port(), free_port()
    remote = start_mosquitto(mosquitto_conf(rport, "log_type all\n"), tmp_path, rport)
    midge = None
    try:
        watcher = PahoClient(rport, "watcher")
        watcher.subscribe([("s/#", 1), (STATE.format("b10-remote"), 1)])
        extra = "bridge_outgoing_retain false\nbridge_max_packet_size 100\n"
        midge = start_midge(bridge_conf(lport, "b10", rport, ["s/# out 1"], extra), tmp_path, lport)
        expect(watcher, STATE.format("b10-remote"), b"1")
        local = PahoClient(lport, "local-pub")
        local.publish("s/big", b"x" * 200, qos=1)           # over bridge_max_packet_size: dropped
        local.publish("s/kept", b"small", qos=1, retain=True)
        assert watcher.message().topic == "s/kept"         # the big one never came
        remote.wait_for_log("Received PUBLISH from b10-remote (d0, q1, r0, m3, 's/kept'")
        local.disconnect()
        watcher.disconnect()
    finally:
        if midge is not None:
            midge.stop()
        remote.stop()


def test_mosquitto_v5_bridge_to_midge(tmp_path):
    mport, rport = free_port(), free_port()
    midge = start_midge(f"listener {mport} 127.0.0.1\nallow_anonymous true\n", tmp_path, mport)
    remote = None
    try:
        watcher = PahoClient(mport, "watcher", version=5)
        watcher.subscribe([("v/#", 1), (STATE.format("mosq-v5"), 1)])
        conf = mosquitto_conf(rport, f"connection mb5\naddress 127.0.0.1:{mport}\nremote_clientid mosq-v5\n"
                                     "bridge_protocol_version mqttv50\ntopic v/# both 1 local/ \"\"\n")
        remote = start_mosquitto(conf, tmp_path, rport)
        expect(watcher, STATE.format("mosq-v5"), b"1")
        midge.wait_for_log("as mosq-v5 (p5, c0, k60)")
        mosq_side = PahoClient(rport, "mosq-side")
        mosq_side.subscribe("local/v/#", 1)
        mosq_side.publish("local/v/up", b"a", qos=1)
        assert expect(watcher, "v/up").payload == b"a"
        watcher.publish("v/down", b"b", qos=1)
        assert expect(mosq_side, "local/v/down").payload == b"b"
        mosq_side.disconnect()
        watcher.disconnect()
    finally:
        if remote is not None:
            remote.stop()
        midge.stop()


def test_host_name_check_and_bridge_insecure(tmp_path):
    """The certificate names localhost and 127.0.0.1, not 127.0.0.2 (also loopback)."""
    from tests.certs import make_pki

    pki = make_pki(tmp_path / "pki")
    tport = free_port()
    remote = start_mosquitto(f"{USER}listener {tport} 127.0.0.2\nallow_anonymous true\n"
                             f"certfile {pki.server_cert}\nkeyfile {pki.server_key}\n", tmp_path, tport,
                             wait=False)
    midges = []
    try:
        remote.wait_for_log("running")
        strict_port = free_port()
        strict = start_midge(bridge_conf(strict_port, "strict", tport, ["h/# out 0"],
                                         f"bridge_cafile {pki.ca_cert}\n", host="127.0.0.2"), tmp_path, strict_port)
        midges.append(strict)
        assert "not valid for the host name '127.0.0.2'" in strict.wait_for_log("Error creating bridge strict")
        lax_port = free_port()
        (tmp_path / "lax").mkdir()
        lax = start_midge(bridge_conf(lax_port, "lax", tport, ["h/# out 0"],
                                      f"bridge_cafile {pki.ca_cert}\nbridge_insecure true\n", host="127.0.0.2"),
                          tmp_path / "lax", lax_port)
        midges.append(lax)
        lax.wait_for_log("Bridge lax connected to 127.0.0.2")
    finally:
        for midge in midges:
            midge.stop()
        remote.stop()


def test_v5_remote_maximum_qos_caps_relayed_messages(tmp_path):
    rport, lport = free_port(), free_port()
    remote = start_mosquitto(mosquitto_conf(rport, "max_qos 1\n"), tmp_path, rport)
    midge = None
    try:
        watcher = PahoClient(rport, "watcher")
        watcher.subscribe([("k/#", 1), (STATE.format("b13-remote"), 1)])
        midge = start_midge(bridge_conf(lport, "b13", rport, ["k/# out 2"], "bridge_protocol_version mqttv50\n"),
                            tmp_path, lport)
        expect(watcher, STATE.format("b13-remote"), b"1")
        local = PahoClient(lport, "local-pub")
        local.publish("k/x", b"two", qos=2)  # completes locally (PUBCOMP) though the remote takes QoS 1
        message = expect(watcher, "k/x")
        assert (message.payload, message.qos) == (b"two", 1)
        local.publish("k/y", b"again", qos=2)  # the first exchange left nothing stuck
        assert expect(watcher, "k/y").payload == b"again"
        local.disconnect()
        watcher.disconnect()
    finally:
        if midge is not None:
            midge.stop()
        remote.stop()


def test_mosquitto_tls_bridge_to_midge_with_client_certificate(tmp_path):
    from tests.certs import make_pki

    pki = make_pki(tmp_path / "pki")
    cert, key = pki.client("mosquitto-bridge")
    mport, tport, rport = free_port(), free_port(), free_port()
    midge = start_midge(f"listener {mport} 127.0.0.1\nallow_anonymous true\n"
                        f"listener {tport} 127.0.0.1\ncafile {pki.ca_cert}\ncertfile {pki.server_cert}\n"
                        f"keyfile {pki.server_key}\nrequire_certificate true\nuse_identity_as_username true\n",
                        tmp_path, mport)
    remote = None
    try:
        watcher = PahoClient(mport, "watcher")
        watcher.subscribe([("tls/#", 1), (STATE.format("mosq-tls"), 1)])
        conf = mosquitto_conf(rport, f"connection mt\naddress localhost:{tport}\nremote_clientid mosq-tls\n"
                                     f"topic tls/# out 1\nbridge_cafile {pki.ca_cert}\n"
                                     f"bridge_certfile {cert}\nbridge_keyfile {key}\n")
        remote = start_mosquitto(conf, tmp_path, rport)
        expect(watcher, STATE.format("mosq-tls"), b"1")
        midge.wait_for_log("as mosq-tls (p2, c0, k60, u'mosquitto-bridge')")
        mosq_side = PahoClient(rport, "mosq-side")
        mosq_side.publish("tls/x", b"secure", qos=1)
        assert expect(watcher, "tls/x").payload == b"secure"
        mosq_side.disconnect()
        watcher.disconnect()
    finally:
        if remote is not None:
            remote.stop()
        midge.stop()


def test_local_credentials_when_midge_refuses_anonymous_clients(tmp_path):
    import subprocess

    from tests.peers import require_peer

    rport, lport = free_port(), free_port()
    passwd = tmp_path / "passwd"
    subprocess.run([require_peer("mosquitto_passwd"), "-c", "-b", str(passwd), "bridge", "local-secret"], check=True)
    remote = start_mosquitto(mosquitto_conf(rport), tmp_path, rport)
    midges = []
    try:
        watcher = PahoClient(rport, "watcher")
        watcher.subscribe([("u/#", 1), (STATE.format("b15-remote"), 1)])
        closed = f"listener {lport} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n"
        bridge = (f"connection b15\naddress 127.0.0.1:{rport}\nremote_clientid b15-remote\n"
                  "topic u/# both 1\nrestart_timeout 1\n")
        good = start_midge(closed + bridge + "local_username bridge\nlocal_password local-secret\n",
                           tmp_path, lport)
        midges.append(good)
        expect(watcher, STATE.format("b15-remote"), b"1")
        # local_username is the name the local end goes by (Mosquitto: the username
        # plugins see); nothing checks it or local_password.
        good.wait_for_log("New bridge connected from bridge:b15 as local.b15-remote (p5, c0, k0, u'bridge')")
        local = PahoClient(lport, "local-sub", username="bridge", password="local-secret")
        local.subscribe("u/#", 1)
        watcher.publish("u/in", b"through", qos=1)
        assert expect(local, "u/in").payload == b"through"
        local.disconnect()
        good.stop()
        expect(watcher, STATE.format("b15-remote"), b"0")
        # Without local credentials the bridge's local side is not authenticated, as in
        # Mosquitto (it is midge's own connection, not a network client).
        other = tmp_path / "other"
        other.mkdir()
        anonymous_bridge = start_midge(closed + bridge, other, lport)
        midges.append(anonymous_bridge)
        expect(watcher, STATE.format("b15-remote"), b"1")
        watcher.disconnect()
    finally:
        for midge in midges:
            midge.stop()
        remote.stop()
