"""Issue 12: midge.Broker, the embedding API, used as a Python developer would."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading

import pytest

import midge
from midge.config import ConfigError as InternalConfigError, load_config_string
from tests.certs import make_pki
from tests.clients import PahoClient

CONNECT_V311 = bytes.fromhex("100c00044d5154540402003c0000")  # client id "", clean session
CONNACK_OK = bytes.fromhex("20020000")
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


async def mqtt_connect(host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(CONNECT_V311)
    try:
        return await asyncio.wait_for(reader.readexactly(4), 10)
    finally:
        writer.close()


# -- The two forms ----------------------------------------------------------------------

def test_async_form_binds_a_free_port_on_the_callers_loop():
    async def main():
        async with midge.Broker(port=0) as broker:
            assert broker.running and broker.ready.is_set()
            assert broker.host == "127.0.0.1" and broker.port > 0
            assert broker.listeners == (midge.Listener("127.0.0.1", broker.port, "mqtt"),)
            assert broker.listeners[0].url == f"mqtt://127.0.0.1:{broker.port}"
            assert await mqtt_connect(broker.host, broker.port) == CONNACK_OK
            port = broker.port
        assert broker.closed.is_set() and not broker.running
        with pytest.raises(OSError):  # everything is closed when astop() returned
            await mqtt_connect("127.0.0.1", port)

    asyncio.run(main())


def test_sync_form_runs_its_own_loop_in_a_thread():
    with midge.Broker() as broker:
        client = PahoClient(broker.port)
        client.subscribe("from/python", qos=1)
        broker.publish("from/python", "hello", qos=1)
        assert client.message().payload == b"hello"
        client.disconnect()
    assert broker.closed.is_set()


def test_start_and_stop_from_a_thread_that_is_not_main():
    result = {}

    def worker():
        broker = midge.Broker().start()
        result["port"] = broker.port
        result["answer"] = asyncio.run(mqtt_connect(broker.host, broker.port))
        broker.stop()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(30)
    assert result["answer"] == CONNACK_OK


def test_several_brokers_in_one_process_are_independent():
    with midge.Broker() as a, midge.Broker() as b, midge.Broker() as c:
        assert len({a.port, b.port, c.port}) == 3
        with a.messages("t") as seen_a, b.messages("t") as seen_b:
            b.publish("t", "only b")
            assert seen_b.get(timeout=5).payload == b"only b"
            assert seen_a.get_nowait() is None
        assert asyncio.run(mqtt_connect(c.host, c.port)) == CONNACK_OK


def test_a_broker_starts_once():
    broker = midge.Broker().start()
    broker.stop()
    with pytest.raises(midge.BrokerError, match="already started"):
        broker.start()
    broker.stop()  # stopping twice is fine


# -- Signals: the host program keeps them ----------------------------------------------

def test_no_signal_handler_is_installed_or_changed():
    async def main():
        before = {s: signal.getsignal(s) for s in HANDLED_SIGNALS}
        wakeup = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(wakeup)
        async with midge.Broker():
            during = {s: signal.getsignal(s) for s in HANDLED_SIGNALS}
            assert signal.set_wakeup_fd(wakeup) == wakeup
        assert during == before
        assert {s: signal.getsignal(s) for s in HANDLED_SIGNALS} == before

    asyncio.run(main())


def test_handle_signals_needs_the_async_form():
    with pytest.raises(midge.BrokerError, match="main thread"):
        midge.Broker(handle_signals=True).start()


# -- Configuration -------------------------------------------------------------------------

def test_config_text_with_auto_listeners_and_websockets():
    config = "listener auto 127.0.0.1\nlistener auto 127.0.0.1\nprotocol websockets\nallow_anonymous true\n"
    with midge.Broker(config) as broker:
        mqtt, ws = broker.listeners
        assert (mqtt.kind, ws.kind) == ("mqtt", "ws") and mqtt.port != ws.port
        assert broker.port == mqtt.port


def test_auto_listener_on_every_interface_has_one_port_for_both_families():
    with midge.Broker(host=None, allow_anonymous=True) as broker:
        families = {listener.host: listener.port for listener in broker.listeners}
        assert len(set(families.values())) == 1
        assert broker.host in ("127.0.0.1", "::1")
        assert asyncio.run(mqtt_connect("127.0.0.1", broker.port)) == CONNACK_OK


def test_listener_auto_is_only_for_the_embedding_api():
    """A mosquitto.conf file keeps Mosquitto's syntax: `auto` is not a port there, and
    `listener 0 PATH` stays a Unix socket, also in config text given to midge.Broker."""
    with pytest.raises(InternalConfigError, match="invalid port 'auto'"):
        load_config_string("listener auto\n")


def test_listener_0_stays_a_unix_socket(tmp_path):
    path = tmp_path / "midge.sock"
    with midge.Broker(f"listener 0 {path}\nallow_anonymous true\n") as broker:
        assert broker.listeners == (midge.Listener(str(path), 0, "unix"),)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(path))
            s.sendall(CONNECT_V311)
            assert s.recv(4) == CONNACK_OK
        with pytest.raises(midge.BrokerError, match="no TCP listener"):
            broker.port


def test_bad_config_is_a_config_error_naming_the_line():
    with pytest.raises(midge.ConfigError, match=r"<midge.Broker config>:2: .*max_inflight_mesages"):
        midge.Broker("listener auto\nmax_inflight_mesages 3\n")


def test_a_str_is_config_text_and_the_error_says_how_to_pass_a_file(tmp_path):
    conf = tmp_path / "m.conf"
    conf.write_text("listener auto 127.0.0.1\nallow_anonymous true\n")
    with pytest.raises(midge.ConfigError, match=r"pathlib.Path"):
        midge.Broker(str(conf))
    with midge.Broker(conf) as broker:
        assert broker.port > 0


def test_config_and_keywords_do_not_mix():
    with pytest.raises(TypeError, match="either config or listener keywords"):
        midge.Broker("listener auto\n", port=1884)


def test_a_port_in_use_is_a_broker_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(midge.BrokerError, match=f"listener {port} 127.0.0.1: could not open"):
            midge.Broker(port=port).start()
        broker = midge.Broker(port=port)

        async def main():
            with pytest.raises(midge.BrokerError):
                await broker.astart()

        asyncio.run(main())
        assert broker.closed.is_set()


def test_anonymous_access_follows_mosquittos_local_only_rule(tmp_path):
    with midge.Broker() as local:
        assert asyncio.run(mqtt_connect(local.host, local.port)) == CONNACK_OK
    with midge.Broker(host="0.0.0.0") as everywhere:  # not loopback: Mosquitto's default, no anonymous
        assert asyncio.run(mqtt_connect("127.0.0.1", everywhere.port)) == bytes.fromhex("20020005")


def test_tls_keywords(tmp_path):
    pki = make_pki(tmp_path)
    with midge.Broker(cafile=pki.ca_cert, certfile=pki.server_cert, keyfile=pki.server_key) as broker:
        assert broker.listeners[0].kind == "mqtts"
        import ssl

        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        client = PahoClient(broker.port, tls_context=context)
        client.subscribe("tls/#")
        broker.publish("tls/x", "secure")
        assert client.message().payload == b"secure"
        client.disconnect()


def test_persistence_keyword_keeps_retained_messages_across_restarts(tmp_path):
    with midge.Broker(persistence=tmp_path) as broker:
        broker.publish("kept", "across restarts", qos=1, retain=True)
    with midge.Broker(persistence=tmp_path) as broker:
        with broker.messages("kept") as messages:
            message = messages.get(timeout=5)
    assert (message.payload, message.retain) == (b"across restarts", True)


# -- Logging ----------------------------------------------------------------------------

def test_logs_go_to_the_midge_logger(caplog):
    caplog.set_level(logging.INFO, logger="midge")
    with midge.Broker() as broker:
        port = broker.port
    lines = [r.getMessage() for r in caplog.records if r.name == "midge"]
    assert f"Opening ipv4 listen socket on port {port}." in lines
    assert any(r.midge_log_type == "notice" and r.levelno == logging.INFO for r in caplog.records)


def test_python_logging_false_logs_to_the_configured_destination(capfd):
    with midge.Broker(python_logging=False) as broker:
        port = broker.port
    assert f"Opening ipv4 listen socket on port {port}." in capfd.readouterr().err


# -- Publishing and observing from Python ---------------------------------------------------

def test_messages_async_iteration_with_retained_first():
    async def main():
        async with midge.Broker() as broker:
            broker.publish("sensors/a", "21.5", qos=1, retain=True)
            async with broker.messages("sensors/#") as messages:
                broker.publish("sensors/b", b"\x00\x01", qos=2)
                received = []
                async for message in messages:
                    received.append(message)
                    if len(received) == 2:
                        break
            assert [(m.topic, m.payload, m.qos, m.retain) for m in received] == [
                ("sensors/a", b"21.5", 1, True), ("sensors/b", b"\x00\x01", 2, False)]

    asyncio.run(main())


def test_iteration_ends_when_the_broker_stops():
    async def main():
        broker = midge.Broker()
        await broker.astart()
        messages = broker.messages("#")

        async def consume():
            return [m async for m in messages]

        task = asyncio.create_task(consume())
        broker.publish("one", "1")
        await broker.astop()
        assert [m.topic for m in await asyncio.wait_for(task, 10)] == ["one"]

    asyncio.run(main())


def test_overlapping_filters_and_shared_filters_each_get_the_message():
    with midge.Broker() as broker:
        with broker.messages("a/#") as wide, broker.messages("a/b") as narrow, \
                broker.messages("a/b") as narrow_too:
            broker.publish("a/b", "x")
            broker.publish("a/c", "y")
            assert [wide.get(timeout=5).topic, wide.get(timeout=5).topic] == ["a/b", "a/c"]
            assert narrow.get(timeout=5).topic == "a/b" and narrow.get_nowait() is None
            assert narrow_too.get(timeout=5).topic == "a/b"
            narrow.close()
            broker.publish("a/b", "z")
            assert narrow_too.get(timeout=5).payload == b"z"  # the other observer keeps it
            with pytest.raises(EOFError):
                narrow.get(timeout=5)


def test_callback_subscription_sees_network_clients_and_can_be_cancelled():
    with midge.Broker() as broker:
        received = []
        seen = threading.Event()

        def on_message(message):
            received.append(message)
            seen.set()

        subscription = broker.subscribe("devices/+/state", on_message)
        client = PahoClient(broker.port, version=5)
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [("k", "v")]
        props.ContentType = "text/plain"
        client.publish("devices/7/state", b"on", qos=1, properties=props)
        assert seen.wait(10)
        message = received[0]
        assert (message.topic, message.text, message.qos) == ("devices/7/state", "on", 1)
        assert message.user_properties == (("k", "v"),) and message.content_type == "text/plain"
        subscription.cancel()
        assert not subscription.active
        with broker.messages("devices/#") as after:
            client.publish("devices/7/state", b"off", qos=1)
            assert after.get(timeout=5).payload == b"off"
        assert len(received) == 1
        client.disconnect()


def test_publish_with_v5_properties_reaches_a_v5_client():
    with midge.Broker() as broker:
        client = PahoClient(broker.port, version=5)
        client.subscribe("req", qos=1)
        broker.publish("req", "{}", qos=1, content_type="application/json", response_topic="resp",
                       correlation_data=b"42", user_properties=[("a", "b")])
        message = client.message()
        props = message.properties
        assert (props.ContentType, props.ResponseTopic, props.CorrelationData) == (
            "application/json", "resp", b"42")
        assert props.UserProperty == [("a", "b")]
        client.disconnect()


def test_the_in_process_client_passes_acls_and_passwords(tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("user nobody\ntopic read nothing\n")
    passwords = tmp_path / "passwd"
    passwords.write_text("")
    with midge.Broker(password_file=passwords, acl_file=acl) as broker:
        with broker.messages("#") as messages:
            broker.publish("secret", "x")
            assert messages.get(timeout=5).topic == "secret"


def test_an_invalid_filter_is_refused():
    with midge.Broker() as broker:
        with pytest.raises(ValueError, match="invalid topic filter 'a/#/b'"):
            broker.messages("a/#/b")


def test_get_on_the_brokers_own_thread_does_not_block():
    async def main():
        async with midge.Broker() as broker:
            with broker.messages("x") as messages:
                with pytest.raises(midge.BrokerError, match="would block"):
                    messages.get()

    asyncio.run(main())


def test_publish_from_another_thread_in_the_async_form():
    async def main():
        async with midge.Broker() as broker:
            async with broker.messages("t") as messages:
                await asyncio.to_thread(broker.publish, "t", "from a thread")
                assert (await asyncio.wait_for(messages.aget(), 10)).text == "from a thread"

    asyncio.run(main())


def test_publishing_to_a_stopped_broker_is_an_error():
    broker = midge.Broker()
    with pytest.raises(midge.BrokerError, match="not running"):
        broker.publish("t", "x")


# -- Reload --------------------------------------------------------------------------------

def test_reload_applies_new_config_and_keeps_the_auto_port():
    with midge.Broker("listener auto 127.0.0.1\nallow_anonymous true\n") as broker:
        port = broker.port
        client = PahoClient(port)
        broker.reload("listener auto 127.0.0.1\nallow_anonymous false\n")
        assert client.wait_event("disconnect")  # anonymous no longer allowed: kicked
        assert asyncio.run(mqtt_connect("127.0.0.1", port)) == bytes.fromhex("20020005")
        assert broker.port == port
        with pytest.raises(midge.ConfigError):
            broker.reload("listener auto\nno_such_option 1\n")
        assert broker.running


def test_wait_closed_returns_when_stopped_from_elsewhere():
    async def main():
        broker = midge.Broker()
        await broker.astart()
        waiter = asyncio.create_task(broker.wait_closed())
        await asyncio.to_thread(broker.stop)
        await asyncio.wait_for(waiter, 10)
        assert broker.closed.is_set()

    asyncio.run(main())


def test_a_refused_publish_raises_and_observers_keep_working():
    with midge.Broker("listener auto 127.0.0.1\nallow_anonymous true\nmax_packet_size 100\n") as broker:
        with broker.messages("t") as messages:
            with pytest.raises(midge.BrokerError, match="max_packet_size"):
                broker.publish("t", b"x" * 200)
            broker.publish("t", "small")
            assert messages.get(timeout=5).payload == b"small"


def test_a_callback_may_publish_into_the_broker():
    with midge.Broker() as broker:
        broker.subscribe("ping", lambda message: broker.publish("pong", message.payload, qos=1))
        with broker.messages("pong") as pongs:
            broker.publish("ping", "1", qos=1)
            assert pongs.get(timeout=5).payload == b"1"
