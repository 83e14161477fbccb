"""SIGHUP: midge applies the limits Mosquitto forgets, and keeps listener limits (Mosquitto resets them)."""

from __future__ import annotations

import signal

from tests.brokerproc import free_port, start_midge
from tests.clients import PahoClient, mosquitto_pub


def test_sighup_keeps_and_applies_listener_limits(tmp_path):
    port = free_port()
    conf = "listener {port} 127.0.0.1\nallow_anonymous true\nmax_connections {n}\n"
    broker = start_midge(conf.format(port=port, n=1), tmp_path, port)
    try:
        first = PahoClient(port, client_id="first")
        assert mosquitto_pub(port, "-t", "t", "-m", "x").returncode != 0  # the limit holds
        # Same config: Mosquitto 2.0 resets max_connections to unlimited here; midge keeps it.
        mark = broker.mark()
        broker.signal(signal.SIGHUP)
        broker.wait_for_log("Reload complete.", start=mark)
        assert mosquitto_pub(port, "-t", "t", "-m", "x").returncode != 0
        # A raised limit applies without a restart; the connected client stays.
        (tmp_path / "midge.conf").write_text(conf.format(port=port, n=2))
        mark = broker.mark()
        broker.signal(signal.SIGHUP)
        broker.wait_for_log("Reload complete.", start=mark)
        assert mosquitto_pub(port, "-t", "t", "-m", "x").returncode == 0
        assert first.client.is_connected()
        first.disconnect()
    finally:
        assert broker.stop() == 0


def test_sighup_applies_max_packet_size_to_new_clients(tmp_path):
    port = free_port()
    conf = "listener {port} 127.0.0.1\nallow_anonymous true\n{extra}"
    broker = start_midge(conf.format(port=port, extra=""), tmp_path, port)
    try:
        big = "x" * 1000
        assert mosquitto_pub(port, "-t", "t", "-m", big, "-V", "5").returncode == 0
        (tmp_path / "midge.conf").write_text(conf.format(port=port, extra="max_packet_size 100\n"))
        mark = broker.mark()
        broker.signal(signal.SIGHUP)
        broker.wait_for_log("Reload complete.", start=mark)
        # (a v5 client learns the new maximum from CONNACK and silently skips the message;)
        # a v3.1.1 client does not, and the broker closes it for the oversize packet.
        mark = broker.mark()
        mosquitto_pub(port, "-t", "t", "-m", big, "-V", "311", "-q", "1")
        broker.wait_for_log("oversize", start=mark)
    finally:
        assert broker.stop() == 0
