"""A persistent session as it moves between the nodes of a cluster.

There is no second format: a moving session is a persistence file (store.py) held in
memory and sent as its bytes (`sqlite3.Connection.serialize`), written by the node
that held the session and loaded by the node its client reached, with the code that
stores sessions on disk. What the cluster keeps in JetStream for a node that dies is
the session's `sessions` row alone (subscriptions, expiry, protocol, disconnection
time), restored the same way (docs/cluster.md says what that keeps and what not).

Sans-I/O: bytes in, bytes out; server/cluster_sessions.py sends them.
"""

from __future__ import annotations

from midge.persist.changes import Changes
from midge.persist.store import Store, session_row


def dump_session(broker, session, now: float) -> bytes:
    """The whole session (subscriptions, in-flight and queued messages, incoming QoS 2,
    a delayed will), as the bytes of a one-session persistence file."""
    store = Store.in_memory(wall_clock=broker.wall_clock)
    changes = Changes()
    changes.sessions.add(session)
    store.write(broker, changes, now)
    return store.serialize()


def load_session(broker, data: bytes, now: float, listeners=()):
    """Put the session `data` holds into `broker` (tables, subscriptions, expiry timer);
    the Session, or None when it has expired meanwhile."""
    store = Store.in_memory(data, wall_clock=broker.wall_clock)
    return _load(store, broker, now, listeners)


def record_row(session, now: float, wall_now: float) -> list:
    """What JetStream keeps of a session: its `sessions` row (without incoming QoS 2)."""
    return list(session_row(session, now, wall_now))


def restore_record(broker, row, now: float, listeners=()):
    """Resume a session from its JetStream record (its node died): subscriptions and
    expiry, no messages. The Session, or None when it has expired."""
    store = Store.in_memory(wall_clock=broker.wall_clock)
    row = list(row)
    row[8] = "[]"   # incoming QoS 2 messages are not in the record
    store.put_session_row(row)
    return _load(store, broker, now, listeners)


def _load(store: Store, broker, now: float, listeners):
    client_ids = [row[0] for row in store.db.execute("SELECT client_id FROM sessions")]
    try:
        store.load(broker, now, listeners)
    finally:
        store.db.close()
    for client_id in client_ids:
        session = broker.sessions.get(client_id)
        if session is not None:
            return session
    return None


__all__ = ["dump_session", "load_session", "record_row", "restore_record"]
