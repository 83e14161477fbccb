"""Persistent sessions across the nodes of a cluster (the sans-I/O half; docs/cluster.md).

Where a session lives: on the node its client last connected to. Every persistent
session (v3 clean session 0, v5 session expiry above 0) has a record in the cluster's
JetStream stream `<cluster_name>_sessions` (last message per subject): the node that holds it and its `sessions` row as the
persistence file stores it (subscriptions, expiry, protocol, disconnection time;
persist/transfer.py). The record is written when the session connects, subscribes,
unsubscribes, disconnects or ends, never per message. Every node follows the stream,
so `directory` here knows, without asking anyone, which node holds which session.

A CONNECT with clean start 0 whose session the directory places elsewhere waits
(`must_fetch`, `fetch`): the edge asks the node that holds it, which closes its
connection as a local takeover does (v5 0x8E), hands over the whole session (in-flight,
queued and incoming QoS 2 messages, a delayed will) and forgets it; if that node does
not answer (it died), the session is rebuilt from its record: subscriptions and expiry,
no messages. A CONNECT with clean start 1 deletes the record, and the node that holds
the session ends it when the connect is announced.

Nothing acknowledged is lost while a session moves (docs/cluster.md, "moving without
loss"). The move has a cut per publishing node: a message a node published before its
cut belongs to the old holder's session, one after it to the new node's. The new node
first asks the holder for the session's subscriptions (`prepare`: the holder closes
its connection, the session stops changing) and opens a placeholder with them, so
messages for the session are routed to it too; it announces the move, and every node,
on that announcement, sends a marker to both nodes on the same NATS subject as its
messages (so in order with them). The holder keeps a node's messages until that node's
marker (`MoveOut.cut`), the placeholder takes them from it (`MoveIn.passed`); the holder
hands the session over once every node's marker is in (`hand_over`), and the new node
puts the placeholder's messages after the session's own. `withheld` is what the
broker asks, for a QoS 1/2 delivery, while a move is on.

Every connect is still announced to every node (client ids are unique cluster-wide),
but batched: the edge sends the connects of up to 10 ms in one control message
(server/cluster_sessions.py, CONNECT_BATCH); a persistent connect, whose CONNACK waits
for the other nodes' acknowledgements, sends its batch at once.
"""

from __future__ import annotations

import json

from midge.broker import session_expiry
from midge.broker.client import CLOSED
from midge.log import LogType
from midge.persist.transfer import dump_session, load_session, record_row, restore_record
from midge.protocol.constants import ReasonCode

# Answers of the node asked for a session, besides the session itself:
REFUSED = b"-"   # its own connect of that id is the later one: it keeps the session
RESTORE = b"+"   # the record names it but it has no such session (it restarted): use the record
NONE = b""       # it ended the session (its record is on its way out): there is none
GENERATION_KEEP = 600.0   # seconds a deleted record's generation is remembered
ROW = b"="       # (followed by the session's `sessions` row as JSON) it is moving: open a placeholder


class MoveOut:
    """A session this node holds and is handing over to `target`: the nodes whose
    marker (cut) is in no longer add to it; it goes when every node's is."""

    __slots__ = ("session", "target", "waiting", "cut")

    def __init__(self, session, target: str, waiting: set):
        self.session = session
        self.target = target
        self.waiting = waiting      # every node's cut is needed, this node's own included
        self.cut: set = set()

    @property
    def complete(self) -> bool:
        return self.waiting <= self.cut


class MoveIn:
    """A session coming to this node from `source`: until a node's marker is in, its
    messages are the old holder's to deliver, not this node's."""

    __slots__ = ("session", "source", "waiting", "passed", "placeholder", "waiters")

    def __init__(self, session, source: str, waiting: set):
        self.session = session      # the placeholder, then the session it became
        self.source = source
        self.waiting = waiting
        self.passed: set = set()
        self.placeholder = True     # until the holder answered: its changes write no record
        self.waiters: list = []     # later CONNECTs of the same id: they go on once it is here


class SessionMoves:
    def __init__(self, router):
        self.router = router
        self.broker = router.broker
        self.node_id = router.node_id
        self.directory: dict[str, tuple[str, list]] = {}   # client id -> (holder node, sessions row)
        self.fetches: list[tuple] = []          # for the edge: (client, holder node, wall, resume)
        self.changed: dict[str, object] = {}    # client id -> Session whose record is out of date
        self.deletes: dict[str, float] = {}     # records to delete: client id -> generation
        self.connect_walls: dict[str, float] = {}   # client id -> wall clock its CONNECT began
        self.generations: dict[str, float] = {}   # client id -> newest generation seen (record_seen)
        self.deleted: dict[str, float] = {}   # client id -> when its deletion was seen, oldest first
        self.departed: dict[str, float] = {}  # node id -> wall clock when it was seen to go (sweep)
        self.started_wall = router.broker.wall_clock()
        self.absent: set[str] = set()   # holders of records not live at the last sweep
        self.discarding: set[str] = set()   # clean starts that discarded a session elsewhere
        self.outgoing: dict[str, MoveOut] = {}   # sessions this node is handing over
        self.incoming: dict[str, MoveIn] = {}    # sessions on their way here
        # Set by the edge: hold a persistent connect's CONNACK until the other nodes
        # acknowledged its announcement.
        self.hold = None
        # Set by the edge: hold a connected client's output (CONNACK, SUBACK, UNSUBACK)
        # until its session's record is stored.
        self.record_hold = None
        self.moved_in = 0
        self.moved_out = 0
        self.restored = 0

    # -- the node a client connects to --------------------------------------------------

    def must_fetch(self, client_id: str, clean_start: bool) -> bool:
        """Before a CONNECT picks its session: True when the session is elsewhere (or only
        in the cluster's store) and must be fetched first (`fetch`)."""
        entry = self.directory.get(client_id)
        if entry is None:
            return False
        local = self.broker.sessions.get(client_id)
        move = self.incoming.get(client_id)
        if move is not None and move.placeholder:
            return True   # on its way here: this CONNECT waits for it too (`fetch`)
        if clean_start:
            if local is None or entry[0] != self.node_id:
                # Discarded everywhere: the record goes now, the node holding the session
                # ends it when this connect is announced (Router.remote_connect), and the
                # CONNACK waits for that announcement's acknowledgements.
                self._delete(client_id, self.broker.wall_clock())   # (this connect's generation)
                self.discarding.add(client_id)
            return False
        return local is None

    def fetch(self, client, resume) -> None:
        """Ask for `client`'s session; `resume(now)` continues its CONNECT once
        `arrived` has put it here (or established there is none)."""
        client_id = client.client_id
        wall = self.broker.wall_clock()
        move = self.incoming.get(client_id)
        if move is not None and move.placeholder:
            move.waiters.append(resume)   # a second CONNECT while the session moves here
            return
        self.connect_walls[client_id] = wall
        holder = self.directory[client_id][0]
        self.fetches.append((client, holder, wall, resume))
        self.router.wake_edge()

    def take_fetches(self) -> list[tuple]:
        fetches, self.fetches = self.fetches, []
        return fetches

    def prepared(self, client, answer: bytes | None, now: float) -> bool:
        """The holder's answer to `prepare`. True when the session is moving: a
        placeholder with its subscriptions is open here (the edge announces the move,
        then asks for the session and calls `arrived`); False for any other answer,
        which `arrived` takes as it is."""
        if answer is None or answer[:1] != ROW:
            return False
        broker = self.broker
        client_id = client.client_id
        holder = self.directory[client_id][0] if client_id in self.directory else ""
        # (Registered first: the placeholder's subscriptions write no record.)
        self.incoming[client_id] = move = MoveIn(None, holder, set(self.router.nodes))
        move.passed.add(self.node_id)
        if client_id not in broker.sessions:
            try:
                move.session = restore_record(broker, json.loads(answer[1:]), now, broker.config.listeners)
            except Exception as exc:   # the session itself may still come
                broker.log.error(f"Cluster: could not open the session of {client_id} for its move: {exc!r}")
        self._watch()
        return True

    def arrived(self, client, data: bytes | None, now: float, resume) -> None:
        """The holder's answer: the session's bytes, REFUSED, NONE, RESTORE, or None (no
        answer: it died); for the last two the record, if any, is what resumes (or the
        placeholder of a move, which holds the record's subscriptions and the messages
        that came since)."""
        broker = self.broker
        client_id = client.client_id
        move = self.incoming.get(client_id)
        placeholder = move.session if move is not None and move.placeholder else None
        if move is not None:
            move.placeholder = False
        if placeholder is not None and broker.sessions.get(client_id) is not placeholder:
            placeholder = None   # (it expired meanwhile)
        session = None
        if data == REFUSED:
            if placeholder is not None:
                self._close_placeholder(placeholder, now)
        elif placeholder is not None and (data is None or data == RESTORE):
            session = placeholder   # the holder died or restarted: what came here is the session
            self.restored += 1
            self.session_changed(session)
        elif placeholder is not None or (client.state != CLOSED and client_id not in broker.sessions):
            extra = self._close_placeholder(placeholder, now) if placeholder is not None else []
            session = self._resume(client_id, data, extra, now, move.source if move is not None else "?")
            if session is None and client_id in self.directory:
                self._delete(client_id, self.connect_walls.get(client_id, 0.0))   # expired, or gone
        if move is not None:
            move.session = session
            self._settle(client_id)
        if session is not None and client.state == CLOSED:
            # Its client left while it moved: the session stays here, offline, and its
            # record carries the generation of the connect that brought it.
            self.router.clients[client_id] = self.connect_wall(client_id)
        resume(now)
        for later in move.waiters if move is not None else ():
            later(now)   # (each takes the session over from the one before, as locally)

    def _resume(self, client_id: str, data: bytes | None, extra: list, now: float, source: str):
        """The session from the holder's bytes, followed by `extra` (the placeholder's
        messages), or from its record (RESTORE, or no answer); None when there is none
        or it expired. A damaged transfer costs the session, never the node."""
        broker = self.broker
        try:
            if data and data != RESTORE:
                session = load_session(broker, data, now, broker.config.listeners)
                if session is not None:
                    self.moved_in += 1
                    self._append(session, extra)
                    if broker.log.enabled(LogType.INFORMATION):
                        broker.log.info(f"Cluster: session of {client_id} moved here from node {source} "
                                        f"({len(session.inflight)} in flight, {session.queued} queued).")
                return session
            entry = self.directory.get(client_id)
            if (data is None or data == RESTORE) and entry is not None and entry[1]:
                session = restore_record(broker, entry[1], now, broker.config.listeners)
                if session is not None:
                    self.restored += 1
                return session
        except Exception as exc:
            broker.log.error(f"Cluster: could not resume the session of {client_id}: {exc!r}")
            leftover = broker.sessions.get(client_id)
            if leftover is not None and leftover.client is None:
                broker.end_session(leftover, now)
        return None

    def _close_placeholder(self, placeholder, now: float) -> list:
        """End a move's placeholder without a record change; what it queued."""
        queued = list(placeholder.queue) if placeholder.queued else []
        self.broker.end_session(placeholder, now)
        self.changed.pop(placeholder.client_id, None)
        return queued

    def _append(self, session, deliveries: list) -> None:
        """The placeholder's messages, after the moved session's own (renumbered)."""
        if not deliveries:
            return
        queue = session.queue
        for delivery in deliveries:
            if delivery.packet_id is not None:
                delivery.packet_id = session.allocate_packet_id()
            queue.append(delivery)
            session.queue_bytes += len(delivery.message.payload)

    def finish_incoming(self, client_id: str) -> None:
        """The edge gave up waiting for markers (a node is slow or gone): the session is
        an ordinary one from now on."""
        move = self.incoming.get(client_id)
        if move is not None and not move.placeholder:
            del self.incoming[client_id]
            self._watch()

    # -- cuts: which node's messages are whose ---------------------------------------------

    def announced(self, client_id: str, source: str, target: str) -> tuple[str, ...]:
        """The move of `client_id` from `source` to `target` was announced (after the
        target's interest): this node's cut is now. The nodes to send a marker to, after
        every message routed so far."""
        if self.node_id == target:
            return ()
        if self.node_id == source:
            move = self.outgoing.get(client_id)
            if move is not None and move.target == target:
                move.cut.add(self.node_id)   # from now on our own publishes are the target's
            return (target,)
        return (source, target)

    def marker(self, client_id: str, origin: str, source: str, target: str) -> bool:
        """`origin`'s marker for a move, after all it sent before its cut; True when it
        completes an outgoing move (the edge hands the session over)."""
        if self.node_id == source:
            move = self.outgoing.get(client_id)
            if move is not None and move.target == target:
                move.cut.add(origin)
                return move.complete
        elif self.node_id == target:
            incoming = self.incoming.get(client_id)
            if incoming is not None and incoming.source == source:
                incoming.passed.add(origin)
                self._settle(client_id)
        return False

    def node_gone(self, node_id: str) -> list[str]:
        """A node left: no marker will come from it. The outgoing moves now complete."""
        self.departed[node_id] = self.broker.wall_clock()
        done = []
        for client_id, move in self.outgoing.items():
            if node_id in move.waiting:
                move.waiting.discard(node_id)
                if move.complete:
                    done.append(client_id)
        for client_id in list(self.incoming):
            self.incoming[client_id].waiting.discard(node_id)
            self._settle(client_id)
        return done

    def withheld(self, session) -> bool:
        """While a move is on: is this delivery, from the node whose message the broker
        is delivering (`Router.origin`), the other node's to make?"""
        client_id = session.client_id
        origin = self.router.origin
        move = self.outgoing.get(client_id)
        if move is not None and move.session is session:
            # (Its client back here meanwhile: the move will be refused, keep everything.)
            return origin in move.cut and session.client is None
        incoming = self.incoming.get(client_id)
        if incoming is not None and incoming.session is session:
            return origin in incoming.waiting and origin not in incoming.passed
        return False

    def _settle(self, client_id: str) -> None:
        move = self.incoming.get(client_id)
        if move is not None and not move.placeholder and (move.session is None or move.waiting <= move.passed):
            del self.incoming[client_id]
            self._watch()

    def _watch(self) -> None:
        """The broker asks `withheld` only while a move is on."""
        self.broker.withhold_while_moving(self.withheld if self.outgoing or self.incoming else None)

    # -- the node that holds the session --------------------------------------------------

    def prepare(self, client_id: str, node_id: str, wall: float, now: float) -> bytes:
        """Another node's client connected with `client_id` and clean start 0: close our
        connection of it (a takeover) and answer ROW and the session's subscriptions,
        so the other node opens a placeholder; the session goes with `hand_over` once
        every node's cut is in. Or REFUSED, RESTORE, NONE (see above)."""
        broker = self.broker
        session = broker.sessions.get(client_id)
        if session is None:
            entry = self.directory.get(client_id)
            if entry is None or entry[0] != self.node_id or client_id in self.changed:
                return NONE   # (changed: it ended here, its record is being deleted)
            return RESTORE
        client = session.client
        if client is not None:
            mine = self.router.clients.get(client_id, 0.0)
            if (mine, self.node_id) > (wall, node_id):
                return REFUSED
            if broker.limits.connection_messages and broker.log.enabled(LogType.NOTICE):
                broker.log.notice(f"Client {client_id} connected on node {node_id}, "
                                  "closing it here and moving its session there.")
            # A session that goes on keeps quiet: no will (as a local takeover).
            client.close(now, "takeover", ReasonCode.SESSION_TAKEN_OVER, None, session.expiry_interval == 0)
            session = broker.sessions.get(client_id)
            if session is None:
                return NONE   # session expiry 0: it ended with its connection
        self.outgoing[client_id] = MoveOut(session, node_id, set(self.router.nodes) | {self.node_id})
        self._watch()
        return ROW + json.dumps(record_row(session, now, broker.wall_clock()), separators=(",", ":")).encode()

    def hand_over(self, client_id: str, target: str, wall: float, now: float) -> bytes:
        """The moving session, as bytes, and forget it here (NONE if it ended meanwhile,
        REFUSED if its client connected here again: the later connect keeps it). Without
        a `prepare` first (this node restarted since, or the move was abandoned), the
        answer is `prepare`'s, or the session at once."""
        broker = self.broker
        move = self.outgoing.pop(client_id, None)
        if move is None:
            answer = self.prepare(client_id, target, wall, now)
            if answer[:1] != ROW:
                return answer
            move = self.outgoing.pop(client_id)
        self._watch()
        session = broker.sessions.get(client_id)
        if session is None or move is None or move.session is not session:
            return NONE
        if session.client is not None:
            return REFUSED
        data = dump_session(broker, session, now)
        entry = self.directory.get(client_id)
        self.directory[client_id] = (move.target, entry[1] if entry else [])   # theirs now: no delete from here
        # Resumed elsewhere: a delayed will is the new node's to cancel, not ours to send.
        broker.cancel_delayed_will(session)
        session.will = None
        session.will_client = None
        broker.end_session(session, now)
        self.router.clients.pop(client_id, None)
        self.moved_out += 1
        return data

    def abandon(self, client_id: str, target: str) -> None:
        """The node a session was moving to never asked for it (it died): keep it."""
        move = self.outgoing.get(client_id)
        if move is not None and move.target == target:
            del self.outgoing[client_id]
            self._watch()

    def give(self, client_id: str, node_id: str, wall: float, now: float) -> bytes:
        """`prepare` and `hand_over` at once (nothing in flight: in-process tests)."""
        return self.hand_over(client_id, node_id, wall, now)

    # -- records ------------------------------------------------------------------------

    def session_changed(self, session) -> None:
        """A session's record may be out of date (connect, subscription, disconnect, end)."""
        client_id = session.client_id
        if session.expiry_interval == 0 and client_id not in self.directory:
            return   # a clean session has no record (its connect is announced, that is all)
        move = self.incoming.get(client_id)
        if move is not None and move.placeholder:
            return   # a move's placeholder: the record is the holder's until the session is here
        self.changed[client_id] = session
        client = session.client
        if client is not None and self.record_hold is not None and session.expiry_interval != 0:
            self.record_hold(client)
        self.router.wake_edge()

    def take_records(self, now: float) -> tuple[list, list]:
        """For the edge: records to write as (client id, row, generation), and deletions
        as (client id, generation)."""
        broker = self.broker
        puts = []
        if self.changed:
            wall = broker.wall_clock()
            clients = self.router.clients
            for client_id, session in self.changed.items():
                if broker.sessions.get(client_id) is session and session.expiry_interval != 0:
                    row = record_row(session, now, wall)
                    self.directory[client_id] = (self.node_id, row)
                    puts.append((client_id, row, clients.get(client_id, 0.0)))
                    continue
                entry = self.directory.get(client_id)
                current = broker.sessions.get(client_id)
                if entry is not None and entry[0] == self.node_id and (
                        current is None or current.expiry_interval == 0):
                    self._delete(client_id, clients.get(client_id, 0.0))
                if current is None:
                    clients.pop(client_id, None)   # dated its deletion: forget its connect
            self.changed.clear()
        deletes = list(self.deletes.items())
        self.deletes.clear()
        return puts, deletes

    def _delete(self, client_id: str, generation: float) -> None:
        self.directory.pop(client_id, None)
        self.deletes[client_id] = generation
        self.router.wake_edge()

    def record_seen(self, client_id: str, holder: str | None, row, generation: float) -> None:
        """The stream of records changed (any node's write, ours included): holder None for a
        deletion. Records and deletions carry the generation of the session they are
        about (the wall clock of the connect that made it); one older than what was
        seen last for that id was overtaken on its way (written by a node before it
        learnt of a newer connect elsewhere) and is ignored."""
        if generation < self.generations.get(client_id, 0.0):
            return
        self.generations[client_id] = generation
        self._forget_deleted(client_id)
        if holder is None:
            self.deleted[client_id] = self.broker.now
            self.directory.pop(client_id, None)
        elif holder != self.node_id or client_id in self.broker.sessions or client_id not in self.directory:
            self.directory[client_id] = (holder, row)

    def _forget_deleted(self, client_id: str) -> None:
        """The generation of an id whose record was deleted is kept GENERATION_KEEP
        seconds (an overtaken write is in flight for a round trip, not minutes), then
        forgotten: ids that come and go do not grow `generations` for ever."""
        deleted = self.deleted
        deleted.pop(client_id, None)
        if deleted:
            horizon = self.broker.now - GENERATION_KEEP
            for old, seen in list(deleted.items()):
                if seen > horizon:
                    break
                del deleted[old]
                if old not in self.directory:
                    self.generations.pop(old, None)

    def sweep(self, live: set[str], wall_now: float) -> int:
        """Delete the records whose holder is gone (not in `live`) and whose session has
        expired meanwhile: nobody else would, and a client that never returns would
        leave its record in JetStream for ever. Expiry counts from the disconnection the
        record gives, or, for a session that was connected when its node went, from when
        this node saw that node go (or from this node's start, if before it). One node
        sweeps (the edge picks the live node with the smallest id); how many went. A
        holder this node never saw go counts as gone only when it was absent at the
        previous sweep too (a node that just started is known within a heartbeat)."""
        swept = 0
        absent = set()
        for client_id, (holder, row) in list(self.directory.items()):
            if holder in live or not row:
                continue
            absent.add(holder)
            if holder not in self.departed and holder not in self.absent:
                continue
            interval = session_expiry.interval_for(self.broker, row[1])
            if interval is None:
                continue
            since = row[4] if row[4] is not None else self.departed.get(holder, self.started_wall)
            if since + interval < wall_now:
                self._delete(client_id, self.generations.get(client_id, 0.0))
                swept += 1
        self.absent = absent
        return swept

    # -- connects -------------------------------------------------------------------------

    def connect_seen(self, client_id: str, node_id: str, persistent: bool) -> None:
        """Another node announced a connect: a persistent session is there now (its
        record, written meanwhile, brings the row)."""
        if persistent:
            entry = self.directory.get(client_id)
            self.directory[client_id] = (node_id, entry[1] if entry else [])

    def must_hold(self, client_id: str, persistent: bool) -> bool:
        """Whether a connect's CONNACK waits until every node acknowledged it: when it has
        a persistent session, or discarded one held elsewhere."""
        discarded = client_id in self.discarding
        if discarded:
            self.discarding.discard(client_id)
        return persistent or discarded

    def connect_wall(self, client_id: str) -> float:
        """When this node's connect of `client_id` began (the later connect keeps the id)."""
        wall = self.connect_walls.pop(client_id, None)
        return wall if wall is not None else self.broker.wall_clock()
