"""Persistent sessions across the cluster: the I/O half of broker/session_moves.py.

- The JetStream stream `<cluster_name>_sessions` holds one record per persistent
  session on subject `<cluster_name>.sess.<client id token>` (`max_msgs_per_subject 1`,
  so it is a key-value store): `{"node": holder, "gen": generation, "row": sessions
  row}`; `{"gen": generation}` alone deletes it (session_moves.record_seen). Written with core publishes (no acknowledgement round
  trip), when a session connects, subscribes, disconnects or ends, never per message.
  Every node reads the whole stream before its listeners open and follows it.
- `<cluster_name>.s.<node>`: requests for a session that node holds; the answer is the
  session as a one-session persistence file (persist/transfer.py), empty for none.
- Client connects of one loop turn go out as one `cs` control message on
  `<cluster_name>.ctl`.
- A move (session_moves.py, "nothing acknowledged is lost"): the new node asks the
  holder to `prepare`, opens the placeholder, sends its interest and an `mv` control
  message; each node, on `mv`, sends what it routed so far and then a marker (MARKER
  and JSON, on the inbox subject of both nodes, so in order with its records); the
  holder answers `give` once every marker is in (MOVE_TIMEOUT at most).
"""

from __future__ import annotations

import asyncio
import itertools
import json

from midge.broker.session_moves import NONE, RESTORE
from midge.broker.subjects import decode_level, encode_token
from midge.log import LogType

FETCH_TIMEOUT = 2.0     # longest a CONNECT waits for the node holding its session
SYNC_TIMEOUT = 2.0      # longest a persistent CONNACK waits for the other nodes' acknowledgements
# Clean connects are announced at most this late, so that a connection storm sends a
# few large announcements instead of one per event-loop turn (each costs every node a
# NATS callback and a JSON parse). No CONNACK waits for it; a persistent connect (whose
# CONNACK waits for the acknowledgements) sends the batch at once.
CONNECT_BATCH = 0.01
# Longest the holder of a moving session waits for every node's marker (a node that
# does not send one is slow or dying); below FETCH_TIMEOUT, which the new node waits.
MOVE_TIMEOUT = 1.0
# A marker's first byte: never a record's (their flags use six bits).
MARKER = b"\xff"


def holdable(client, cluster):
    """The connection whose output can wait for cluster acknowledgements, or None (no
    socket connection, or NATS is away: nothing would acknowledge)."""
    conn = client.io
    if conn is None or not hasattr(conn, "cluster_wait") or not cluster.connected:
        return None
    return conn


def hold_output(conn) -> None:
    """Hold a connection's output until one more acknowledgement is in (`release_output`):
    a SUBACK may wait for the other nodes and for JetStream at once."""
    conn.cluster_wait += 1


def release_output(conn) -> None:
    if conn.cluster_wait > 0:
        conn.cluster_wait -= 1
        if not conn.cluster_wait:
            conn.flush()


class ClusterSessions:
    def __init__(self, cluster):
        self.cluster = cluster
        name = cluster.name
        self.stream = f"{name}_sessions"
        self.record_prefix = f"{name}.sess."
        self.request_prefix = f"{name}.s."
        self._acks = itertools.count(1)
        self._held: list = []   # connections whose CONNACK waits for the next `cs` acknowledgements
        self._batch_timer = None
        self._handovers: dict[str, asyncio.Future] = {}   # client id -> set when every marker is in
        self._waiting_moves: list[dict] = []   # `mv` announcements whose node's interest we lack
        # Record writes JetStream acknowledges: a persistent session's CONNACK, SUBACK and
        # UNSUBACK wait until its record is stored, so a node killed right after loses
        # nothing the client was told (docs/cluster.md).
        self.stored_prefix = f"{name}.stored.{encode_token(cluster.node_id)}."
        self._stored_keys = itertools.count(1)
        self._record_held: list = []      # connections whose output waits for this turn's records
        self._storing: dict[str, list] = {}   # key -> [records not yet acknowledged, connections, timer]

    @property
    def moves(self):
        return self.cluster.router.moves

    async def start(self) -> None:
        """Join: answer session requests, read every record before serving anyone."""
        cluster = self.cluster
        await cluster.nc.subscribe(self.request_prefix + encode_token(cluster.node_id), cb=self._on_request)
        await cluster.nc.subscribe(self.stored_prefix + "*", cb=self._on_stored)
        await cluster.follow_stream(self.stream, self.record_prefix + ">", self._record,
                                    "persistent session records")
        if cluster.log.enabled(LogType.INFORMATION):
            cluster.log.info(f"Cluster: {len(self.moves.directory)} persistent session record(s) loaded "
                             "from JetStream.")

    def _record(self, subject: str, data: bytes) -> None:
        client_id = decode_level(subject[len(self.record_prefix):])
        body = json.loads(data) if data else {}
        self.moves.record_seen(client_id, body.get("node"), body.get("row"), body.get("gen", 0.0))

    # -- every loop turn (Cluster._flush) ---------------------------------------------------

    def flush(self) -> None:
        """Send this turn's connects (one message), records, and session requests."""
        cluster = self.cluster
        router = cluster.router
        moves = router.moves
        if router.connects:
            if self._held:
                self._send_connects()
            elif self._batch_timer is None:
                self._batch_timer = cluster.loop.call_later(CONNECT_BATCH, self._send_connects)
        if moves.changed or moves.deletes:
            puts, deletes = moves.take_records(cluster.loop.time())
            reply = self._acknowledged(len(puts) + len(deletes))
            for client_id, row, generation in puts:
                cluster._send(self.record_prefix + encode_token(client_id),
                              json.dumps({"node": cluster.node_id, "gen": generation, "row": row},
                                         separators=(",", ":")).encode(), reply)
            for client_id, generation in deletes:   # (a deletion is a record without a node)
                cluster._send(self.record_prefix + encode_token(client_id),
                              json.dumps({"gen": generation}).encode(), reply)
        elif self._record_held:
            self._acknowledged(0)
        if moves.fetches:
            for client, holder, wall, resume in moves.take_fetches():
                cluster._spawn(self._fetch(client, holder, wall, resume))

    def _send_connects(self) -> None:
        """Announce the connects of the last turns (one `cs` control message)."""
        cluster = self.cluster
        router = cluster.router
        if self._batch_timer is not None:
            self._batch_timer.cancel()
            self._batch_timer = None
        connects, router.connects = router.connects, []
        if not connects:
            return
        body = {"t": "cs", "c": [list(connect) for connect in connects]}
        held, self._held = self._held, []
        if held:
            key = f"c{next(self._acks)}"
            body["ack"] = key
            waiting = {f"{node}|c" for node in router.nodes}
            timer = cluster.loop.call_later(SYNC_TIMEOUT, cluster._release, key)
            cluster._syncs[key] = (waiting, held, timer)
        cluster._control(body)

    def hold_for_record(self, client) -> None:
        """Hold `client`'s output (a CONNACK, SUBACK, UNSUBACK written this turn) until
        JetStream stored its session's record (`_acknowledged`)."""
        conn = holdable(client, self.cluster)
        if conn is None:
            return
        hold_output(conn)
        self._record_held.append(conn)

    def _acknowledged(self, count: int) -> bytes:
        """The reply field for this turn's `count` record writes: JetStream's
        acknowledgements release the connections held for them."""
        held, self._record_held = self._record_held, []
        if not held:
            return b""
        if not count:
            for conn in held:
                release_output(conn)
            return b""
        key = str(next(self._stored_keys))
        timer = self.cluster.loop.call_later(SYNC_TIMEOUT, self._release_stored, key)
        self._storing[key] = [count, held, timer]
        return (self.stored_prefix + key + " ").encode()

    async def _on_stored(self, msg) -> None:
        """JetStream's acknowledgement of one record write."""
        key = msg.subject[len(self.stored_prefix):]
        storing = self._storing.get(key)
        if storing is None:
            return
        storing[0] -= 1
        if b'"error"' in msg.data:
            self.cluster.log.warning("Cluster: JetStream did not store a persistent session record: "
                                     + msg.data.decode(errors="replace"))
            storing[0] = 0
        if storing[0] <= 0:
            self._release_stored(key)

    def _release_stored(self, key: str) -> None:
        storing = self._storing.pop(key, None)
        if storing is not None:
            storing[2].cancel()
            for conn in storing[1]:
                release_output(conn)

    def hold(self, client) -> None:
        """Hold `client`'s output (its CONNACK, written this turn) until the other nodes
        acknowledged its connect (Cluster._on_ack releases it)."""
        conn = holdable(client, self.cluster)
        if conn is None:
            return
        hold_output(conn)
        self._held.append(conn)

    def on_connects(self, node_id: str, body: dict, now: float) -> None:
        """Another node's connects of one loop turn (`cs`): takeovers here, the
        directory, and the acknowledgement its held CONNACKs wait for."""
        cluster = self.cluster
        router = cluster.router
        moves = router.moves
        for client_id, wall, clean, persistent in body["c"]:
            router.remote_connect(client_id, node_id, wall, clean, now)
            moves.connect_seen(client_id, node_id, persistent)
        cluster.server.drain()
        if body.get("ack"):
            cluster._send(f"{cluster.name}.ack.{encode_token(node_id)}",
                          json.dumps({"node": f"{cluster.node_id}|c", "seq": body["ack"]}).encode())

    # -- moving a session ---------------------------------------------------------------------

    async def _fetch(self, client, holder: str, wall: float, resume) -> None:
        """Move the session of `client` (connecting here) from `holder`; resume its
        CONNECT."""
        cluster = self.cluster
        moves = self.moves
        client_id = client.client_id
        data = None
        if holder != cluster.node_id:
            data = await self._ask(holder, client_id, wall, "prepare")
            if moves.prepared(client, data, cluster.loop.time()):
                self._announce_move(client_id, holder)
                data = await self._ask(holder, client_id, wall, "give")
                cluster.loop.call_later(MOVE_TIMEOUT, moves.finish_incoming, client_id)
        try:
            moves.arrived(client, data, cluster.loop.time(), resume)
        finally:
            cluster.server.drain()

    async def _ask(self, holder: str, client_id: str, wall: float, step: str) -> bytes | None:
        """One request to the node holding a session; None when it does not answer."""
        import nats.errors

        cluster = self.cluster
        body = json.dumps({"client": client_id, "node": cluster.node_id, "wall": wall, "step": step}).encode()
        try:
            reply = await cluster.nc.request(self.request_prefix + encode_token(holder), body,
                                             timeout=FETCH_TIMEOUT)
            return reply.data
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, asyncio.TimeoutError):
            if cluster.log.enabled(LogType.NOTICE):
                cluster.log.notice(f"Cluster: node {holder} did not hand over the session of "
                                   f"{client_id}; resuming it from its record.")
        except Exception as exc:
            cluster.log.warning(f"Cluster: asking node {holder} for the session of {client_id}: {exc!r}")
        return None

    def _announce_move(self, client_id: str, holder: str) -> None:
        """The placeholder is open: its interest goes out, then our marker (what we
        routed to the holder before it is the holder's), then the move itself."""
        cluster = self.cluster
        cluster._flush()
        move = {"c": client_id, "from": holder, "to": cluster.node_id}
        cluster._send(cluster.router.inbox_subject(holder), MARKER + json.dumps(move).encode(), cluster.sender)
        cluster._control(dict(move, t="mv", seq=cluster.seq))   # (seq: the interest it must know first)

    def on_move(self, body: dict) -> None:
        """A move was announced (`mv`, after the new node's interest): our cut. What we
        routed so far goes out, then a marker to both nodes. A node that does not know
        the new node's interest up to the announcement's `seq` yet (it missed a delta
        and asked for a full announcement) cuts once it does (`retry_moves`): cut
        earlier, its next messages would reach neither node's session."""
        cluster = self.cluster
        client_id, source, target = body["c"], body["from"], body["to"]
        known = cluster.router.nodes.get(target)
        if target != cluster.node_id and (known is None or known.seq < body.get("seq", 0)):
            body.setdefault("until", cluster.loop.time() + MOVE_TIMEOUT)
            self._waiting_moves.append(body)
            return
        targets = self.moves.announced(client_id, source, target)
        if not targets:
            return
        cluster._flush()
        marker = MARKER + json.dumps({"c": client_id, "from": source, "to": target}).encode()
        for node_id in targets:
            cluster._send(cluster.router.inbox_subject(node_id), marker, cluster.sender)
        self._completed(client_id)

    def retry_moves(self) -> None:
        """Another node's interest changed: cut the moves that waited for it (or give up
        on those past their time: the holder no longer waits for our marker either)."""
        if not self._waiting_moves:
            return
        waiting, self._waiting_moves = self._waiting_moves, []
        now = self.cluster.loop.time()
        for body in waiting:
            if body["until"] > now:
                self.on_move(body)

    def on_marker(self, origin: str | None, data: bytes) -> None:
        """A node's marker: everything it sent before its cut is here."""
        body = json.loads(data[1:])
        client_id = body["c"]
        if origin is not None and self.moves.marker(client_id, origin, body["from"], body["to"]):
            self._completed(client_id)

    def node_gone(self, node_id: str) -> None:
        for client_id in self.moves.node_gone(node_id):
            self._completed(client_id)

    def _completed(self, client_id: str) -> None:
        move = self.moves.outgoing.get(client_id)
        waiter = self._handovers.get(client_id)
        if move is not None and move.complete and waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _on_request(self, msg) -> None:
        """Another node's client took a session this node holds: `prepare` its move, or
        `give` it once every node's marker is in."""
        cluster = self.cluster
        data = NONE
        client_id = ""
        try:
            body = json.loads(msg.data)
            client_id = body["client"]
            if body.get("step") == "give":
                cluster._spawn(self._give(msg, client_id, body["node"], body["wall"]))
                return
            data = self.moves.prepare(client_id, body["node"], body["wall"], cluster.loop.time())
            if client_id in self.moves.outgoing:
                # The new node asks for the session next; if it never does (it died),
                # the session stays here.
                cluster.loop.call_later(2 * FETCH_TIMEOUT, self.moves.abandon, client_id, body["node"])
        except Exception as exc:
            cluster.log.error(f"Cluster: could not hand over a session: {exc!r}")
        cluster.server.drain()
        if msg.reply:
            await msg.respond(data)

    async def _give(self, msg, client_id: str, target: str, wall: float) -> None:
        cluster = self.cluster
        move = self.moves.outgoing.get(client_id)
        if move is not None and not move.complete:
            waiter = self._handovers[client_id] = cluster.loop.create_future()
            try:
                await asyncio.wait_for(waiter, MOVE_TIMEOUT)
            except asyncio.TimeoutError:
                missing = sorted(move.waiting - move.cut)
                cluster.log.warning(f"Cluster: no marker from node(s) {', '.join(missing)} for the move of "
                                    f"{client_id}; handing the session over to {target} without it.")
            finally:
                self._handovers.pop(client_id, None)
        data = NONE
        try:
            data = self.moves.hand_over(client_id, target, wall, cluster.loop.time())
        except Exception as exc:
            cluster.log.error(f"Cluster: could not hand over the session of {client_id}: {exc!r}")
        limit = cluster.nc.max_payload
        if len(data) > limit:
            cluster.log.error(f"Cluster: the session of {client_id} ({len(data)} bytes) is larger than "
                              f"NATS's max_payload ({limit}); it resumes from its record, without its messages.")
            data = RESTORE
        cluster.server.drain()
        if msg.reply:
            await msg.respond(data)
