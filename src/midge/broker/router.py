"""The cluster's sans-I/O half: which nodes want a message, and the records that cross.

Routing is EMQX's shape on NATS (docs/cluster.md): every node keeps a table of the other
nodes' subscription filters (`InterestTrie`), announced as deltas over NATS. A message
published here is delivered locally by `Broker.publish` as on a single node; the broker
also hands it to `Router.route`, which looks the topic up in the table (cached per
topic) and queues one record per interested node, batched per node and per loop turn
into one NATS message on that node's inbox subject. A message nobody elsewhere wants
costs a dict lookup. NATS never matches topics here, so a node that has several
filters matching a topic still gets one copy (NATS would deliver one per subscription).

Shared subscriptions are cluster-wide: each `$share/group/filter` that has a member on
any node is in every node's table, and a matching message goes once to that group's
NATS subject, where the nodes with members listen as one NATS queue group, so exactly
one node (and there exactly one member) gets it. The local broker therefore never picks
a shared member itself while clustered (`ClusterSubscriptionTree` hides the groups from
`Broker.publish`); messages for shared groups always come back through NATS, also to
the node that published them.

The edge (`midge.server.cluster`) does the I/O: it drains `outbox`, applies the local
interest changes in `changes` (announcements, queue subscriptions) and feeds received
records to `receive` / `receive_shared`.
"""

from __future__ import annotations

from midge.broker.message import Message
from midge.broker.session_moves import SessionMoves
from midge.broker.subjects import encode_token, topic_to_subject
from midge.broker.subs import SubscriptionTree
from midge.empty import EMPTY_MAP
from midge.protocol.codec import encode_publish_qos0_v3
from midge.protocol.constants import PacketType
from midge.protocol.properties import decode_properties, encode_varint, read_varint

# Record flags (first byte)
_QOS_MASK = 0x03
_RETAIN = 0x04
_EXPIRY = 0x08
_PROPERTIES = 0x10
_ORIGIN = 0x20
_FLAG_BYTES = tuple(bytes((flags,)) for flags in range(64))

_CACHE_LIMIT = 50_000
NO_ROUTE = ((), ())
# A received record's PUBLISH bytes are handed to local v3 subscribers as they are
# (`Broker.publish`'s `wire`) up to this size; a larger one is encoded when needed.
_WIRE_LIMIT = 16 * 1024

_new_object = object.__new__


# -- Records: one message as it crosses the cluster ------------------------------------
#
# flags (1 byte: QoS, retain, which optional fields follow)
# [expiry: absolute wall-clock deadline in ms, 8 bytes]
# [origin client id: 2-byte length + UTF-8]
# [v5 properties: variable-length length + the properties as the publisher sent them]
# the message as an MQTT 3.1.1 QoS 0 PUBLISH (0x30, remaining length, topic, payload)
#
# The last part is the very packet a v3 subscriber gets: the publishing node often has
# it already (the bytes a v3 publisher sent), the receiving node passes it on as it is,
# and its remaining length frames the record. A batch is records end to end.


def record_head(message: Message, now: float, wall_now: float) -> bytes:
    """Everything before the PUBLISH packet. The expiry is an absolute wall-clock
    deadline: the message expires at the same moment on every node, counted from its
    original publish (docs/cluster.md: clocks)."""
    flags = message.qos | (_RETAIN if message.retain else 0)
    parts = [b""]
    if message.expiry_at is not None:
        flags |= _EXPIRY
        deadline = int((wall_now + (message.expiry_at - now)) * 1000)
        parts.append(max(deadline, 0).to_bytes(8, "big"))
    if message.origin_id is not None:
        flags |= _ORIGIN
        origin = message.origin_id.encode()
        parts.append(len(origin).to_bytes(2, "big") + origin)
    if message.properties:
        flags |= _PROPERTIES
        raw = message.forwarded_properties()
        parts.append(encode_varint(len(raw)) + raw)
    parts[0] = _FLAG_BYTES[flags]
    return b"".join(parts)


def encode_record(message: Message, now: float, wall_now: float, wire: bytes | None = None) -> bytes:
    """One message as a record; `wire`: its QoS 0 v3 PUBLISH, if already encoded."""
    return record_head(message, now, wall_now) + (
        wire or encode_publish_qos0_v3(message.topic, message.payload, False))


def decode_records(data: bytes, now: float, wall_now: float) -> list[tuple[Message, bytes | None]]:
    """Every record of a batch, as `iter_records` gives them."""
    return list(iter_records(data, now, wall_now))


def iter_records(data: bytes, now: float, wall_now: float):
    """(message with its expiry on this node's clock, its QoS 0 v3 PUBLISH bytes or None
    when large) for each record of a batch, one at a time: a batch holds thousands, and
    a message delivered before the next is decoded is freed at once (a list of them all
    kept the garbage collector busy: 44 % of a receiving node's samples). Topics and
    origins that repeat the previous record's are not decoded again."""
    pos = 0
    end = len(data)
    topic_field, topic = b"", ""
    origin_field, origin = b"", None
    while pos < end:
        flags = data[pos]
        pos += 1
        expiry_at = None
        properties = EMPTY_MAP
        raw = b""
        if flags & 0x38:
            if flags & _EXPIRY:
                deadline = int.from_bytes(data[pos:pos + 8], "big") / 1000
                pos += 8
                expiry_at = now + (deadline - wall_now)
            if flags & _ORIGIN:
                if not data.startswith(origin_field, pos) or not origin_field:
                    length = 2 + ((data[pos] << 8) | data[pos + 1])
                    origin_field = data[pos:pos + length]
                    origin = origin_field[2:].decode()
                pos += len(origin_field)
                this_origin = origin
            else:
                this_origin = None
            if flags & _PROPERTIES:
                length, body = read_varint(data, pos, end)
                properties, pos = decode_properties(data, pos, end, PacketType.PUBLISH, True)
                raw = data[body:pos]
        else:
            this_origin = None
        # The PUBLISH: 0x30, remaining length, topic field, payload.
        start = pos
        size = data[pos + 1]
        if size < 0x80:
            pos += 2
        else:
            size, pos = read_varint(data, pos + 1, end)
        stop = pos + size
        if stop > end or data[start] != 0x30:
            raise ValueError(f"bad record at byte {start} of a {end}-byte batch")
        if not topic_field or not data.startswith(topic_field, pos):
            topic_field = data[pos:pos + 2 + ((data[pos] << 8) | data[pos + 1])]
            topic = topic_field[2:].decode()
        # message.plain_message's construction, inlined with every field: a call per
        # record costs ~135 ns of ~760 (measured), about 7 % of a receiving node's
        # work per message. tests/cluster/test_router.py checks every slot is set.
        message = _new_object(Message)
        message.topic = topic
        message.payload = data[pos + len(topic_field):stop]
        message.qos = flags & _QOS_MASK
        message.retain = bool(flags & _RETAIN)
        message.properties = properties
        message.expiry_at = expiry_at
        message.origin_id = this_origin
        message.origin_client = None
        message.property_bytes = raw
        yield message, (data[start:stop] if stop - start <= _WIRE_LIMIT else None)
        pos = stop


# -- The interest table ----------------------------------------------------------------

class _TrieNode:
    __slots__ = ("children", "keys")

    def __init__(self):
        self.children: dict[str, _TrieNode] = {}
        self.keys: dict = {}   # key -> reference count


class InterestTrie:
    """Topic filters, each with the keys (node ids, shared group keys) that hold it."""

    def __init__(self):
        self._root = _TrieNode()

    def add(self, topic_filter: str, key) -> None:
        node = self._root
        for level in topic_filter.split("/"):
            node = node.children.setdefault(level, _TrieNode()) if level not in node.children \
                else node.children[level]
        node.keys[key] = node.keys.get(key, 0) + 1

    def remove(self, topic_filter: str, key) -> None:
        path = [self._root]
        levels = topic_filter.split("/")
        for level in levels:
            node = path[-1].children.get(level)
            if node is None:
                return
            path.append(node)
        node = path[-1]
        count = node.keys.get(key, 0) - 1
        if count > 0:
            node.keys[key] = count
        else:
            node.keys.pop(key, None)
        for depth in range(len(levels), 0, -1):
            child = path[depth]
            if child.children or child.keys:
                break
            del path[depth - 1].children[levels[depth - 1]]

    def match(self, topic: str) -> set:
        """Keys of every filter matching `topic` (MQTT rules: `$`, `#` matches the parent)."""
        found: set = set()
        self._walk(self._root, topic.split("/"), 0, found, topic[:1] == "$")
        return found

    def _walk(self, node, levels, index, found, dollar):
        if index == len(levels):
            found.update(node.keys)
            multi = node.children.get("#")
            if multi is not None:
                found.update(multi.keys)
            return
        children = node.children
        if not (dollar and index == 0):
            multi = children.get("#")
            if multi is not None:
                found.update(multi.keys)
            single = children.get("+")
            if single is not None:
                self._walk(single, levels, index + 1, found, dollar)
        exact = children.get(levels[index])
        if exact is not None:
            self._walk(exact, levels, index + 1, found, dollar)


class RemoteNode:
    """What this node knows of another: its filters, shared groups, last delta seen."""

    __slots__ = ("node_id", "filters", "shared", "seq", "last_seen", "instance")

    def __init__(self, node_id: str, instance: str = ""):
        self.node_id = node_id
        self.filters: dict[str, int] = {}
        self.shared: dict[tuple[str, str], int] = {}
        self.seq = -1
        self.last_seen = 0.0
        self.instance = instance


# -- The local subscription tree, clustered --------------------------------------------

class ClusterSubscriptionTree(SubscriptionTree):
    """The broker's tree, telling the router when a filter gains its first local
    subscriber or loses its last, and hiding shared groups from `Broker.publish` (the
    cluster picks shared members through NATS queue groups)."""

    def __init__(self, router: Router):
        super().__init__()
        self.router = router

    def add(self, sub) -> bool:
        self.router.session_changed(sub.session)
        is_new = super().add(sub)
        if is_new:
            self.router.local_added(sub.filter, sub.group, sub.session.client)
        return is_new

    def remove(self, session, topic_filter: str, group: str | None = None) -> bool:
        removed = super().remove(session, topic_filter, group)
        self.router.session_changed(session)
        if removed:
            self.router.local_removed(topic_filter, group)
        return removed

    def _walk(self, node, levels, index, subs, groups, dollar):
        # Shared groups are left out where the tree is walked, so the cached results of
        # `match` / `match_sessions` never hold any (a cache hit costs nothing more).
        super()._walk(node, levels, index, subs, [], dollar)

    def has_subscribers(self, topic: str) -> bool:
        subs, _ = super().match(topic)
        return bool(subs) or self.router.route_for(topic) is not NO_ROUTE

    def shared_group(self, topic_filter: str, group: str):
        """The local SharedGroup of `$share/group/filter`, or None."""
        node = self._root
        for level in topic_filter.split("/"):
            node = node.children.get(level)
            if node is None:
                return None
        return node.shared.get(group)


# -- The router ------------------------------------------------------------------------

class Router:
    """The broker's seam to the cluster: `route` (out), `receive*` (in), interest."""

    def __init__(self, broker, node_id: str, cluster_name: str):
        self.broker = broker
        self.node_id = node_id
        self.cluster_name = cluster_name
        self.nodes: dict[str, RemoteNode] = {}
        self._remote = InterestTrie()       # remote plain filters, keyed by node id
        self._shared = InterestTrie()       # every node's shared groups, keyed by (group, filter)
        self._shared_nodes: dict[tuple[str, str], set] = {}  # (group, filter) -> node ids with members
        self.routes: dict[str, tuple] = {}  # topic -> (inbox subjects, shared group subjects)
        self.local_filters: dict[str, int] = {}
        self.local_shared: dict[tuple[str, str], int] = {}
        # For the edge: records to send, per destination subject, and interest changes.
        self.outbox: dict[str, list[bytes]] = {}   # subject -> pieces of one batch, end to end
        self._heads: tuple[dict, ...] = tuple({} for _ in range(8))   # [qos | retain] -> origin -> record head
        self.retained_out: list[tuple[str, bytes]] = []
        self.changes: list[tuple[str, str, str | None]] = []   # ("+"|"-", filter, group)
        self.wake = None          # set by the edge: called when there is something to send
        self.hold = None          # set by the edge: hold a client's output until the next delta is known
        self._woken = False
        self.clients: dict[str, float] = {}   # client id -> wall-clock connect time (takeover)
        self.connects: list[tuple[str, float, bool, bool]] = []   # to announce: (id, wall, clean start, persistent)
        self.routed_out = 0
        self.routed_in = 0
        self.subject_prefix = cluster_name
        self.inbox_prefix = f"{cluster_name}.n."
        self.shared_prefix = f"{cluster_name}.g."
        self.retained_prefix = f"{cluster_name}.r"
        # The node whose message the broker is delivering (a session move's cut depends
        # on it): this node's own, or a batch's sender while `receive` runs.
        self.origin: str | None = node_id
        self.moves = SessionMoves(self)   # persistent sessions across nodes (session_moves.py)

    # -- subjects --------------------------------------------------------------------

    def inbox_subject(self, node_id: str) -> str:
        return self.inbox_prefix + encode_token(node_id)

    def shared_subject(self, group: str, topic_filter: str) -> str:
        return self.shared_prefix + encode_token(group) + "." + encode_token(topic_filter)

    def retained_subject(self, topic: str) -> str:
        return topic_to_subject(topic, self.retained_prefix)

    # -- out -------------------------------------------------------------------------

    def route(self, message: Message, now: float, wire: bytes | None = None) -> bool:
        """A message published on this node: queue it for every other node that wants it
        and for every shared group; True if any. Retained messages also go to the store.

        `wire`: the message as a QoS 0 v3 PUBLISH if the broker has it (the bytes a v3
        publisher sent), the end of its record. A topic nobody elsewhere wants costs
        one dict lookup (the route cache; `$SYS` topics are never routed).
        """
        topic = message.topic
        route = self.routes.get(topic)
        if route is None:
            route = self.route_for(topic)
        if message.retain and topic[:4] != "$SYS":
            self._store_retained_out(message, now, wire)
        if route is NO_ROUTE:
            return False
        if wire is None:
            wire = encode_publish_qos0_v3(topic, message.payload, False)
        origin = message.origin_id
        if message.expiry_at is None and not message.properties and origin is not None:
            # The commonest record: flags and origin client id, cached per publisher.
            heads = self._heads[message.qos | (_RETAIN if message.retain else 0)]
            head = heads.get(origin)
            if head is None:
                if len(heads) >= _CACHE_LIMIT:
                    heads.clear()
                head = heads[origin] = record_head(message, now, 0.0)
        else:
            head = record_head(message, now, self.broker.wall_clock())
        outbox = self.outbox
        nodes, shared = route
        for subject in nodes:
            batch = outbox.get(subject)
            if batch is None:
                outbox[subject] = [head, wire]
            else:
                batch += (head, wire)
        for subject in shared:
            batch = outbox.get(subject)
            if batch is None:
                outbox[subject] = [head, wire]
            else:
                batch += (head, wire)
        self.routed_out += 1
        if not self._woken:
            self._wake()
        return True

    def _store_retained_out(self, message: Message, now: float, wire: bytes | None) -> None:
        self.retained_out.append((self.retained_subject(message.topic),
                                  encode_record(message, now, self.broker.wall_clock(), wire)))
        client = message.origin_client
        if client is not None and self.hold is not None and self.nodes:
            self.hold(client)   # its PUBACK waits until every node stored the message
        self._wake()

    def route_for(self, topic: str) -> tuple:
        """(inbox subjects of interested nodes, subjects of matching shared groups),
        cached per topic until the interest changes; `NO_ROUTE` when none."""
        route = self.routes.get(topic)
        if route is not None:
            return route
        nodes = self._remote.match(topic) if self.nodes else ()
        shared = self._shared.match(topic) if self._shared_nodes else ()
        if (not nodes and not shared) or topic[:4] == "$SYS":
            route = NO_ROUTE   # each node's $SYS tree is its own (docs/cluster.md)
        else:
            route = (tuple(self.inbox_subject(n) for n in sorted(nodes)),
                     tuple(self.shared_subject(g, f) for g, f in sorted(shared)))
        if len(self.routes) >= _CACHE_LIMIT:
            self.routes.clear()
        self.routes[topic] = route
        return route

    def _wake(self) -> None:
        if not self._woken and self.wake is not None:
            self._woken = True
            self.wake()

    def take_outbox(self) -> tuple[dict, list]:
        """For the edge: the batches to send (subject -> pieces whose concatenation is
        the batch) and the retained records to store ((subject, record) pairs)."""
        self._woken = False
        outbox, self.outbox = self.outbox, {}
        retained, self.retained_out = self.retained_out, []
        return outbox, retained

    # -- in --------------------------------------------------------------------------

    def receive(self, data: bytes, now: float, origin: str | None = None) -> int:
        """A batch from node `origin`: deliver locally, never route back out (the router
        is off for the whole batch: one swap, not one per message). A message whose
        expiry passed on its way (NATS was away) is not delivered."""
        broker = self.broker
        publish = broker.publish
        count = 0
        broker.router = None
        self.origin = origin
        try:
            for message, wire in iter_records(data, now, broker.wall_clock()):
                count += 1
                expiry_at = message.expiry_at
                if expiry_at is not None and expiry_at <= now:
                    continue
                publish(message, now, wire)
        finally:
            broker.router = self
            self.origin = self.node_id
            self.routed_in += count
        return count

    def receive_shared(self, group: str, topic_filter: str, data: bytes, now: float) -> int:
        """A batch for `$share/group/filter`, which NATS gave to this node: one member each."""
        broker = self.broker
        shared = broker.subs.shared_group(topic_filter, group)
        count = 0
        # A shared message reaches one node only: no session move withholds it.
        self.origin = None
        try:
            count = self._deliver_shared(shared, data, now)
        finally:
            self.origin = self.node_id
        self.routed_in += count
        return count

    def _deliver_shared(self, shared, data: bytes, now: float) -> int:
        broker = self.broker
        count = 0
        for message, wire in iter_records(data, now, broker.wall_clock()):
            count += 1
            if shared is None:
                broker.stats.publish_dropped += 1   # the last member left meanwhile
                continue
            if message.expired(now):
                continue
            sub = shared.pick()
            if sub is None:
                continue
            # The broker's one delivery policy (QoS, READ access, encode cache), as for
            # a local $share pick.
            entry = (sub.session, sub.qos, sub.retain_as_published,
                     [sub.identifier] if sub.identifier is not None else None, False, None)
            broker.deliver(message, (entry,), now, wire)
        return count

    def store_retained(self, data: bytes, now: float, stored_wall: float | None = None) -> None:
        """A retained message from the cluster's store (JetStream): into the local store."""
        for message, _ in decode_records(data, now, self.broker.wall_clock()):
            if message.expired(now):
                message = Message(message.topic, b"", 0, True, {})
            self.broker.retained.store(message)

    # -- local interest (from ClusterSubscriptionTree) ----------------------------------

    def local_added(self, topic_filter: str, group: str | None, client=None) -> None:
        """A filter gained a local subscription. The first one is announced, and the
        subscriber's SUBACK waits (`hold`) until every other node has acknowledged it:
        a message published anywhere after the SUBACK is routed here."""
        if group is None:
            count = self.local_filters.get(topic_filter, 0)
            self.local_filters[topic_filter] = count + 1
        else:
            key = (group, topic_filter)
            count = self.local_shared.get(key, 0)
            self.local_shared[key] = count + 1
        if count:
            # Known here already, but its announcement may still be unacknowledged:
            # the edge holds this SUBACK too while any announcement is in flight.
            if client is not None and self.hold is not None and self.nodes:
                self.hold(client, False)
            return
        if group is not None:
            self._shared_member(key, self.node_id, True)
        self.changes.append(("+", topic_filter, group))
        if client is not None and self.hold is not None and self.nodes:
            self.hold(client)
        self._wake()

    def local_removed(self, topic_filter: str, group: str | None) -> None:
        if group is None:
            count = self.local_filters.get(topic_filter, 0) - 1
            if count > 0:
                self.local_filters[topic_filter] = count
                return
            self.local_filters.pop(topic_filter, None)
            self.changes.append(("-", topic_filter, None))
            self._wake()
            return
        key = (group, topic_filter)
        count = self.local_shared.get(key, 0) - 1
        if count > 0:
            self.local_shared[key] = count
            return
        self.local_shared.pop(key, None)
        self._shared_member(key, self.node_id, False)
        self.changes.append(("-", topic_filter, group))
        self._wake()

    def take_changes(self) -> list:
        changes, self.changes = self.changes, []
        return changes

    def snapshot(self) -> dict:
        """This node's whole interest, for a full announcement."""
        return {"filters": sorted(self.local_filters), "shared": sorted(self.local_shared)}

    # -- remote interest (from announcements) ---------------------------------------

    def _shared_member(self, key: tuple[str, str], node_id: str, present: bool) -> None:
        members = self._shared_nodes.get(key)
        if present:
            if members is None:
                members = self._shared_nodes[key] = set()
                self._shared.add(key[1], key)
            members.add(node_id)
        elif members is not None:
            members.discard(node_id)
            if not members:
                del self._shared_nodes[key]
                self._shared.remove(key[1], key)
        self.routes.clear()

    def node(self, node_id: str) -> RemoteNode:
        node = self.nodes.get(node_id)
        if node is None:
            node = self.nodes[node_id] = RemoteNode(node_id)
        return node

    def apply_full(self, node_id: str, seq: int, filters, shared, now: float) -> None:
        """Another node's whole interest replaces what we knew of it."""
        self.forget_node(node_id)
        node = self.node(node_id)
        node.seq = seq
        node.last_seen = now
        for topic_filter in filters:
            node.filters[topic_filter] = 1
            self._remote.add(topic_filter, node_id)
        for group, topic_filter in shared:
            node.shared[(group, topic_filter)] = 1
            self._shared_member((group, topic_filter), node_id, True)
        self.routes.clear()

    def apply_delta(self, node_id: str, seq: int, changes, now: float) -> bool:
        """One announced change; False when a delta was missed (ask for a full one)."""
        node = self.nodes.get(node_id)
        if node is None or seq != node.seq + 1:
            return False
        node.seq = seq
        node.last_seen = now
        for sign, topic_filter, group in changes:
            if group is None:
                if sign == "+" and topic_filter not in node.filters:
                    node.filters[topic_filter] = 1
                    self._remote.add(topic_filter, node_id)
                elif sign == "-" and node.filters.pop(topic_filter, None) is not None:
                    self._remote.remove(topic_filter, node_id)
            else:
                key = (group, topic_filter)
                if sign == "+" and key not in node.shared:
                    node.shared[key] = 1
                    self._shared_member(key, node_id, True)
                elif sign == "-" and node.shared.pop(key, None) is not None:
                    self._shared_member(key, node_id, False)
        self.routes.clear()
        return True

    def forget_node(self, node_id: str) -> None:
        """A node left (or is about to be replaced by its full announcement)."""
        node = self.nodes.pop(node_id, None)
        if node is None:
            return
        for topic_filter in node.filters:
            self._remote.remove(topic_filter, node_id)
        for key in node.shared:
            self._shared_member(key, node_id, False)
        self.routes.clear()

    # -- client ids and sessions across the cluster ----------------------------------

    def wake_edge(self) -> None:
        self._wake()

    def session_changed(self, session) -> None:
        """The broker changed what a persistent session's record holds (session_moves.py).

        A session that has ended (no session of its id left here) drops its connect
        time too: `clients` only settles takeovers of sessions this node holds, and
        would otherwise grow with every client id ever seen."""
        self.moves.session_changed(session)
        client_id = session.client_id
        if client_id not in self.broker.sessions and client_id not in self.moves.changed:
            self.clients.pop(client_id, None)   # (a recorded one: once its deletion is dated)

    def client_connected(self, client, now: float) -> None:
        """Called by the broker after a CONNACK: announce the id (the edge sends every
        connect of a loop turn in one message) and record a persistent session here."""
        client_id = client.client_id
        wall = self.moves.connect_wall(client_id)
        self.clients[client_id] = wall
        session = client.session
        persistent = session is not None and session.expiry_interval != 0
        self.connects.append((client_id, wall, bool(client.clean_start), persistent))
        if session is not None:
            self.moves.session_changed(session)
            if self.moves.must_hold(client_id, persistent) and self.nodes and self.moves.hold is not None:
                # Its CONNACK waits until every node knows where the session is, so a
                # reconnect elsewhere right after finds it (session_moves.py).
                self.moves.hold(client)
            if self.changes and session.subscriptions and self.hold is not None and self.nodes:
                # A session that arrived with subscriptions: its CONNACK waits until every
                # node knows them, so a message published after it reaches the client.
                self.hold(client)
        self._wake()

    def remote_connect(self, client_id: str, node_id: str, wall: float, clean_start: bool, now: float) -> None:
        """`client_id` connected on another node: the session here ends as in a takeover.

        Of two connects racing on two nodes, the later one (wall clock, then node id)
        keeps the id; each node applies the same rule, so exactly one survives.
        """
        broker = self.broker
        session = broker.sessions.get(client_id)
        if session is None:
            return
        client = session.client
        if client is not None:
            mine = self.clients.get(client_id, 0.0)
            if (mine, self.node_id) > (wall, node_id):
                return   # ours is the newer connect: the other node gives way
            if broker.limits.connection_messages:
                broker.log.notice(f"Client {client_id} connected on node {node_id}, closing it here.")
            client.close(now, "takeover", reason_code=0x8E)
        session = broker.sessions.get(client_id)
        if session is None:
            return
        if client is None and broker.limits.connection_messages:
            broker.log.notice(f"Client {client_id} connected on node {node_id}, ending its session here.")
        if session.will is not None and not clean_start:
            broker.cancel_delayed_will(session)   # resumed elsewhere within the will delay
        # The id is the other node's now: its record (if any) is not ours to delete.
        entry = self.moves.directory.get(client_id)
        self.moves.directory[client_id] = (node_id, entry[1] if entry else [])
        broker.end_session(session, now)
        self.clients.pop(client_id, None)
