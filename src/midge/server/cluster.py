"""The cluster's I/O half: one NATS connection per node (docs/cluster.md).

Subjects, all under `<cluster_name>.`:

- `n.<node>`: this node's inbox; batches of records from other nodes (router.py).
- `g.<group>.<filter>`: a shared subscription group; the nodes with members subscribe
  as one NATS queue group, so each batch reaches exactly one of them.
- `ctl`: announcements (full interest, deltas), heartbeats, hellos and client connects
  (`cs`, batched: cluster_sessions.py), on one subject so that one node's control
  messages are handled in the order sent.
- `s.<node>`, `sess.<client>`: persistent sessions moving between nodes and their
  records in the JetStream stream `<cluster_name>_sessions` (cluster_sessions.py).
- `ping.<node>`: answered by the live node with that id (duplicate ids are refused).
- `r.<topic subject>`: retained messages, kept in the JetStream stream
  `<cluster_name>_retained` with one message per subject.

Publishing goes through nats-py's pending buffer without a coroutine per message (the
router batches one NATS message per destination and loop turn anyway).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import uuid

from midge.broker.message import Message
from midge.broker.router import ClusterSubscriptionTree, Router
from midge.broker.subjects import decode_level, encode_token
from midge.log import LogType
from midge.server.cluster_sessions import MARKER, ClusterSessions, hold_output, holdable, release_output
from midge.server.tasks import spawn

HEARTBEAT_INTERVAL = 1.0
NODE_TIMEOUT = 5.0          # a node silent this long has left (its interest is dropped)
PENDING_LIMIT = 8 * 1024 * 1024   # bytes buffered for NATS while it is unreachable
LOAD_TIMEOUT = 30.0
FLUSH_INTERVAL = 0.001      # under load, one batch per destination per millisecond at most
SYNC_TIMEOUT = 2.0          # longest a SUBACK waits for the other nodes' acknowledgements
SWEEP_INTERVAL = 60.0       # how often expired records of departed nodes' sessions are deleted


class ClusterError(Exception):
    """The node cannot join its cluster; the message names the URL and the cause."""


def default_node_id(config) -> str:
    """The host name and a suffix stable across restarts (the first listener's port)."""
    host = socket.gethostname().split(".")[0] or "midge"
    port = config.listeners[0].port if config.listeners else 1883
    return f"{host}-{port}"


def hide_password(url: str) -> str:
    """`nats://user:***@host:port`: URLs in log lines never show a password."""
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if at and ":" in credentials:
        credentials = credentials.split(":", 1)[0] + ":***"
    return f"{scheme}://{credentials}{at}{host}"


def install(broker, router: Router) -> None:
    """Give the broker its router and a subscription tree that reports interest."""
    tree = ClusterSubscriptionTree(router)
    for session in broker.sessions.values():
        for sub in session.subscriptions.values():
            tree.add(sub)
    broker.subs = tree
    broker.router = router


class Cluster:
    def __init__(self, server, urls: list[str], node_id: str):
        self.server = server
        self.config = server.config
        self.log = server.log
        self.urls = urls
        self.name = self.config.cluster_name
        self.node_id = node_id
        self.instance = uuid.uuid4().hex[:12]
        # The reply field of this node's record batches: who sent them (a session move's
        # cut is per sending node; cluster_sessions.py).
        self.sender = encode_token(node_id).encode() + b" "
        self._senders: dict[str, str] = {}   # reply field -> node id
        self.nc = None
        self.js = None
        self.router: Router | None = None
        self.sessions = ClusterSessions(self)   # persistent sessions across nodes (cluster_sessions.py)
        self.loop = None
        self.seq = 0
        self.queue_subs: dict[tuple[str, str], object] = {}
        self.tasks: set[asyncio.Task] = set()
        self.dropped = 0
        self.rtt_ms = 0.0
        self.connected = False
        self._flush_scheduled = False
        self._last_flush = 0.0
        self._connect_errors: list[BaseException] = []
        self._held: list = []        # connections waiting for the next delta's acknowledgements
        self._syncs: dict[str, tuple[set, list, object]] = {}   # key -> (nodes to ack, connections, timer)
        self._sync_count = 0

    # -- start and stop --------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.nc = await self._connect()
        self.connected = True
        nc = self.nc
        prefix = self.name
        if await self._id_in_use():
            await nc.close()
            raise ClusterError(f"another live node of cluster {self.name} already uses cluster_node_id "
                               f"{self.node_id}; give each node its own id")
        broker = self.server.broker
        self.router = router = Router(broker, self.node_id, self.name)
        install(broker, router)
        router.wake = self._schedule_flush
        router.hold = self._hold
        router.moves.hold = self.sessions.hold
        router.moves.record_hold = self.sessions.hold_for_record
        await nc.subscribe(f"{prefix}.ack.{encode_token(self.node_id)}", cb=self._on_ack)
        await nc.subscribe(router.inbox_subject(self.node_id), cb=self._on_inbox,
                           pending_bytes_limit=256 * 1024 * 1024)
        await nc.subscribe(f"{prefix}.ctl", cb=self._on_control)
        await nc.subscribe(f"{prefix}.ping.{encode_token(self.node_id)}", cb=self._on_ping)
        await nc.subscribe(f"{prefix}.rt", cb=self._on_retained_now)
        for key in list(router.local_shared):
            await self._queue_subscribe(*key)
        await self._open_retained()
        await self.sessions.start()
        self._announce_full()
        self._control({"t": "hello"})
        await nc.flush()
        self._spawn(self._heartbeats())
        self.log.notice(f"Cluster {self.name}: node {self.node_id} joined through NATS {self._url()}.")

    async def stop(self) -> None:
        """Send what is queued, say goodbye, close."""
        for task in list(self.tasks):
            task.cancel()
        if self.nc is None or self.nc.is_closed:
            return
        try:
            self._flush()
            self._control({"t": "bye"})
            await asyncio.wait_for(self.nc.flush(), 2)
        except Exception:
            pass
        try:
            await asyncio.wait_for(self.nc.close(), 5)
        except Exception:
            pass

    def _url(self) -> str:
        nc = self.nc
        server = getattr(nc, "connected_url", None)
        if server is not None:
            return f"{server.scheme}://{server.hostname}:{server.port}"
        return hide_password(self.urls[0])

    async def _connect(self):
        import nats

        options = dict(
            servers=self.urls, name=f"midge {self.node_id}", connect_timeout=3,
            allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=1,
            pending_size=PENDING_LIMIT, error_cb=self._on_error,
            disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected,
            closed_cb=self._on_closed,
        )
        options.update(self._credentials())
        self._initial = True
        # The first connect fails fast, with the cause (nats-py retries a refused
        # connection forever whatever its options say: probe the TCP port first);
        # later losses reconnect forever.
        await self._probe()
        options["allow_reconnect"] = False
        try:
            nc = await asyncio.wait_for(nats.connect(**options), 15)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise ClusterError(self._describe_failure(exc)) from None
        # From now on: reconnect with back-off on loss.
        nc.options["allow_reconnect"] = True
        nc.options["max_reconnect_attempts"] = -1
        self._initial = False
        return nc

    def _credentials(self) -> dict:
        """The TLS context and `.creds` contents, read once through midge.files: started as
        root, the node has switched to `user` by now, and the root keeper reads what that
        user may not (a root-only key), as for every other key file. nats-py keeps both
        in memory, so a reconnect reads nothing again."""
        from nats.aio.client import RawCredentials

        from midge import files

        config = self.config
        options: dict = {}
        if config.cluster_cafile or config.cluster_certfile or any(u.startswith("tls://") for u in self.urls):
            try:
                with (files.openable(config.cluster_cafile) as cafile,
                      files.openable(config.cluster_certfile) as certfile,
                      files.openable(config.cluster_keyfile) as keyfile):
                    context = ssl.create_default_context(cafile=cafile)
                    if certfile:
                        context.load_cert_chain(certfile, keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise ClusterError(f"cluster TLS files: {exc}") from exc
            options["tls"] = context
        if config.cluster_credentials:
            try:
                text = files.read_bytes(config.cluster_credentials).decode()
            except (OSError, UnicodeDecodeError) as exc:
                raise ClusterError(f"cluster_credentials {config.cluster_credentials}: {exc}") from exc
            options["user_credentials"] = RawCredentials(text)
        return options

    async def _probe(self) -> None:
        """Raise ClusterError naming the cause when no URL accepts a TCP connection."""
        from urllib.parse import urlsplit

        causes = []
        for url in self.urls:
            parts = urlsplit(url)
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port), 5)
            except ConnectionRefusedError:
                causes.append(f"{hide_password(url)}: connection refused (is nats-server running?)")
            except (asyncio.TimeoutError, TimeoutError):
                causes.append(f"{hide_password(url)}: timed out")
            except OSError as exc:
                causes.append(f"{hide_password(url)}: {exc.strerror or exc}")
            else:
                writer.close()
                return
        raise ClusterError("cannot connect to NATS at " + "; ".join(causes))

    def _describe_failure(self, exc: BaseException) -> str:
        causes = self._connect_errors + [exc]
        urls = ", ".join(map(hide_password, self.urls))
        for cause in causes:
            text = str(cause) or type(cause).__name__
            if isinstance(cause, ssl.SSLError) or "SSL" in text or "certificate" in text.lower():
                return f"cannot connect to NATS at {urls}: TLS failed: {text}"
            if "authorization" in text.lower() or "authentication" in text.lower():
                return f"cannot connect to NATS at {urls}: authentication refused: {text}"
        for cause in causes:
            if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
                return f"cannot connect to NATS at {urls}: connection refused (is nats-server running?)"
        for cause in causes:
            if isinstance(cause, (asyncio.TimeoutError, TimeoutError)):
                return f"cannot connect to NATS at {urls}: timed out"
        text = "; ".join(str(c) or type(c).__name__ for c in causes)
        return f"cannot connect to NATS at {urls}: {text}"

    async def _id_in_use(self) -> bool:
        import nats.errors

        try:
            await self.nc.request(f"{self.name}.ping.{encode_token(self.node_id)}", b"", timeout=0.5)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            return False
        return True

    # -- NATS events -----------------------------------------------------------------

    async def _on_error(self, exc) -> None:
        if self._initial_connect():
            self._connect_errors.append(exc)
            return
        self.log.warning(f"Cluster: NATS error: {exc}")

    def _initial_connect(self) -> bool:
        return getattr(self, "_initial", True)

    async def _on_disconnected(self) -> None:
        if self._initial_connect() or self.nc is None or self.nc.is_closed:
            return
        if self.connected:
            self.connected = False
            self.log.warning(f"Cluster: lost NATS at {self._url()}; local clients carry on, "
                             "reconnecting (cross-node messages are held up to 8 MiB, then dropped).")

    async def _on_reconnected(self) -> None:
        self.connected = True
        # The others were silent because *we* were away: their silence counts from now,
        # or a node would forget (and stop routing to) every node at once after an outage
        # longer than NODE_TIMEOUT, until their next announcement.
        now = self.loop.time()
        for node in self.router.nodes.values():
            node.last_seen = now
        self.log.notice(f"Cluster: reconnected to NATS at {self._url()}; interest re-announced.")
        self._announce_full()
        self._control({"t": "hello"})

    async def _on_closed(self) -> None:
        self.connected = False

    async def _on_ping(self, msg) -> None:
        if msg.reply:
            await self.nc.publish(msg.reply, self.instance.encode())

    def origin_of(self, msg) -> str | None:
        """The node that sent a record batch or a marker (its NATS reply field)."""
        reply = msg.reply
        if not reply:
            return None
        node_id = self._senders.get(reply)
        if node_id is None:
            if len(self._senders) > 1024:
                self._senders.clear()
            node_id = self._senders[reply] = decode_level(reply)
        return node_id

    async def _on_inbox(self, msg) -> None:
        server = self.server
        data = msg.data
        try:
            if data[:1] == MARKER:
                self.sessions.on_marker(self.origin_of(msg), data)
            else:
                self.router.receive(data, self.loop.time(), self.origin_of(msg))
        except Exception as exc:
            self.log.error(f"Cluster: bad batch from NATS subject {msg.subject}: {exc!r}")
        server.drain()

    async def _on_retained_now(self, msg) -> None:
        """A retained message as published on another node: stored now and acknowledged,
        so that its publisher's PUBACK means every node serves it (JetStream, which
        delivers the same record a little later, keeps it for nodes to come)."""
        origin, _, rest = msg.data.partition(b"\n")
        origin_node, _, key = origin.decode().partition(" ")
        if origin_node == self.node_id:
            return
        try:
            self.router.store_retained(rest, self.loop.time())
        except Exception as exc:
            self.log.error(f"Cluster: bad retained record: {exc!r}")
        if key:
            self._send(f"{self.name}.ack.{encode_token(origin_node)}",
                       json.dumps({"node": f"{self.node_id}|r", "seq": key}).encode())

    async def _on_shared(self, group: str, topic_filter: str, msg) -> None:
        try:
            self.router.receive_shared(group, topic_filter, msg.data, self.loop.time())
        except Exception as exc:
            self.log.error(f"Cluster: bad shared batch on {msg.subject}: {exc!r}")
        self.server.drain()

    async def _on_control(self, msg) -> None:
        try:
            body = json.loads(msg.data)
        except ValueError:
            return
        node_id = body.get("node")
        if node_id == self.node_id:
            if body.get("inst") != self.instance and body.get("t") in ("full", "hb"):
                self.log.error(f"Cluster: another process also uses cluster_node_id {self.node_id} "
                               f"(instance {body.get('inst')}); give each node its own id.")
            return
        router = self.router
        now = self.loop.time()
        kind = body.get("t")
        if kind == "full":
            known = node_id in router.nodes
            router.apply_full(node_id, body["seq"], body["filters"], [tuple(s) for s in body["shared"]], now)
            router.nodes[node_id].instance = body.get("inst", "")
            if not known:
                self.log.notice(f"Cluster: node {node_id} is part of cluster {self.name}.")
            self.sessions.retry_moves()
        elif kind == "delta":
            changes = [(sign, f, g) for sign, f, g in body["changes"]]
            if not router.apply_delta(node_id, body["seq"], changes, now):
                self._control({"t": "hello"})   # missed one: everyone resends its full interest
            else:
                self.sessions.retry_moves()
            if body.get("ack"):
                self._send(f"{self.name}.ack.{encode_token(node_id)}",
                           json.dumps({"node": f"{self.node_id}|d", "seq": body["ack"]}).encode())
        elif kind == "hello":
            self._announce_full()
        elif kind == "hb":
            node = router.nodes.get(node_id)
            if node is None or node.seq != body["seq"]:
                self._control({"t": "hello"})
            else:
                node.last_seen = now
        elif kind == "bye":
            if node_id in router.nodes:
                router.forget_node(node_id)
                self._node_gone(node_id)
                self.log.notice(f"Cluster: node {node_id} left cluster {self.name}.")
        elif kind == "cs":
            self.sessions.on_connects(node_id, body, now)
        elif kind == "mv":
            self.sessions.on_move(body)

    # -- sending -----------------------------------------------------------------------

    def _send(self, subject: str, data: bytes, reply: bytes = b"") -> None:
        """Queue one NATS PUB without a coroutine; nats-py's flusher writes it. `reply`:
        the NATS reply field, which on record batches names the sending node."""
        nc = self.nc
        if nc is None or nc.is_closed:
            return
        command = (b"PUB " + subject.encode() + b" " + reply + str(len(data)).encode() + b"\r\n"
                   + data + b"\r\n")
        if not nc.is_connected and nc._pending_data_size + len(command) > PENDING_LIMIT:
            self.dropped += 1
            self.server.broker.stats.publish_dropped += 1
            return
        nc._pending.append(command)
        nc._pending_data_size += len(command)
        queue = nc._flush_queue
        if nc.is_connected and queue is not None and queue.empty():
            queue.put_nowait(self.loop.create_future())

    def _control(self, body: dict) -> None:
        body["node"] = self.node_id
        body["inst"] = self.instance
        self._send(f"{self.name}.ctl", json.dumps(body, separators=(",", ":")).encode())

    def _announce_full(self) -> None:
        snapshot = self.router.snapshot()
        self._control({"t": "full", "seq": self.seq, "filters": snapshot["filters"],
                       "shared": [list(k) for k in snapshot["shared"]]})

    def _schedule_flush(self) -> None:
        """Flush at the next loop turn, or, under load, FLUSH_INTERVAL after the last
        flush: at most one NATS message per destination per interval, so the records of
        a busy node travel in batches whatever the loop's rhythm (an idle node sends at
        once)."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop = self.loop
            wait = self._last_flush + FLUSH_INTERVAL - loop.time()
            if wait > 0:
                loop.call_later(wait, self._flush)
            else:
                loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Everything the router queued since the last flush goes out now."""
        self._flush_scheduled = False
        self._last_flush = self.loop.time()
        router = self.router
        outbox, retained = router.take_outbox()
        sender = self.sender
        for subject, pieces in outbox.items():
            self._send(subject, b"".join(pieces), sender)
        held, self._held = self._held, []
        key = ""
        changes = router.take_changes()
        if held:
            self._sync_count += 1
            key = f"s{self._sync_count}"
            kinds = ("r" if retained else "") + ("d" if changes else "")
            waiting = {f"{node}|{kind}" for node in router.nodes for kind in kinds}
            if waiting:
                timer = self.loop.call_later(SYNC_TIMEOUT, self._release, key)
                self._syncs[key] = (waiting, held, timer)
            else:
                self._release_connections(held)
                key = ""
        for subject, record in retained:
            self._send(subject, record)   # JetStream stores it (core publish, no ack round trip)
            self._send(f"{self.name}.rt", f"{self.node_id} {key}\n".encode() + record)
        if changes:
            self.seq += 1
            self._control({"t": "delta", "seq": self.seq, "changes": [list(c) for c in changes],
                           "ack": key})
            for sign, topic_filter, group in changes:
                if group is not None:
                    if sign == "+":
                        self._spawn(self._queue_subscribe(group, topic_filter))
                    else:
                        self._spawn(self._queue_unsubscribe(group, topic_filter))
        self.sessions.flush()   # connects (one message per turn), session records and moves

    def _hold(self, client, changed: bool = True) -> None:
        """Hold this client's output (a SUBACK, a PUBACK) until every other node has
        acknowledged what it changed (a new filter, a retained message)."""
        conn = holdable(client, self)
        if conn is None:
            return
        if changed or self._held:
            hold_output(conn)   # (unchanged: rides with the announcement not sent yet)
            self._held.append(conn)
        elif self._syncs:
            hold_output(conn)   # rides with the latest announcement in flight
            self._syncs[next(reversed(self._syncs))][1].append(conn)

    async def _on_ack(self, msg) -> None:
        try:
            body = json.loads(msg.data)
        except ValueError:
            return
        sync = self._syncs.get(body.get("seq"))
        if sync is not None:
            sync[0].discard(body.get("node"))
            if not sync[0]:
                self._release(body["seq"])

    def _release(self, seq: str) -> None:
        sync = self._syncs.pop(seq, None)
        if sync is not None:
            sync[2].cancel()
            self._release_connections(sync[1])

    def _release_connections(self, connections) -> None:
        for conn in connections:
            release_output(conn)

    def _node_gone(self, node_id: str) -> None:
        self.sessions.node_gone(node_id)
        for seq, (waiting, _, _) in list(self._syncs.items()):
            waiting.discard(f"{node_id}|r")
            waiting.discard(f"{node_id}|d")
            waiting.discard(f"{node_id}|c")
            if not waiting:
                self._release(seq)

    async def _queue_subscribe(self, group: str, topic_filter: str) -> None:
        key = (group, topic_filter)
        if key in self.queue_subs or key not in self.router.local_shared:
            return

        async def deliver(msg, group=group, topic_filter=topic_filter):
            await self._on_shared(group, topic_filter, msg)

        self.queue_subs[key] = None
        sub = await self.nc.subscribe(self.router.shared_subject(group, topic_filter), queue="m", cb=deliver,
                                      pending_bytes_limit=256 * 1024 * 1024)
        if key not in self.router.local_shared:
            await sub.unsubscribe()
            self.queue_subs.pop(key, None)
        else:
            self.queue_subs[key] = sub

    async def _queue_unsubscribe(self, group: str, topic_filter: str) -> None:
        key = (group, topic_filter)
        if key in self.router.local_shared:
            return
        sub = self.queue_subs.pop(key, None)
        if sub is not None:
            await sub.unsubscribe()

    def _spawn(self, coroutine) -> None:
        spawn(self.loop, self.tasks, coroutine, self.log, "Cluster")

    # -- heartbeats, liveness, $SYS ----------------------------------------------------

    async def _heartbeats(self) -> None:
        sys_due = 0.0
        sweep_due = self.loop.time() + SWEEP_INTERVAL
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            now = self.loop.time()
            if self.nc.is_connected:
                self._control({"t": "hb", "seq": self.seq})
                try:
                    self.rtt_ms = (await asyncio.wait_for(self.nc.rtt(), 2)) * 1000
                except Exception:
                    pass
            for node in list(self.router.nodes.values()):
                if self.connected and now - node.last_seen > NODE_TIMEOUT:
                    self.router.forget_node(node.node_id)
                    self._node_gone(node.node_id)
                    self.log.warning(f"Cluster: node {node.node_id} silent for {NODE_TIMEOUT:.0f} s, "
                                     "considered gone.")
            if now >= sweep_due:
                sweep_due = now + SWEEP_INTERVAL
                self._sweep()
            interval = self.config.sys_interval
            if interval and now >= sys_due:
                sys_due = now + interval
                self._publish_sys(now)

    def _sweep(self) -> None:
        """The live node with the smallest id deletes the expired records of sessions
        whose node is gone (SessionMoves.sweep)."""
        router = self.router
        if not self.connected or any(node_id < self.node_id for node_id in router.nodes):
            return
        swept = router.moves.sweep(set(router.nodes) | {self.node_id}, self.server.broker.wall_clock())
        if swept and self.log.enabled(LogType.INFORMATION):
            self.log.info(f"Cluster: deleted {swept} expired session record(s) of nodes that are gone.")

    def _publish_sys(self, now: float) -> None:
        router = self.router
        broker = self.server.broker
        figures = {
            "nodes": len(router.nodes) + 1,
            "node_id": self.node_id,
            "messages/routed/sent": router.routed_out,
            "messages/routed/received": router.routed_in,
            "messages/routed/dropped": self.dropped,
            "nats/connected": int(self.connected),
            "nats/rtt_ms": f"{self.rtt_ms:.3f}",
            "sessions/moved/in": router.moves.moved_in,
            "sessions/moved/out": router.moves.moved_out,
            "sessions/restored": router.moves.restored,
        }
        for name, value in figures.items():
            broker.publish(Message(f"$SYS/broker/cluster/{name}", str(value).encode(), 0, True, {}), now)
        self.server.drain()

    # -- retained messages in JetStream ------------------------------------------------

    def _server_info(self) -> dict:
        """The INFO the NATS server sent (cluster, connect_urls, jetstream). nats-py keeps
        it in a private attribute and has no public accessor; {} if that ever changes
        (then: one replica, and JetStream assumed present)."""
        return getattr(self.nc, "_server_info", None) or {}

    async def _add_stream(self, js, config, purpose: str):
        """Create the stream with 3 replicas on a NATS cluster (so what it keeps outlives
        a nats-server and its disk), fewer when the cluster has fewer servers (JetStream
        refuses more replicas than servers), 1 on a single server."""
        import nats.js.errors

        info = self._server_info()
        servers = len(info.get("connect_urls") or ()) if info.get("cluster") else 1
        replicas = max(1, min(3, servers))   # (a server with several addresses counts more)
        while True:
            config.num_replicas = replicas
            try:
                created = await js.add_stream(config)
            except nats.js.errors.ServiceUnavailableError:
                raise   # no JetStream leader yet: not a matter of replicas
            except nats.js.errors.APIError:
                if replicas == 1:
                    raise
                replicas -= 1
                continue
            self.log.notice(f"Cluster: created JetStream stream {config.name} for {purpose} "
                            f"({replicas} replica{'s' if replicas > 1 else ''}).")
            return created

    async def follow_stream(self, stream: str, subject: str, on_record, purpose: str) -> int:
        """Open (or create) a stream that keeps the last message of each subject, hand
        every message to `on_record(subject, data)` until all stored ones are read, and
        go on following it; return how many were read at start.

        Used for the retained messages and the persistent-session records: both must be
        loaded before any client connects. A NATS cluster that is electing a JetStream
        leader (at start, or after losing the server that led; each stream has its own)
        answers 503 or not at all for a few seconds: this waits for it, up to
        LOAD_TIMEOUT, then names the stream.
        """
        from nats.js.api import DeliverPolicy, StorageType, StreamConfig
        import nats.errors
        import nats.js.errors

        js = self.js
        loaded = asyncio.Event()
        count = 0

        async def on_message(msg):
            nonlocal count
            count += 1
            try:
                on_record(msg.subject, msg.data)
            except Exception as exc:
                self.log.error(f"Cluster: bad record for {purpose} on {msg.subject}: {exc!r}")
            if not loaded.is_set() and msg.metadata.num_pending == 0:
                loaded.set()

        deadline = self.loop.time() + LOAD_TIMEOUT
        waiting = False
        while True:
            try:
                try:
                    info = await js.stream_info(stream)
                except nats.js.errors.NotFoundError:
                    info = await self._add_stream(js, StreamConfig(
                        name=stream, subjects=[subject], max_msgs_per_subject=1, storage=StorageType.FILE),
                        purpose)
                if info.state.messages == 0:
                    loaded.set()
                await js.subscribe(subject, cb=on_message, ordered_consumer=True,
                                   deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
                                   pending_bytes_limit=256 * 1024 * 1024)
                break
            except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError) as exc:
                if self.loop.time() > deadline:
                    raise ClusterError(f"JetStream did not serve stream {stream} within {LOAD_TIMEOUT:.0f} s "
                                       f"({exc or type(exc).__name__}): does the NATS cluster have a "
                                       "JetStream leader?") from None
                if not waiting:
                    waiting = True
                    self.log.warning(f"Cluster: JetStream is not answering for stream {stream} yet "
                                     "(electing a leader?); waiting.")
                await asyncio.sleep(0.5)   # back-off between retries
            except Exception as exc:
                raise ClusterError(f"JetStream stream {stream} for {purpose}: {exc}") from exc
        try:
            await asyncio.wait_for(loaded.wait(), LOAD_TIMEOUT)
        except asyncio.TimeoutError:
            raise ClusterError(f"could not read the {purpose} of stream {stream} in "
                               f"{LOAD_TIMEOUT:.0f} s") from None
        return count

    async def _open_retained(self) -> None:
        """Make sure the stream exists, then load every retained message before any
        client can subscribe, and keep following the stream."""
        self.js = self.nc.jetstream()
        stream = f"{self.name}_retained"
        if not self._server_info().get("jetstream", True):
            raise ClusterError(f"JetStream is needed for retained messages (stream {stream}) and "
                               f"{self._url()} does not run it: start nats-server with -js")
        router = self.router
        count = await self.follow_stream(
            stream, f"{router.retained_prefix}.>",
            lambda subject, data: router.store_retained(data, self.loop.time()), "retained messages")
        if self.log.enabled(LogType.INFORMATION):
            self.log.info(f"Cluster: {count} retained message(s) loaded from JetStream.")


def node_id_for(config) -> str:
    """The configured id, or the default; a worker of `workers N` adds `-wK`."""
    base = config.cluster_node_id or default_node_id(config)
    worker = os.environ.get("MIDGE_WORKER")
    return f"{base}-w{worker}" if worker else base
