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
"""

from __future__ import annotations

import asyncio
import itertools
import json

from midge.broker.session_moves import RESTORE
from midge.broker.subjects import decode_level, encode_token
from midge.log import LogType

FETCH_TIMEOUT = 2.0     # longest a CONNECT waits for the node holding its session
SYNC_TIMEOUT = 2.0      # longest a persistent CONNACK waits for the other nodes' acknowledgements
# Clean connects are announced at most this late, so that a connection storm sends a
# few large announcements instead of one per event-loop turn (each costs every node a
# NATS callback and a JSON parse). No CONNACK waits for it; a persistent connect (whose
# CONNACK waits for the acknowledgements) sends the batch at once.
CONNECT_BATCH = 0.01


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

    @property
    def moves(self):
        return self.cluster.router.moves

    async def start(self) -> None:
        """Join: answer session requests, read every record before serving anyone."""
        cluster = self.cluster
        await cluster.nc.subscribe(self.request_prefix + encode_token(cluster.node_id), cb=self._on_request)
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
            for client_id, row, generation in puts:
                cluster._send(self.record_prefix + encode_token(client_id),
                              json.dumps({"node": cluster.node_id, "gen": generation, "row": row},
                                         separators=(",", ":")).encode())
            for client_id, generation in deletes:   # (a deletion is a record without a node)
                cluster._send(self.record_prefix + encode_token(client_id),
                              json.dumps({"gen": generation}).encode())
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

    def hold(self, client) -> None:
        """Hold `client`'s output (its CONNACK, written this turn) until the other nodes
        acknowledged its connect (Cluster._on_ack releases it)."""
        conn = client.io
        if conn is None or not hasattr(conn, "cluster_wait") or not self.cluster.connected or conn.cluster_wait:
            return
        conn.cluster_wait = True
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
        """Ask `holder` for the session of `client` (connecting here); resume its CONNECT."""
        import nats.errors

        cluster = self.cluster
        data = None
        if holder != cluster.node_id:
            body = json.dumps({"client": client.client_id, "node": cluster.node_id, "wall": wall}).encode()
            try:
                reply = await cluster.nc.request(self.request_prefix + encode_token(holder), body,
                                                 timeout=FETCH_TIMEOUT)
                data = reply.data
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError, asyncio.TimeoutError):
                if cluster.log.enabled(LogType.NOTICE):
                    cluster.log.notice(f"Cluster: node {holder} did not hand over the session of "
                                       f"{client.client_id}; resuming it from its record.")
            except Exception as exc:
                cluster.log.warning(f"Cluster: asking node {holder} for the session of {client.client_id}: {exc!r}")
        try:
            self.moves.arrived(client, data, cluster.loop.time(), resume)
        finally:
            cluster.server.drain()

    async def _on_request(self, msg) -> None:
        """Another node's client took a session this node holds: hand it over."""
        cluster = self.cluster
        data = b""
        try:
            body = json.loads(msg.data)
            data = self.moves.give(body["client"], body["node"], body["wall"], cluster.loop.time())
        except Exception as exc:
            cluster.log.error(f"Cluster: could not hand over a session: {exc!r}")
        limit = cluster.nc.max_payload
        if len(data) > limit:
            cluster.log.error(f"Cluster: the session of {body.get('client')} ({len(data)} bytes) is larger than "
                              f"NATS's max_payload ({limit}); it resumes from its record, without its messages.")
            data = RESTORE
        cluster.server.drain()
        if msg.reply:
            await msg.respond(data)
