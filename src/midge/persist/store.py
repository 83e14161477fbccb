"""The SQLite persistence store (`persistence true`): retained messages and
persistent sessions, written incrementally and loaded at start.

Layout (one SQLite file in WAL mode, `PRAGMA application_id` marks it as midge's):

- `retained(topic, payload, qos, properties, expiry, origin_id, origin_username,
  origin_port)`: with the publisher's client id, username and listener, so that
  `check_retain_source` can still ask whether it may write the topic after a restart.
- `messages(id, topic, payload, qos, retain, properties, expiry, origin_id)`: messages
  held by sessions (queued, in flight, incoming QoS 2), stored once however many
  sessions hold them; a message no session holds any more is deleted.
- `sessions(client_id, expiry_interval, protocol, next_packet_id, disconnected_at,
  username, listener_port, subscriptions, incoming)`: subscriptions and incoming
  QoS 2 packet ids (-> `messages.id`) as JSON.
- `deliveries(client_id, seq, message_id, qos, retain, sub_ids, packet_id, state)`:
  outgoing messages, in `seq` order; queued when `state` is 0, else in flight. A
  queued QoS 1/2 message has its packet id already (numbered when queued); rows
  written by an older midge have none, and get one when sent.
  The queue is written incrementally (rows appended at the tail, deleted from the
  head), so a long queue costs nothing per message beyond its own row.
- `wills(client_id, topic, payload, qos, retain, properties, due)`: the v5 wills
  waiting for their will delay (`due`) in an offline session; a client that comes back
  to its session in time after a restart cancels it, as before the restart.
- `meta(key, value)`: schema version, `saved_at` (wall clock of the last write).

Properties are stored as the property block they came in (order kept). Version 1
files (no publisher username / listener, no wills) are upgraded in place on open.

Times are stored as wall-clock seconds (the broker's clock is monotonic and
restarts with the process). See docs/persistence.md for the durability guarantee.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import deque
from itertools import islice

from midge.broker import session_expiry, will_delay
from midge.broker.message import QUEUED, Delivery, Message
from midge.broker.session import Session
from midge.broker.subs import Subscription
from midge.protocol.constants import PacketType, Property
from midge.protocol.packets import Will
from midge.protocol.properties import (
    WILL, decode_properties, encode_properties, encode_varint, read_varint,
)

_dumps = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode

APPLICATION_ID = 0x6D696467  # "midg"
SCHEMA_VERSION = 2
SQLITE_MAGIC = b"SQLite format 3\x00"
MOSQUITTO_MAGIC = b"\x00\xb5\x00mosquitto db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS retained (
    topic TEXT PRIMARY KEY, payload BLOB NOT NULL, qos INTEGER NOT NULL,
    properties BLOB, expiry REAL, origin_id TEXT, origin_username TEXT, origin_port INTEGER);
CREATE TABLE IF NOT EXISTS wills (
    client_id TEXT PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL,
    qos INTEGER NOT NULL, retain INTEGER NOT NULL, properties BLOB, due REAL NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL,
    retain INTEGER NOT NULL, properties BLOB, expiry REAL, origin_id TEXT);
CREATE TABLE IF NOT EXISTS sessions (
    client_id TEXT PRIMARY KEY, expiry_interval INTEGER NOT NULL, protocol INTEGER NOT NULL,
    next_packet_id INTEGER NOT NULL, disconnected_at REAL, username TEXT, listener_port INTEGER,
    subscriptions TEXT NOT NULL, incoming TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    client_id TEXT NOT NULL, seq INTEGER NOT NULL, message_id INTEGER NOT NULL,
    qos INTEGER NOT NULL, retain INTEGER NOT NULL, sub_ids TEXT, packet_id INTEGER,
    state INTEGER NOT NULL, PRIMARY KEY (client_id, seq)) WITHOUT ROWID;
"""


class _Mirror:
    """What the file holds for one session, so a write touches only what changed."""

    __slots__ = ("queue", "inflight", "incoming_rows", "row", "will")

    def __init__(self):
        self.queue: deque = deque()     # (Delivery, seq, message row id), in order
        self.inflight: dict = {}        # packet id -> (Delivery, seq, message row id, state)
        self.incoming_rows: list = []   # message row ids of incoming QoS 2 (rewritten whole)
        self.row = None                 # what the sessions row was written from
        self.will = None                # the delayed Will the wills row holds


class PersistError(Exception):
    """The persistence file cannot be used; the message names the file and what to do."""


class OfflineClient:
    """Stands in for the last connection of a session loaded from disk, so ACL checks
    of messages queued for it see its client id, username and listener."""

    def __init__(self, client_id, username, listener):
        self.client_id = client_id
        self.username = username
        self.listener = listener
        self.acl_cache = None
        self.tls = None
        self.bridge = None
        self.is_bridge = False
        self.version = 4
        self.mount_point = (listener.mount_point or "") if listener is not None else ""


def store_path(config) -> str:
    """`persistence_location` + `persistence_file`, as Mosquitto joins them."""
    name = config.persistence_file
    location = config.persistence_location
    return os.path.join(location, name) if location else name


def check_file(path: str) -> None:
    """Refuse a file midge must not overwrite: a Mosquitto database or anything not SQLite."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise PersistError(f"persistence file {path}: cannot read it: {exc.strerror}") from exc
    if not head or head.startswith(SQLITE_MAGIC):
        return
    if head.startswith(MOSQUITTO_MAGIC[:4]) and b"mosquitto" in head:
        raise PersistError(
            f"persistence file {path} is a Mosquitto database; midge cannot read Mosquitto's "
            f"format and will not overwrite it. Move it aside (retained messages and sessions "
            f"in it are not carried over), or set persistence_file to another name "
            f"(e.g. midge.db).")
    raise PersistError(f"persistence file {path} is not a midge (SQLite) persistence file; "
                       f"move it aside or set persistence_file to another name.")


def _wall(monotonic_at, now, wall_now):
    return None if monotonic_at is None else wall_now + (monotonic_at - now)


def _monotonic(wall_at, now, wall_now):
    return None if wall_at is None else now + (wall_at - wall_now)


def _props_blob(message):
    """A message's properties as stored: the property block of its forwarded bytes
    (so the publisher's order survives a restart), None for none."""
    raw = message.forwarded_properties()
    return encode_varint(len(raw)) + raw if raw else None


def session_row(session, now, wall_now, incoming=()) -> tuple:
    """The `sessions` row of a session: also the record a cluster keeps of it in
    JetStream (without incoming QoS 2 messages), so a node can resume it from there."""
    client = session.client or session.last_client
    subs = [(key, sub.filter, sub.qos, sub.no_local, sub.retain_as_published,
             sub.retain_handling, sub.identifier, sub.group)
            for key, sub in session.subscriptions.items()]
    # The session's last connection (None for a session nobody connected to yet).
    username = client.username if client is not None else None
    listener = client.listener if client is not None else None
    disconnected = None if session.client is not None else _wall(session.disconnected_at, now, wall_now)
    return (session.client_id, session.expiry_interval, session.protocol, session.next_packet_id,
            disconnected, username, listener.port if listener is not None else None,
            _dumps(subs), _dumps(list(incoming)))


def _upgrade_from_1(db) -> None:
    """Version 1 -> 2: the retained publisher's username and listener (unknown for the
    messages already stored: check_retain_source skips those, as before), and the
    wills table (created empty by the schema script)."""
    db.execute("BEGIN")
    db.execute("ALTER TABLE retained ADD COLUMN origin_username TEXT")
    db.execute("ALTER TABLE retained ADD COLUMN origin_port INTEGER")
    db.execute("UPDATE meta SET value=2 WHERE key='schema'")
    db.execute("COMMIT")


def _origin(message) -> tuple:
    """(username, listener port) of a message's publisher, (None, None) if unknown."""
    client = message.origin_client
    if client is None:
        return None, None
    listener = getattr(client, "listener", None)
    return client.username, (listener.port if listener is not None else None)


def _props(blob, packet_type=PacketType.PUBLISH):
    """(properties, their bytes without the length) of a stored property block."""
    if not blob:
        return {}, b""
    blob = bytes(blob)
    props, _ = decode_properties(blob, 0, len(blob), packet_type)
    _, start = read_varint(blob, 0, len(blob))
    return props, blob[start:]


class Store:
    """One open persistence file. Not thread-safe; used from the event loop only."""

    def __init__(self, path: str, log=None, wall_clock=time.time):
        check_file(path)
        self.path = path
        self.log = log
        self.wall_clock = wall_clock
        try:
            # Payloads may be private: a new file is readable by its owner only (as
            # Mosquitto's); SQLite gives its WAL file the same mode.
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        except OSError as exc:
            raise PersistError(f"persistence file {path}: cannot create it: {exc.strerror}") from exc
        try:
            db = sqlite3.connect(path, isolation_level=None, timeout=0)
            # EXCLUSIVE: a second broker on the same file fails here instead of both
            # writing; set before WAL is entered so no shared-memory file is used.
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables and app_id != APPLICATION_ID:
                db.close()
                raise PersistError(f"persistence file {path} is an SQLite database but not "
                                   f"midge's; set persistence_file to another name.")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.executescript(_SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            schema = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]
            if schema == 1:
                _upgrade_from_1(db)
                schema = 2
            if schema != SCHEMA_VERSION:
                db.close()
                raise PersistError(f"persistence file {path} has format version {schema}; this "
                                   f"midge reads version {SCHEMA_VERSION}. Use the midge that wrote "
                                   f"it, or move the file aside.")
        except sqlite3.Error as exc:
            raise PersistError(f"persistence file {path}: {exc}") from exc
        self._use(db)

    @classmethod
    def in_memory(cls, data: bytes | None = None, wall_clock=time.time) -> Store:
        """A persistence file held in memory, empty or the bytes of one (`serialize`):
        the form a session takes to move between cluster nodes (server/cluster_sessions.py),
        so a moved session is written and read by the same code as a stored one."""
        store = cls.__new__(cls)
        store.path = ":memory:"
        store.log = None
        store.wall_clock = wall_clock
        db = sqlite3.connect(":memory:", isolation_level=None)
        if data is not None:
            db.deserialize(data)
        else:
            db.execute("PRAGMA page_size=512")   # a session or two: keep the bytes small
            db.executescript(_SCHEMA)
            db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        store._use(db)
        return store

    def serialize(self) -> bytes:
        return self.db.serialize()

    def _use(self, db) -> None:
        self.db = db
        self._message_rows: dict[int, tuple] = {}   # id(Message) -> (Message, row id)
        self._row_refs: dict[int, int] = {}          # row id -> number of holders
        self._row_keys: dict[int, int] = {}          # row id -> id(Message)
        self._mirrors: dict[str, _Mirror] = {}      # client id -> what the file holds
        self._seq = 1                                # next deliveries.seq
        self._rewrite_all = False                    # after a failed write: start over
        self.writes = 0                              # changes written since open

    def close(self) -> None:
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.db.close()

    def checkpoint(self) -> None:
        """Fold the WAL into the main file (autosave_interval)."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- Loading ---------------------------------------------------------------------

    def load(self, broker, now: float, listeners=()) -> tuple[int, int]:
        """Put the stored retained messages and sessions into `broker` (before it serves
        anyone); return (retained, sessions) counts."""
        db = self.db
        wall_now = self.wall_clock()
        retained = 0
        by_port = {listener.port: listener for listener in listeners}
        for topic, payload, qos, props, expiry, origin, username, port in db.execute(
                "SELECT topic, payload, qos, properties, expiry, origin_id, origin_username, "
                "origin_port FROM retained"):
            expiry_at = _monotonic(expiry, now, wall_now)
            if expiry_at is not None and expiry_at <= now:
                continue
            props, raw = _props(props)
            # The publisher as check_retain_source asks about it (not for messages an
            # older midge stored without username and listener).
            publisher = None
            if origin is not None and port is not None:
                publisher = OfflineClient(origin, username, by_port.get(port))
            broker.retained.store(Message(topic, bytes(payload), qos, True, props, expiry_at, origin,
                                          publisher, raw))
            retained += 1
        messages = {}
        for row_id, topic, payload, qos, retain, props, expiry, origin in db.execute(
                "SELECT id, topic, payload, qos, retain, properties, expiry, origin_id FROM messages"):
            props, raw = _props(props)
            message = Message(topic, bytes(payload), qos, bool(retain), props,
                              _monotonic(expiry, now, wall_now), origin, property_bytes=raw)
            messages[row_id] = message
        saved_at = db.execute("SELECT value FROM meta WHERE key='saved_at'").fetchone()
        saved_at = saved_at[0] if saved_at else wall_now
        rows_by_session: dict = {}
        for row in db.execute("SELECT client_id, seq, message_id, qos, retain, sub_ids, packet_id, "
                              "state FROM deliveries ORDER BY client_id, seq"):
            rows_by_session.setdefault(row[0], []).append(row[1:])
            self._seq = max(self._seq, row[1] + 1)
        sessions = 0
        expired = []
        for row in db.execute("SELECT * FROM sessions").fetchall():
            (client_id, expiry_interval, protocol, next_packet_id, disconnected_at, username,
             port, subs_json, incoming_json) = row
            offline_for = max(0.0, wall_now - (disconnected_at or saved_at))
            session = Session(client_id)
            session.expiry_interval = expiry_interval
            interval = session_expiry.interval_for(broker, session.expiry_interval)
            if interval is not None and offline_for >= interval:
                expired.append(client_id)
                continue
            broker.sessions[client_id] = session
            session.protocol = protocol
            session.next_packet_id = next_packet_id
            session.disconnected_at = now - offline_for
            session.last_client = OfflineClient(client_id, username, by_port.get(port))
            for key, flt, qos, nl, rap, rh, ident, group in json.loads(subs_json):
                sub = Subscription(session, flt, qos, nl, rap, rh, ident, group)
                session.own("subscriptions")[key] = sub
                broker.subs.add(sub)
            mirror = self._mirrors[client_id] = _Mirror()
            for seq, row_id, qos, retain, sub_ids, packet_id, state in rows_by_session.pop(client_id, ()):
                message = messages[row_id]
                delivery = Delivery(message, qos, bool(retain), json.loads(sub_ids) if sub_ids else None)
                size = len(message.payload)
                delivery.packet_id = packet_id
                if state != QUEUED:
                    delivery.state = state
                    session.own("inflight")[packet_id] = delivery
                    session.inflight_bytes += size
                    mirror.inflight[packet_id] = (delivery, seq, row_id, state)
                else:
                    session.queue.append(delivery)
                    session.queue_bytes += size
                    mirror.queue.append((delivery, seq, row_id))
                self._acquire(row_id, message)
            for packet_id, row_id in json.loads(incoming_json):
                if row_id is None:
                    session.own("incoming_qos2")[packet_id] = None
                else:
                    session.own("incoming_qos2")[packet_id] = messages[row_id]
                    mirror.incoming_rows.append(row_id)
                    self._acquire(row_id, messages[row_id])
            if interval is not None:
                session.expiry_token += 1
                broker.timers.add(now + interval - offline_for, session_expiry.KIND, session,
                                  session.expiry_token)
            sessions += 1
        for client_id, topic, payload, qos, retain, props, due in db.execute(
                "SELECT client_id, topic, payload, qos, retain, properties, due FROM wills").fetchall():
            session = broker.sessions.get(client_id)
            if session is None:
                continue   # the session expired while the broker was down: so did the will
            props, raw = _props(props, WILL)
            will = Will(topic, bytes(payload), qos, bool(retain), props, raw)
            will_delay.add(broker, session, will, session.last_client, max(0.0, due - wall_now), now)
            self._mirrors[client_id].will = will
        unheld = [row_id for row_id in messages if row_id not in self._row_refs]
        if expired or unheld or rows_by_session:
            db.execute("BEGIN")
            for client_id in expired + list(rows_by_session):
                db.execute("DELETE FROM sessions WHERE client_id=?", (client_id,))
                db.execute("DELETE FROM deliveries WHERE client_id=?", (client_id,))
                db.execute("DELETE FROM wills WHERE client_id=?", (client_id,))
            for row_id in unheld:
                db.execute("DELETE FROM messages WHERE id=?", (row_id,))
            db.execute("COMMIT")
        return retained, sessions

    def _acquire(self, row_id, message=None) -> None:
        refs = self._row_refs
        if row_id not in refs:
            self._message_rows[id(message)] = (message, row_id)
            self._row_keys[row_id] = id(message)
            refs[row_id] = 1
        else:
            refs[row_id] += 1

    def _release(self, row_id) -> None:
        refs = self._row_refs
        count = refs[row_id] - 1
        if count > 0:
            refs[row_id] = count
            return
        del refs[row_id]
        del self._message_rows[self._row_keys.pop(row_id)]
        self.db.execute("DELETE FROM messages WHERE id=?", (row_id,))

    # -- Writing ---------------------------------------------------------------------

    def write(self, broker, changes, now: float) -> int:
        """Store what `changes` names, in one transaction; return how many changes.

        On an SQLite error the transaction is rolled back and the next write rewrites
        everything (what this object remembers of the file may no longer match it)."""
        sessions, topics = changes.take()
        try:
            if self._rewrite_all:
                count = self._write_all(broker, now)
            else:
                count = self._write(broker, sessions, topics, now)
        except sqlite3.Error:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._rewrite_all = True
            raise
        self.writes += count
        return count

    def _write_all(self, broker, now) -> int:
        """Empty the tables and write the broker's whole durable state in one transaction."""
        self._mirrors.clear()
        self._message_rows.clear()
        self._row_keys.clear()
        self._row_refs.clear()
        topics = {message.topic for message in broker.retained.messages()}
        count = self._write(broker, set(broker.sessions.values()), topics, now, clear=True)
        self._rewrite_all = False
        return count

    def _write(self, broker, sessions, topics, now, clear=False) -> int:
        wall_now = self.wall_clock()
        db = self.db
        statements: list[tuple[str, tuple]] = []
        count = 0
        for topic in topics:
            if topic.startswith("$SYS"):
                continue
            message = broker.retained.get(topic)
            count += 1
            if message is None:
                statements.append(("DELETE FROM retained WHERE topic=?", (topic,)))
            else:
                statements.append((
                    "INSERT OR REPLACE INTO retained VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (topic, message.payload, message.qos, _props_blob(message),
                     _wall(message.expiry_at, now, wall_now), message.origin_id) + _origin(message)))
        session_rows = []
        for session in sessions:
            client_id = session.client_id
            live = broker.sessions.get(client_id) is session and session.expiry_interval != 0
            if not live and client_id not in self._mirrors:
                continue   # never stored, nothing to undo
            if not live and broker.sessions.get(client_id) not in (None, session):
                continue   # replaced: the new session's own change rewrites the row
            session_rows.append((session, live))
        if not statements and not session_rows and not clear:
            return 0
        db.execute("BEGIN")
        if clear:
            for table in ("retained", "sessions", "deliveries", "messages", "wills"):
                db.execute(f"DELETE FROM {table}")
        for sql, args in statements:
            db.execute(sql, args)
        for session, live in session_rows:
            self._write_session(session, live, now, wall_now)
            count += 1
        db.execute("INSERT OR REPLACE INTO meta VALUES ('saved_at', ?)", (wall_now,))
        db.execute("COMMIT")
        return count

    def _row_for(self, message, now, wall_now) -> int:
        entry = self._message_rows.get(id(message))
        if entry is not None and entry[0] is message:
            return entry[1]
        cursor = self.db.execute(
            "INSERT INTO messages (topic, payload, qos, retain, properties, expiry, origin_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (message.topic, message.payload, message.qos, int(message.retain),
             _props_blob(message), _wall(message.expiry_at, now, wall_now),
             message.origin_id))
        row_id = cursor.lastrowid
        assert row_id is not None   # (set by every INSERT)
        self._message_rows[id(message)] = (message, row_id)
        self._row_keys[row_id] = id(message)
        self._row_refs[row_id] = 0
        return row_id

    def _insert_delivery(self, client_id, delivery, row_id, packet_id, state) -> int:
        seq = self._seq
        self._seq = seq + 1
        sub_ids = delivery.sub_ids
        self.db.execute("INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (client_id, seq, row_id, delivery.qos, int(bool(delivery.retain)),
                         _dumps(sub_ids) if sub_ids else None, packet_id, state))
        return seq

    def _write_session(self, session, live, now, wall_now) -> None:
        db = self.db
        client_id = session.client_id
        if not live:
            db.execute("DELETE FROM sessions WHERE client_id=?", (client_id,))
            db.execute("DELETE FROM deliveries WHERE client_id=?", (client_id,))
            db.execute("DELETE FROM wills WHERE client_id=?", (client_id,))
            mirror = self._mirrors.pop(client_id, None)
            if mirror is not None:
                for row_id in mirror.incoming_rows:
                    self._release(row_id)
                for _, _, row_id, _ in mirror.inflight.values():
                    self._release(row_id)
                for _, _, row_id in mirror.queue:
                    self._release(row_id)
            return
        mirror = self._mirrors.get(client_id)
        if mirror is None:
            mirror = self._mirrors[client_id] = _Mirror()
        row_for = self._row_for
        incoming = []
        held = []
        for packet_id, message in session.incoming_qos2.items():
            row_id = None if message is None else row_for(message, now, wall_now)
            if row_id is not None:
                held.append(row_id)
                self._acquire(row_id)
            incoming.append((packet_id, row_id))
        released = mirror.incoming_rows
        mirror.incoming_rows = held
        self._write_inflight(session, mirror, released, now, wall_now)
        self._write_queue(session, mirror, released, now, wall_now)
        for row_id in released:
            self._release(row_id)
        if session.will is not mirror.will:
            self._write_will(session, wall_now, now)
            mirror.will = session.will
        client = session.client or session.last_client
        # The sessions row changes rarely (connect, subscribe, disconnect, QoS 2 in):
        # skip it when what it is made of is the same objects and values as last time.
        row = (session.expiry_interval, session.protocol, session.client, session.disconnected_at,
               client, tuple(session.subscriptions.items()), tuple(incoming))
        previous = mirror.row
        if previous is not None and len(previous) == len(row) and all(
                a is b or a == b for a, b in zip(previous[:5], row[:5])) and previous[6] == row[6] \
                and len(previous[5]) == len(row[5]) and all(
                a[0] == b[0] and a[1] is b[1] for a, b in zip(previous[5], row[5])):
            return
        mirror.row = row
        self.put_session_row(session_row(session, now, wall_now, incoming))

    def put_session_row(self, row) -> None:
        """Write one `sessions` row (`session_row`'s shape); also how a cluster's record
        of a session becomes a one-session store to load (persist/transfer.py)."""
        self.db.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", tuple(row))

    def _write_will(self, session, wall_now, now) -> None:
        """The session's delayed will (v5 will delay), or no row when it has none. It is
        due its delay after the disconnection, in wall-clock time."""
        will = session.will
        if will is None:
            self.db.execute("DELETE FROM wills WHERE client_id=?", (session.client_id,))
            return
        delay = will.properties.get(Property.WILL_DELAY_INTERVAL, 0)
        due = _wall(session.disconnected_at if session.disconnected_at is not None else now,
                    now, wall_now) + delay
        raw = will.property_bytes
        if raw is None:
            raw = encode_properties(will.properties)
        self.db.execute("INSERT OR REPLACE INTO wills VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (session.client_id, will.topic, will.payload, will.qos, int(will.retain),
                         encode_varint(len(raw)) + raw if raw else None, due))

    def _write_inflight(self, session, mirror, released, now, wall_now) -> None:
        """Delete acknowledged rows, update changed states, insert newly sent ones."""
        db = self.db
        client_id = session.client_id
        stored = mirror.inflight
        inflight = session.inflight
        for packet_id, (delivery, seq, row_id, state) in list(stored.items()):
            if inflight.get(packet_id) is not delivery:
                db.execute("DELETE FROM deliveries WHERE client_id=? AND seq=?", (client_id, seq))
                released.append(row_id)
                del stored[packet_id]
            elif delivery.state != state:
                db.execute("UPDATE deliveries SET state=? WHERE client_id=? AND seq=?",
                           (delivery.state, client_id, seq))
                stored[packet_id] = (delivery, seq, row_id, delivery.state)
        if len(stored) == len(inflight):
            return
        for packet_id, delivery in inflight.items():
            if packet_id not in stored:
                row_id = self._row_for(delivery.message, now, wall_now)
                self._acquire(row_id)
                seq = self._insert_delivery(client_id, delivery, row_id, packet_id, delivery.state)
                stored[packet_id] = (delivery, seq, row_id, delivery.state)

    def _write_queue(self, session, mirror, released, now, wall_now) -> None:
        """Bring the stored queue in line with `session.queue`. The broker only appends
        at the tail and takes from the head, so: delete the rows taken from the head,
        insert the ones appended; anything else (e.g. QoS 0 dropped from the middle
        when the client went offline) rewrites the queue."""
        stored = mirror.queue
        if not stored and not session.queued:
            return   # (reading session.queue would allocate the deque of a session that never queued)
        db = self.db
        client_id = session.client_id
        queue = session.queue
        head = queue[0] if queue else None
        removed_upto = None
        while stored and stored[0][0] is not head:
            _, removed_upto, row_id = stored.popleft()
            released.append(row_id)
        kept = len(stored)
        if kept <= len(queue) and (not kept or queue[kept - 1] is stored[-1][0]):
            if removed_upto is not None:
                db.execute("DELETE FROM deliveries WHERE client_id=? AND state=0 "
                           "AND seq<=?", (client_id, removed_upto))
            # The appended tail, read from the right end (no walk over a long queue).
            new = list(islice(reversed(queue), len(queue) - kept))[::-1] if kept else queue
        else:
            db.execute("DELETE FROM deliveries WHERE client_id=? AND state=0", (client_id,))
            released.extend(row_id for _, _, row_id in stored)
            stored.clear()
            new = queue
        for delivery in new:
            row_id = self._row_for(delivery.message, now, wall_now)
            self._acquire(row_id)
            seq = self._insert_delivery(client_id, delivery, row_id, delivery.packet_id, QUEUED)
            stored.append((delivery, seq, row_id))

    def save_packet_ids(self, broker) -> None:
        """Store where each session's packet identifiers go on (at shutdown, as
        Mosquitto saves last_mid): the sessions row is otherwise rewritten only when
        the session itself changes, not for every message numbered."""
        rows = [(session.next_packet_id, client_id) for client_id, session in broker.sessions.items()
                if client_id in self._mirrors]
        if rows:
            self.db.execute("BEGIN")
            self.db.executemany("UPDATE sessions SET next_packet_id=? WHERE client_id=?", rows)
            self.db.execute("COMMIT")

    def save_all(self, broker, changes, now: float) -> int:
        """SIGUSR1: write every persistent session and retained message again, from
        scratch, and fold the WAL into the main file."""
        changes.take()
        self._rewrite_all = True
        count = self.write(broker, changes, now)
        self.checkpoint()
        return count
