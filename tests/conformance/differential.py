"""Differential harness: one scripted exchange, run against Debian's mosquitto 2.0.11
and midge side by side, every packet the broker sends compared byte for byte.

An exchange is a function of a `Script`. It opens named raw connections, sends raw
packets (built by `packets.py`), drops connections, waits, reloads or restarts the
broker; the `Script` records every packet each connection receives, in order, into a
transcript. The same exchange runs against both brokers (each started fresh from the
same config text, in its own directory), and the two transcripts must be equal.

Ordering between connections is made deterministic with barriers, not sleeps:

- after a `send`, every open connection is synchronised in turn, the sender first:
  a PINGREQ is sent and everything before its PINGRESP is recorded. A broker handles
  one connection's packets in order, so the sender's PINGRESP means its packet was
  handled, and what that queued for other connections is ahead of their PINGRESP;
- a `send(..., closes=True)` (a packet the broker may close the connection for) is not
  followed by a PINGREQ on that connection (a PINGREQ into a socket the broker closed
  with unread data can turn its last packet into a reset): its packets are read until
  the close, or until a short silence shows the broker kept it open;
- `drop` closes a socket without DISCONNECT and waits for the broker's log line that
  says it noticed ("Client X closed its connection.", the same text in both brokers);
  the work of that close (a will) is done before the line is written;
- `wait` reads a number of packets that arrive on their own (a delayed will).

Where midge differs from Mosquitto on purpose, the exchange names the difference
(`allow=`): a normaliser from `ALLOWED` applied to both transcripts before they are
compared. An allowance that makes no difference fails the exchange, so the list stays
exactly the set of known differences. `NORMALISE` holds what differs between any two
runs of the same broker (random assigned client identifiers), applied always.
"""

from __future__ import annotations

import difflib
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tests.brokerproc import TIMEOUT_SCALE, BrokerProcess, free_port, start_midge, start_mosquitto
from tests.conformance import packets as p
from tests.conformance.wire import Closed, Conn, describe

TIMEOUT = 5.0 * TIMEOUT_SCALE
# How long a connection that may be closed is watched before it counts as kept open.
CLOSE_WAIT = 1.0 * TIMEOUT_SCALE

CLOSED = "closed"       # transcript marker: the broker closed the connection
KEPT_OPEN = "open"      # transcript marker: a `closes=True` send left the connection open
SILENT = "silent"       # transcript marker: a `wait` got fewer packets than it asked for


@dataclass
class Event:
    step: int           # which script step read it
    conn: str           # connection name
    version: int        # protocol version of that connection (for decoding)
    data: bytes | str   # a packet, or CLOSED / KEPT_OPEN / SILENT

    def show(self) -> str:
        if isinstance(self.data, str):
            what = self.data
        else:
            try:
                what = f"{p.decode(self.data, self.version, ordered=True)} raw={self.data.hex(' ')}"
            except Exception:  # a broken packet is still worth showing
                what = describe(self.data, self.version)
        return f"step {self.step:2d} {self.conn}: {what}"


# -- Normalisers -----------------------------------------------------------------------

def _rewrite_packets(events, broker, test: Callable, rewrite: Callable):
    """Apply `rewrite(decoded, raw) -> bytes | None` (None: drop the packet) to the
    packets for which `test(decoded, index, events)` holds."""
    out = []
    for index, event in enumerate(events):
        if isinstance(event.data, bytes):
            decoded = p.decode(event.data, event.version, ordered=True)
            if test(decoded, index, events):
                data = rewrite(decoded, event.data)
                if data is None:
                    continue
                event = Event(event.step, event.conn, event.version, data)
        out.append(event)
    return out


def _next_for_conn(events, index):
    conn = events[index].conn
    for later in events[index + 1:]:
        if later.conn == conn:
            return later.data
    return None


def _encode_props(identifier_values) -> bytes:
    return p.props(*identifier_values)


def _without_reason_string(decoded, raw) -> bytes:
    """The same packet without its Reason String property (re-encoded)."""
    first = raw[0]
    kind = first >> 4
    props = [(ident, value) for ident, value in decoded["props"] if ident != p.REASON_STRING]
    if kind == p.DISCONNECT or kind == p.AUTH:
        if not props:
            return bytes([first, 0]) if decoded["rc"] == 0 else bytes([first, 1, decoded["rc"]])
        return p.packet(first, bytes([decoded["rc"]]) + _encode_props(props))
    if kind == p.CONNACK:
        return p.packet(first, bytes([decoded["session_present"], decoded["rc"]]) + _encode_props(props))
    if kind in (p.PUBACK, p.PUBREC, p.PUBREL, p.PUBCOMP):
        body = struct.pack("!H", decoded["mid"])
        if decoded["rc"] or props:
            body += bytes([decoded["rc"]]) + (_encode_props(props) if props else b"")
        return p.packet(first, body)
    if kind in (p.SUBACK, p.UNSUBACK):
        return p.packet(first, struct.pack("!H", decoded["mid"]) + _encode_props(props) + bytes(decoded["codes"]))
    return raw


def _midge_only(fn):
    def apply(events, broker):
        return fn(events) if broker == "midge" else events
    return apply


@_midge_only
def _strip_reason_strings(events):
    return _rewrite_packets(
        events, "midge",
        lambda d, i, e: d.get("props") and any(ident == p.REASON_STRING for ident, _ in d["props"]),
        _without_reason_string)


@_midge_only
def _drop_disconnect_before_close(events):
    return _rewrite_packets(
        events, "midge",
        lambda d, i, e: d["type"] == "DISCONNECT" and d["rc"] >= 0x80 and _next_for_conn(e, i) == CLOSED,
        lambda d, raw: None)


@_midge_only
def _drop_connack_refusal_before_close(events):
    return _rewrite_packets(
        events, "midge",
        lambda d, i, e: d["type"] == "CONNACK" and d["rc"] >= 0x80 and _next_for_conn(e, i) == CLOSED,
        lambda d, raw: None)


@_midge_only
def _drop_takeover_disconnect(events):
    return _rewrite_packets(
        events, "midge", lambda d, i, e: d["type"] == "DISCONNECT" and d["rc"] == 0x8E,
        lambda d, raw: None)


def _drop_connection_events(conn):
    """Everything one named connection received (for a difference confined to it)."""
    def apply(events, broker):
        return [event for event in events if event.conn != conn]
    return apply


@_midge_only
def _oversize_ack_as_mosquitto(events):
    def rewrite(d, raw):
        return raw[:-1] + b"\x95"
    return _rewrite_packets(
        events, "midge",
        lambda d, i, e: d["type"] in ("PUBACK", "PUBREC") and d["rc"] == 0x83 and not d["props"],
        rewrite)


@_midge_only
def _resolve_outgoing_aliases(events):
    """midge's PUBLISH packets with a topic alias, rewritten with the full topic and
    without the alias (what Mosquitto, which sets no aliases, sends)."""
    aliases: dict = {}
    out = []
    for event in events:
        if isinstance(event.data, bytes) and event.data[0] >> 4 == p.PUBLISH and event.version == 5:
            d = p.decode(event.data, 5, ordered=True)
            alias = dict(d["props"]).get(p.TOPIC_ALIAS)
            if alias is not None:
                topic = d["topic"] or aliases[(event.conn, alias)]
                aliases[(event.conn, alias)] = topic
                props = [(i, v) for i, v in d["props"] if i != p.TOPIC_ALIAS]
                event = Event(event.step, event.conn, 5, p.gen_publish(
                    topic, d["qos"], d["payload"], d["retain"], d["dup"], d["mid"], 5, props))
        out.append(event)
    return out


def _drop_publishes(prefix: bytes, broker_name: str | None = None):
    """Drop the PUBLISH packets on topics starting with `prefix` from one broker's
    transcript (None: both), for a message the brokers send differently: an exchange
    opts in by its topic names."""
    def apply(events, broker):
        if broker_name is not None and broker != broker_name:
            return events
        return [e for e in events if not (isinstance(e.data, bytes) and e.data[0] >> 4 == p.PUBLISH
                                          and p.decode(e.data, e.version)["topic"].startswith(prefix))]
    return apply


def _both(*normalisers):
    def apply(events, broker):
        for normalise in normalisers:
            events = normalise(events, broker)
        return events
    return apply


@dataclass(frozen=True)
class Allowance:
    name: str
    why: str          # the reason, as in docs/configuration.md "Where midge differs"
    normalise: Callable


ALLOWED = {
    allowance.name: allowance for allowance in (
        Allowance(
            "reason-string",
            "midge's v5 DISCONNECT (and refusals) carry a Reason String saying what was wrong; "
            "Mosquitto sends the bare code. MQTT 5 4.13 allows both.",
            _strip_reason_strings),
        Allowance(
            "disconnect-before-close",
            "On a v5 protocol error midge sends DISCONNECT with the reason code before closing; "
            "Mosquitto 2.0.11 closes some of them silently. MQTT 5 4.13 allows both.",
            _drop_disconnect_before_close),
        Allowance(
            "connack-on-malformed-connect",
            "A malformed v5 CONNECT gets a CONNACK with the reason code from midge before the "
            "close; Mosquitto closes silently. MQTT 5 3.2.2.2 / 4.13 allow both.",
            _drop_connack_refusal_before_close),
        Allowance(
            "oversize-publish-ack",
            "A v5 PUBLISH over message_size_limit gets PUBACK / PUBREC 0x83 (Implementation "
            "specific error) from midge; Mosquitto sends 0x95, which MQTT 5 does not allow in "
            "these packets (tables 3.4.2.1, 3.5.2.1) and which paho-mqtt takes for a malformed "
            "packet (it reconnects and sends the message again, without end).",
            _oversize_ack_as_mosquitto),
        Allowance(
            "outgoing-topic-alias",
            "To a v5 client that allows topic aliases (Topic Alias Maximum > 0) midge sends "
            "each topic once and an alias after; Mosquitto 2.0 never sets an alias. MQTT 5 "
            "3.3.2.3.4 lets the server choose; the alias saves the topic's bytes per message.",
            _resolve_outgoing_aliases),
        Allowance(
            "undefined-property-value",
            "midge refuses a property value the spec does not define (payload format "
            "indicator 2: DISCONNECT 0x82); Mosquitto passes it on. The exchanges send them "
            "from a connection named 'undefined' on topics 'undefined/...'.",
            _both(_drop_connection_events("undefined"), _drop_publishes(b"undefined/", "mosquitto"))),
        Allowance(
            "will-when-session-ends",
            "midge publishes a delayed will when its session ends before the delay is over "
            "(MQTT 5 3.1.3.2.2): at the disconnection with session expiry 0 (Mosquitto 2.0.11 "
            "waits for the delay), or when the client comes back with clean start 1 "
            "(Mosquitto drops the will). Topics 'session-end/...' in the exchanges; midge's "
            "own tests check when it publishes them.",
            _drop_publishes(b"session-end/")),
        Allowance(
            "delayed-will-at-shutdown",
            "Mosquitto 2.0.11 publishes the wills still waiting for their delay when it shuts "
            "down (its own FIXME: they should be kept); midge keeps them across the restart "
            "(persistence), so a client that comes back in time still cancels its will (topics "
            "'shutdown-will/...' in the exchanges).",
            _drop_publishes(b"shutdown-will/", "mosquitto")),
        Allowance(
            "takeover-disconnect",
            "midge sends the v5 client it disconnects on a session takeover DISCONNECT 0x8E "
            "(MQTT-3.1.4-3); Mosquitto 2.0.11 closes without it (a Mosquitto bug).",
            _drop_takeover_disconnect),
    )
}


def _assigned_ids(events, broker):
    """Assigned Client Identifiers are random: compare their form, not their value."""
    def test(d, i, e):
        return d["type"] == "CONNACK" and any(ident == p.ASSIGNED_CLIENT_IDENTIFIER for ident, _ in d["props"])

    def rewrite(d, raw):
        props = [(ident, "auto-<random>" if ident == p.ASSIGNED_CLIENT_IDENTIFIER and value.startswith("auto-")
                  and len(value) == 41 else value) for ident, value in d["props"]]
        return p.packet(raw[0], bytes([d["session_present"], d["rc"]]) + _encode_props(props))
    return _rewrite_packets(events, broker, test, rewrite)


NORMALISE = (_assigned_ids,)


# -- One run of a script against one broker -------------------------------------------

class Script:
    """What an exchange function drives: named connections to one broker."""

    def __init__(self, broker: str, config: str, workdir: Path, files: dict):
        self.broker = broker
        self.workdir = workdir
        self.port = free_port()
        self.files = files
        self.events: list[Event] = []
        self.conns: dict[str, Conn] = {}
        self.client_ids: dict[str, str] = {}
        self.step = 0
        self.process: BrokerProcess | None = None
        self.earlier_logs: list[str] = []   # of the processes before a restart
        self._config = config
        self._write_files(files)
        self._start()

    # -- broker control -------------------------------------------------------------

    def _config_text(self) -> str:
        text = f"listener {self.port} 127.0.0.1\nallow_anonymous true\n" + self._config
        return text.replace("{dir}", str(self.workdir))

    def write_files(self, files: dict) -> None:
        """Rewrite files in the broker's directory (read on the next reload or restart)."""
        self._write_files(files)

    def let_time_pass(self, seconds: float) -> None:
        """Not synchronisation: time a message expiry needs to pass (as test_15)."""
        time.sleep(seconds)

    def _write_files(self, files: dict) -> None:
        for name, text in files.items():
            path = self.workdir / name
            path.write_text(text.replace("{dir}", str(self.workdir)))
            path.chmod(0o644)

    def _start(self) -> None:
        start = start_mosquitto if self.broker == "mosquitto" else start_midge
        self.process = start(self._config_text(), self.workdir, self.port)
        # Run as root, Debian's mosquitto drops to the mosquitto user after start: it
        # must still read its config (on reload) and write its persistence file.
        for path in self.workdir.iterdir():
            path.chmod(0o666 if path.is_file() else 0o777)

    def stop(self) -> None:
        for name in list(self.conns):
            self.conns.pop(name).close()
        if self.process is not None:
            self.process.stop()

    def restart(self) -> None:
        """Stop the broker (SIGTERM: a clean shutdown that saves its persistence) and
        start it again with the same config and directory. Open connections are read
        to their end first."""
        self.step += 1
        self.process.stop()
        for name in list(self.conns):
            self._read_to_close(name)
        self.earlier_logs.append(self.process.output)
        self._start()

    @property
    def log(self) -> str:
        return "\n".join(self.earlier_logs + [self.process.output])

    def reload(self, config: str | None = None, files: dict | None = None) -> None:
        """Rewrite the config (and other files), send SIGHUP, wait until it is applied."""
        import signal
        self.step += 1
        if config is not None:
            self._config = config
            (self.workdir / ("mosquitto.conf" if self.broker == "mosquitto" else "midge.conf")).write_text(
                self._config_text())
        if files:
            self._write_files(files)
        mark = self.process.mark()
        self.process.signal(signal.SIGHUP)
        self.process.wait_for_log("Reloading config", start=mark)
        # Both brokers reload inside the signal's loop turn; a round trip on a fresh
        # connection is handled after it.
        with Conn(self.port, 4) as probe:
            probe.send(p.gen_connect(f"probe-{self.step}"))
            probe.read_packet(TIMEOUT)
            probe.send(p.gen_disconnect())

    # -- connections ------------------------------------------------------------------

    def connect(self, name: str, client_id: str | None = None, ver: int = 4, refused: bool = False,
                sync: bool = True, **connect_args) -> None:
        """Open connection `name` and send CONNECT (client id defaults to the name)."""
        self.step += 1
        conn = Conn(self.port, ver)
        self.conns[name] = conn
        cid = name if client_id is None else client_id
        self.client_ids[name] = cid
        conn.send(p.gen_connect(cid, proto_ver=ver, **connect_args))
        if refused:
            self._read_to_close(name)
        elif sync:
            self.sync(name)

    def open(self, name: str, ver: int = 4) -> None:
        """Open connection `name` without sending anything (for a raw CONNECT)."""
        self.step += 1
        self.conns[name] = Conn(self.port, ver)
        self.client_ids[name] = name

    def send(self, name: str, data: bytes, closes: bool = False, sync: bool = True) -> None:
        """Send raw bytes on `name`, then synchronise every open connection (the sender
        first). With `closes`, read `name` to its close instead (or note it kept open)."""
        self.step += 1
        try:
            self.conns[name].send(data)
        except OSError:
            pass
        if closes:
            self._read_to_close(name, CLOSE_WAIT)
        if sync:
            self.sync(*([] if closes else [name]))

    def sync(self, *first: str) -> None:
        """Record everything sent so far: a PINGREQ round trip on every open connection,
        those named first, then the rest in the order they were opened."""
        order = list(first) + [name for name in self.conns if name not in first]
        for name in order:
            if name in self.conns:
                self._ping(name)

    def drop(self, name: str) -> None:
        """Close the socket without DISCONNECT; wait for the broker to log it."""
        self.step += 1
        mark = self.process.mark()
        self.conns.pop(name).close()
        self.process.wait_for_log(f"Client {self.client_ids[name]} closed its connection.", start=mark)
        self.sync()

    def disconnect(self, name: str, reason_code: int = 0, properties=()) -> None:
        """Send DISCONNECT and read the connection to its close."""
        conn = self.conns[name]
        self.send(name, p.gen_disconnect(reason_code, conn.proto_ver, properties), closes=True)

    def wait(self, name: str, count: int = 1, timeout: float = TIMEOUT) -> None:
        """Record `count` packets that arrive on `name` by themselves (timers)."""
        self.step += 1
        conn = self.conns[name]
        for _ in range(count):
            try:
                self._record(name, conn.read_packet(timeout * TIMEOUT_SCALE))
            except TimeoutError:
                self._record(name, SILENT)
                return
            except Closed:
                self._closed(name)
                return

    def quiet(self, name: str, wait: float = 0.5) -> None:
        """Record what arrives on `name` within `wait` seconds (for "nothing comes")."""
        self.step += 1
        conn = self.conns[name]
        deadline = time.monotonic() + wait * TIMEOUT_SCALE
        while True:
            try:
                self._record(name, conn.read_packet(max(0.01, deadline - time.monotonic())))
            except TimeoutError:
                return
            except Closed:
                self._closed(name)
                return

    # -- reading ------------------------------------------------------------------------

    def _record(self, name: str, data) -> None:
        self.events.append(Event(self.step, name, self.conns[name].proto_ver if name in self.conns else 5, data))

    def _closed(self, name: str) -> None:
        version = self.conns[name].proto_ver
        self.events.append(Event(self.step, name, version, CLOSED))
        self.conns.pop(name).close()

    def _ping(self, name: str) -> None:
        conn = self.conns[name]
        try:
            conn.send(p.gen_pingreq())
        except OSError:
            pass
        while True:
            try:
                data = conn.read_packet(TIMEOUT)
            except Closed:
                self._closed(name)
                return
            except TimeoutError:
                raise AssertionError(f"{self.broker}: no PINGRESP on {name} within {TIMEOUT:.1f}s "
                                     f"(transcript so far:\n" + "\n".join(e.show() for e in self.events) + ")")
            if data == b"\xd0\x00":
                return
            self._record(name, data)

    def _read_to_close(self, name: str, timeout: float = TIMEOUT) -> None:
        conn = self.conns[name]
        deadline = time.monotonic() + timeout
        while True:
            try:
                data = conn.read_packet(max(0.01, deadline - time.monotonic()))
            except Closed:
                self._closed(name)
                return
            except TimeoutError:
                self._record(name, KEPT_OPEN)
                return
            self._record(name, data)


# -- Running an exchange on both brokers ----------------------------------------------

@dataclass
class Exchange:
    """A scripted exchange and what it needs: config lines (after the listener and
    `allow_anonymous true`; `{dir}` is the broker's directory), files to write there,
    and the named differences it is allowed to show."""
    function: Callable
    config: str = ""
    files: dict = field(default_factory=dict)
    allow: tuple = ()
    item: str = ""

    @property
    def name(self) -> str:
        return self.function.__name__.removeprefix("ex_")


def run_on(broker: str, exchange: Exchange) -> tuple[list[Event], str]:
    workdir = Path(tempfile.mkdtemp(prefix=f"diff-{exchange.name}-{broker}-"))
    workdir.chmod(0o777)
    script = Script(broker, exchange.config, workdir, exchange.files)
    try:
        exchange.function(script)
        script.sync()
    finally:
        script.stop()
    output = script.log
    (workdir / "broker.log").write_text(output)
    return script.events, output


def run_both(exchange: Exchange) -> dict:
    """Run the exchange on both brokers at once (threads); {broker: (events, log)}."""
    results: dict = {}
    errors: dict = {}

    def target(broker):
        try:
            results[broker] = run_on(broker, exchange)
        except BaseException as exc:  # reported below, with the broker's name
            errors[broker] = exc

    threads = [threading.Thread(target=target, args=(broker,)) for broker in ("mosquitto", "midge")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for broker, exc in errors.items():
        raise AssertionError(f"{exchange.name} failed on {broker}: {exc}") from exc
    return results


def normalised(events, broker, allow) -> list[Event]:
    for normalise in NORMALISE:
        events = normalise(events, broker)
    for name in allow:
        events = ALLOWED[name].normalise(events, broker)
    return events


def _same(a: list[Event], b: list[Event]) -> bool:
    return [(e.step, e.conn, e.data) for e in a] == [(e.step, e.conn, e.data) for e in b]


def compare(exchange: Exchange, results: dict) -> None:
    """The transcripts must be equal once the exchange's allowances are applied, and
    each allowance must be needed."""
    (mosq_events, _), (midge_events, midge_log) = results["mosquitto"], results["midge"]
    if "Traceback" in midge_log:
        raise AssertionError("midge logged a traceback:\n" + midge_log[midge_log.index("Traceback"):][:3000])
    allow = exchange.allow
    mosq, midge = normalised(mosq_events, "mosquitto", allow), normalised(midge_events, "midge", allow)
    if not _same(mosq, midge):
        diff = difflib.unified_diff([e.show() for e in mosq], [e.show() for e in midge],
                                    "mosquitto", "midge", lineterm="", n=4)
        raise AssertionError(
            f"{exchange.name}: midge's packets differ from mosquitto's"
            + (f" (after the allowed differences: {', '.join(allow)})" if allow else "") + "\n"
            + "\n".join(diff))
    for name in allow:
        rest = tuple(other for other in allow if other != name)
        if _same(normalised(mosq_events, "mosquitto", rest), normalised(midge_events, "midge", rest)):
            raise AssertionError(f"{exchange.name}: allowance {name!r} is not needed any more; "
                                 f"remove it from the exchange")


def exchange(config: str = "", files: dict | None = None, allow=(), item: str = ""):
    """Decorator: mark a function of a Script as an exchange."""
    for name in allow:
        if name not in ALLOWED:
            raise ValueError(f"unknown allowance {name!r}")

    def wrap(function):
        return Exchange(function, config, files or {}, tuple(allow), item)
    return wrap


__all__ = ["ALLOWED", "CLOSED", "Exchange", "Script", "compare", "exchange", "run_both"]
