"""The SQLite persistence store (`persistence true`): retained messages and
persistent sessions, written incrementally and loaded at start.

Layout (one SQLite file in WAL mode, `PRAGMA application_id` marks it as midge's):

- `retained(topic, payload, qos, properties, expiry, origin_id)`
- `messages(id, topic, payload, qos, retain, properties, expiry, origin_id)`: messages
  held by sessions (queued, in flight, incoming QoS 2), stored once however many
  sessions hold them; a message no session holds any more is deleted.
- `sessions(client_id, expiry_interval, protocol, next_packet_id, disconnected_at,
  username, listener_port, subscriptions, deliveries, incoming)`: the last three are
  JSON; deliveries and incoming QoS 2 entries refer to `messages.id`.
- `meta(key, value)`: schema version, `saved_at` (wall clock of the last write).

Times are stored as wall-clock seconds (the broker's clock is monotonic and
restarts with the process). See docs/persistence.md for the durability guarantee.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import deque

from midge.broker import session_expiry
from midge.broker.message import Delivery, Message
from midge.broker.session import Session
from midge.broker.subs import Subscription
from midge.protocol.constants import PacketType
from midge.protocol.properties import decode_properties, encode_property_block

_dumps = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode

APPLICATION_ID = 0x6D696467  # "midg"
SCHEMA_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"
MOSQUITTO_MAGIC = b"\x00\xb5\x00mosquitto db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS retained (
    topic TEXT PRIMARY KEY, payload BLOB NOT NULL, qos INTEGER NOT NULL,
    properties BLOB, expiry REAL, origin_id TEXT);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL,
    retain INTEGER NOT NULL, properties BLOB, expiry REAL, origin_id TEXT);
CREATE TABLE IF NOT EXISTS sessions (
    client_id TEXT PRIMARY KEY, expiry_interval INTEGER NOT NULL, protocol INTEGER NOT NULL,
    next_packet_id INTEGER NOT NULL, disconnected_at REAL, username TEXT, listener_port INTEGER,
    subscriptions TEXT NOT NULL, deliveries TEXT NOT NULL, incoming TEXT NOT NULL);
"""


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
        self.is_bridge = False
        self.version = 4
        self.mount_point = getattr(listener, "mount_point", None) or ""


def store_path(config) -> str:
    """`persistence_location` + `persistence_file`, as Mosquitto joins them."""
    name = getattr(config, "persistence_file", None) or "mosquitto.db"
    location = getattr(config, "persistence_location", None)
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


def _props_blob(props):
    return encode_property_block(props) if props else None


def _props(blob):
    if not blob:
        return {}
    props, _ = decode_properties(blob, 0, len(blob), PacketType.PUBLISH)
    return props


class Store:
    """One open persistence file. Not thread-safe; used from the event loop only."""

    def __init__(self, path: str, log=None, wall_clock=time.time):
        check_file(path)
        self.path = path
        self.log = log
        self.wall_clock = wall_clock
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
        except sqlite3.Error as exc:
            raise PersistError(f"persistence file {path}: {exc}") from exc
        self.db = db
        self._message_rows: dict[int, tuple] = {}   # id(Message) -> (Message, row id)
        self._row_refs: dict[int, int] = {}          # row id -> number of holders
        self._row_keys: dict[int, int] = {}          # row id -> id(Message)
        self._session_rows: dict[str, list] = {}     # client id -> row ids it holds
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
        for topic, payload, qos, props, expiry, origin in db.execute(
                "SELECT topic, payload, qos, properties, expiry, origin_id FROM retained"):
            expiry_at = _monotonic(expiry, now, wall_now)
            if expiry_at is not None and expiry_at <= now:
                continue
            broker.retained.store(Message(topic, bytes(payload), qos, True, _props(props),
                                          expiry_at, origin))
            retained += 1
        messages = {}
        for row_id, topic, payload, qos, retain, props, expiry, origin in db.execute(
                "SELECT id, topic, payload, qos, retain, properties, expiry, origin_id FROM messages"):
            message = Message(topic, bytes(payload), qos, bool(retain), _props(props),
                              _monotonic(expiry, now, wall_now), origin)
            messages[row_id] = message
        saved_at = db.execute("SELECT value FROM meta WHERE key='saved_at'").fetchone()
        saved_at = saved_at[0] if saved_at else wall_now
        by_port = {getattr(listener, "port", None): listener for listener in listeners}
        sessions = 0
        expired = []
        for row in db.execute("SELECT * FROM sessions").fetchall():
            (client_id, expiry_interval, protocol, next_packet_id, disconnected_at, username,
             port, subs_json, deliveries_json, incoming_json) = row
            offline_for = max(0.0, wall_now - (disconnected_at or saved_at))
            session = Session(client_id)
            session.expiry_interval = expiry_interval
            interval = session_expiry.interval_for(broker, session)
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
                session.subscriptions[key] = sub
                broker.subs.add(sub)
            held = []
            for row_id, qos, retain, sub_ids, packet_id, state in json.loads(deliveries_json):
                message = messages.get(row_id)
                if message is None:
                    continue
                held.append(row_id)
                delivery = Delivery(message, qos, retain, sub_ids)
                size = len(message.payload)
                if packet_id is not None:
                    delivery.packet_id = packet_id
                    delivery.state = state
                    session.inflight[packet_id] = delivery
                    session.inflight_bytes += size
                else:
                    session.queue.append(delivery)
                    session.queue_bytes += size
            for packet_id, row_id in json.loads(incoming_json):
                if row_id is None:
                    session.incoming_qos2[packet_id] = None
                elif row_id in messages:
                    held.append(row_id)
                    session.incoming_qos2[packet_id] = messages[row_id]
            self._hold(client_id, held, messages)
            if interval is not None:
                session.expiry_token += 1
                broker.timers.add(now + interval - offline_for, session_expiry.KIND, session,
                                  session.expiry_token)
            sessions += 1
        if expired or len(self._row_refs) != len(messages):
            db.execute("BEGIN")
            db.executemany("DELETE FROM sessions WHERE client_id=?", [(c,) for c in expired])
            for row_id in messages:
                if row_id not in self._row_refs:
                    db.execute("DELETE FROM messages WHERE id=?", (row_id,))
            db.execute("COMMIT")
        return retained, sessions

    def _hold(self, client_id, row_ids, messages) -> None:
        self._session_rows[client_id] = row_ids
        refs = self._row_refs
        for row_id in row_ids:
            if row_id not in refs:
                message = messages[row_id]
                self._message_rows[id(message)] = (message, row_id)
                self._row_keys[row_id] = id(message)
                refs[row_id] = 0
            refs[row_id] += 1

    # -- Writing ---------------------------------------------------------------------

    def write(self, broker, changes, now: float) -> int:
        """Store what `changes` names, in one transaction; return how many changes.

        On an SQLite error the changes stay in `changes` for the next attempt."""
        sessions, topics = changes.take()
        try:
            count = self._write(broker, sessions, topics, now)
        except sqlite3.Error:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            changes.sessions |= sessions
            changes.retained |= topics
            raise
        self.writes += count
        return count

    def _write(self, broker, sessions, topics, now) -> int:
        wall_now = self.wall_clock()
        db = self.db
        statements = []
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
                    "INSERT OR REPLACE INTO retained VALUES (?, ?, ?, ?, ?, ?)",
                    (topic, message.payload, message.qos, _props_blob(message.properties),
                     _wall(message.expiry_at, now, wall_now), message.origin_id)))
        session_rows = []
        for session in sessions:
            client_id = session.client_id
            live = broker.sessions.get(client_id) is session and session.expiry_interval != 0
            if not live and client_id not in self._session_rows:
                continue   # never stored, nothing to undo
            if not live and broker.sessions.get(client_id) not in (None, session):
                continue   # replaced: the new session's own change rewrites the row
            session_rows.append((session, live))
        if not statements and not session_rows:
            return 0
        db.execute("BEGIN")
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
             _props_blob(message.properties), _wall(message.expiry_at, now, wall_now),
             message.origin_id))
        row_id = cursor.lastrowid
        self._message_rows[id(message)] = (message, row_id)
        self._row_keys[row_id] = id(message)
        self._row_refs[row_id] = 0
        return row_id

    def _write_session(self, session, live, now, wall_now) -> None:
        db = self.db
        client_id = session.client_id
        held = []
        if live:
            deliveries = []
            for delivery in session.inflight.values():
                row_id = self._row_for(delivery.message, now, wall_now)
                held.append(row_id)
                deliveries.append((row_id, delivery.qos, delivery.retain, delivery.sub_ids,
                                   delivery.packet_id, delivery.state))
            for delivery in session.queue:
                row_id = self._row_for(delivery.message, now, wall_now)
                held.append(row_id)
                deliveries.append((row_id, delivery.qos, delivery.retain, delivery.sub_ids,
                                   None, 0))
            incoming = []
            for packet_id, message in session.incoming_qos2.items():
                row_id = None if message is None else self._row_for(message, now, wall_now)
                if row_id is not None:
                    held.append(row_id)
                incoming.append((packet_id, row_id))
            subs = [(key, sub.filter, sub.qos, sub.no_local, sub.retain_as_published,
                     sub.retain_handling, sub.identifier, sub.group)
                    for key, sub in session.subscriptions.items()]
            client = session.client or session.last_client
            listener = getattr(client, "listener", None)
            disconnected = None if session.client is not None else _wall(
                session.disconnected_at, now, wall_now)
            db.execute("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (client_id, session.expiry_interval, session.protocol,
                        session.next_packet_id, disconnected, getattr(client, "username", None),
                        getattr(listener, "port", None), _dumps(subs),
                        _dumps(deliveries), _dumps(incoming)))
        else:
            db.execute("DELETE FROM sessions WHERE client_id=?", (client_id,))
        refs = self._row_refs
        for row_id in held:
            refs[row_id] += 1
        dead = []
        for row_id in self._session_rows.pop(client_id, ()):
            refs[row_id] -= 1
            if refs[row_id] <= 0:
                dead.append(row_id)
        if live:
            self._session_rows[client_id] = held
        for row_id in dead:
            if refs.get(row_id, 1) <= 0:    # (a row may appear twice in one session)
                del refs[row_id]
                message_key = self._row_keys.pop(row_id)
                del self._message_rows[message_key]
                db.execute("DELETE FROM messages WHERE id=?", (row_id,))

    def save_all(self, broker, changes, now: float) -> int:
        """SIGUSR1: write every persistent session and retained message again."""
        changes.sessions.update(broker.sessions.values())
        changes.sessions.update(s for s in self._stale_sessions(broker))
        topics = changes.retained
        for message in broker.retained.messages():
            topics.add(message.topic)
        for (topic,) in self.db.execute("SELECT topic FROM retained").fetchall():
            topics.add(topic)
        count = self.write(broker, changes, now)
        self.checkpoint()
        return count

    def _stale_sessions(self, broker):
        """Stored sessions the broker no longer has (deleted on the next write)."""
        for client_id in list(self._session_rows):
            if client_id not in broker.sessions:
                yield Session(client_id)
