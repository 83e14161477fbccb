"""The bridge runner's timers (server/bridge.py), on a real midge and Debian's mosquitto.

Lazy start, idle timeout, restart back-off and the return to the primary address
are all about time, and a test may not sleep. The clock here is a second bridge,
`clock`, aimed at a port where nothing listens with `restart_timeout 1`: its
`Connecting bridge clock` log lines come at least a second apart, so N of them after
a point in the log prove that at least N-1 seconds have passed since that point.
"""

from __future__ import annotations

from tests.bridge.helpers import STATE, bridge_conf, expect, mosquitto_conf
from tests.brokerproc import BrokerProcess, free_port, start_midge, start_mosquitto
from tests.clients import PahoClient

CLOCK = "Connecting bridge clock ("


def clock_conf(dead_port: int) -> str:
    return (f"connection clock\naddress 127.0.0.1:{dead_port}\nremote_clientid clock\n"
            "topic clock/# out 0\nrestart_timeout 1\nnotifications false\n")


def after(broker: BrokerProcess, needle: str, start: int = 0, timeout: float = 10.0) -> int:
    """Wait for a log line containing `needle` at index `start` or later; the index past it."""
    broker.wait_for_log(needle, timeout, start)
    lines = broker.lines
    return next(i for i in range(start, len(lines)) if needle in lines[i]) + 1


def ticks(broker: BrokerProcess, count: int, start: int) -> int:
    """Wait for `count` clock attempts after log index `start` (>= count-1 seconds)."""
    index = start
    for _ in range(count):
        index = after(broker, CLOCK, index)
    return index


def test_lazy_bridge_waits_for_threshold_leaves_when_idle_and_comes_back(tmp_path):
    rport, lport, dead = free_port(), free_port(), free_port()
    remote = start_mosquitto(mosquitto_conf(rport), tmp_path, rport)
    midge = None
    try:
        watcher = PahoClient(rport, "watcher")
        watcher.subscribe([("z/#", 1), (STATE.format("lz-remote"), 1)])
        conf = bridge_conf(lport, "lz", rport, ["z/# out 1"], "start_type lazy\nthreshold 2\nidle_timeout 1\n")
        midge = start_midge(conf + clock_conf(dead), tmp_path, lport)
        local = PahoClient(lport, "local-pub")
        local.publish("z/1", b"first", qos=1)  # acknowledged: it waits in the bridge's session
        ticks(midge, 3, midge.mark())  # two seconds: two threshold checks at least
        assert "Connecting bridge lz" not in midge.output  # one message is below the threshold

        local.publish("z/2", b"second", qos=1)
        assert expect(watcher, "z/1").payload == b"first"  # both queued messages go out in order
        assert expect(watcher, "z/2").payload == b"second"
        midge.wait_for_log("Bridge lz: idle for 1 s, disconnecting")
        expect(watcher, STATE.format("lz-remote"), b"0")  # a clean DISCONNECT, state published

        ticks(midge, 3, midge.mark())  # idle again: no timer brings it back, only messages
        assert midge.output.count("Connecting bridge lz") == 1
        local.publish("z/3", b"third", qos=1)
        local.publish("z/4", b"fourth", qos=1)
        assert expect(watcher, "z/3").payload == b"third"
        assert expect(watcher, "z/4").payload == b"fourth"
        assert midge.output.count("Connecting bridge lz") == 2
        local.disconnect()
        watcher.disconnect()
    finally:
        if midge is not None:
            midge.stop()
        remote.stop()


def test_idle_timeout_counts_from_the_last_message(tmp_path):
    rport, lport, dead = free_port(), free_port(), free_port()
    remote = start_mosquitto(mosquitto_conf(rport), tmp_path, rport)
    midge = None
    try:
        watcher = PahoClient(rport, "watcher")
        watcher.subscribe("y/#", 1)
        conf = bridge_conf(lport, "busy", rport, ["y/# out 1"], "start_type lazy\nthreshold 1\nidle_timeout 3\n")
        midge = start_midge(conf + clock_conf(dead), tmp_path, lport)
        local = PahoClient(lport, "local-pub")
        local.publish("y/start", b"go", qos=1)
        mark = after(midge, "Bridge busy connected to")
        expect(watcher, "y/start")
        index = mark
        for n in range(5):  # a message a second for over 4 s: more than idle_timeout in all
            index = ticks(midge, 1, index)
            local.publish(f"y/{n}", b"tick", qos=1)
            expect(watcher, f"y/{n}")
        assert "idle for" not in midge.output
        midge.wait_for_log("Bridge busy: idle for 3 s, disconnecting", start=mark)
        local.disconnect()
        watcher.disconnect()
    finally:
        if midge is not None:
            midge.stop()
        remote.stop()


def test_restart_timeout_spaces_the_attempts(tmp_path):
    lport, dead = free_port(), free_port()
    conf = (f"listener {lport} 127.0.0.1\nallow_anonymous true\n"
            f"connection fixed\naddress 127.0.0.1:{dead}\ntopic f/# out 0\nrestart_timeout 4\n"
            f"connection jitter\naddress 127.0.0.1:{dead}\ntopic j/# out 0\nrestart_timeout 4 8\n"
            + clock_conf(dead))
    midge = start_midge(conf, tmp_path, lport)
    try:
        first = after(midge, "Connecting bridge fixed")
        ticks(midge, 4, first)  # three seconds at least
        assert midge.output.count("Connecting bridge fixed") == 1
        assert midge.output.count("Connecting bridge jitter") == 1  # backoff from 4 s up to 8 s
        after(midge, "Connecting bridge fixed", first)  # and the timer does bring the retry
        after(midge, "Connecting bridge jitter", first)
    finally:
        midge.stop()


def test_start_type_once_does_not_retry(tmp_path):
    dead, lport = free_port(), free_port()
    conf = bridge_conf(lport, "b14", dead, ["o/# out 0"], "start_type once\n") + clock_conf(dead)
    midge = start_midge(conf, tmp_path, lport)
    try:
        ticks(midge, 3, 0)  # by now a retrying `once` bridge (restart_timeout 1) would have
        assert midge.output.count("Connecting bridge b14") == 1
    finally:
        midge.stop()


def test_back_to_the_primary_address_once_it_answers(tmp_path):
    primary, backup, lport, dead = free_port(), free_port(), free_port(), free_port()
    (tmp_path / "b").mkdir()
    backup_broker = start_mosquitto(mosquitto_conf(backup), tmp_path / "b", backup)
    midge = primary_broker = None
    try:
        conf = bridge_conf(lport, "b12", primary, ["a/# out 0"]).replace(
            f"address 127.0.0.1:{primary}", f"addresses 127.0.0.1:{primary} 127.0.0.1:{backup}")
        midge = start_midge(conf + clock_conf(dead), tmp_path, lport)
        on_backup = after(midge, f"Bridge b12 connected to 127.0.0.1:{backup}")
        watcher = PahoClient(backup, "watcher")
        watcher.subscribe(STATE.format("b12-remote"), 1)
        expect(watcher, STATE.format("b12-remote"), b"1")
        # round_robin false: the primary is probed every 5 s. Let one probe find it down...
        ticks(midge, 7, on_backup)
        assert "is back" not in midge.output
        # ...and a later one find it up: the bridge leaves the backup cleanly for it.
        primary_broker = start_mosquitto(mosquitto_conf(primary), tmp_path, primary)
        midge.wait_for_log(f"Bridge b12 connected to 127.0.0.1:{primary}", timeout=15)
        assert expect(watcher, STATE.format("b12-remote")).payload == b"0"
        watcher.disconnect()
    finally:
        if midge is not None:
            midge.stop()
        if primary_broker is not None:
            primary_broker.stop()
        backup_broker.stop()
