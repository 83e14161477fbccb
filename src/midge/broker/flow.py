"""Flow control from QoS 1/2 subscribers back to their publishers (issue 14, defect 4).

Why: midge handles a whole received chunk in one go. A publisher with 200 QoS 1
messages in flight sends them in a chunk or two; midge routed all of them and sent all
200 PUBACKs at once, so the publisher sent the next 200 long before the subscriber's
20-message window had moved. The subscriber's queue (`max_queued_messages`, 1,000)
overflowed although it acknowledged promptly: 1,992 of 20,000 delivered, where
Mosquitto delivered all. Mosquitto avoids it by accident of its loop: it handles one
packet per socket per loop turn, so a publisher's PUBLISH and a subscriber's PUBACK
alternate. Brokers that batch reads (EMQX's `active_n`, RabbitMQ's credit flow) push
back on the publisher's socket instead; so does midge:

- A QoS 1/2 delivery that has to wait in a *connected* subscriber's queue and brings it
  to the high-water mark (half of `max_queued_messages` and of `max_queued_bytes`;
  1,000 messages when unlimited) *holds* the message's publisher: its packets after
  this one wait (`client.deferred`, the mechanism a delayed CONNECT uses), the server
  stops reading its socket, and since no more PUBACKs go out its window closes.
- The publisher is released when every subscriber holding it has drained to the
  low-water mark (half the high one), or went offline. It then continues with the
  packets it held, on the next timer turn.
- A slow subscriber never blocks anyone: a subscriber that has not drained to the
  low-water mark `HOLD_LIMIT` seconds after it first held a publisher is *behind*; its
  publishers are released, and it holds nobody until it has drained again. Its queue
  then fills and drops as before (the documented policy in broker.py). A publisher
  released that way is not held again for `COOLDOWN` seconds by a subscriber that has
  not shown it keeps up (*proven*: it acknowledged, within some `HOLD_LIMIT`, as many
  messages as a hold asks it to drain, or it drained a hold in time), so even many
  slow subscribers, connected one after another, cost it at most `HOLD_LIMIT` per
  `COOLDOWN + HOLD_LIMIT` (0.5 s in 5.5 s), while a subscriber that keeps up on the
  same topic is still protected.
- Never held: a publisher by its own session (its PUBACKs are what would drain it),
  midge's own bridge connections, and messages without a connected publisher (wills,
  `$SYS`, retained messages). QoS 0 never queues for a connected client, so it holds
  nothing.

The broker stays sans-I/O: it lists the clients whose reading should stop or resume in
`broker.read_changes` (`reading_allowed(client)` says which) and the server applies
them after each drain.
"""

from __future__ import annotations

from midge.broker.client import CLOSED, CONNECTED
from midge.log import LogType

HOLD_LIMIT = 0.5      # seconds a subscriber may take to drain before it counts as behind
COOLDOWN = 5.0        # seconds a publisher released by a behind subscriber is not held
UNLIMITED_HIGH = 1000  # high-water mark (messages) when max_queued_messages is 0

KIND = "flow"          # timer: a subscriber's HOLD_LIMIT ran out (owner: the session)
RESUME_KIND = "flow-resume"  # timer: a released publisher goes on (owner: the client)


class SessionFlow:
    """A connected subscriber session that had to queue (kept while it is connected:
    whether it has shown it keeps up)."""

    __slots__ = ("publishers", "token", "behind", "proven", "window_start", "acks")

    def __init__(self, now: float):
        self.publishers: list = []   # the Clients it holds
        self.token = 0               # the live HOLD_LIMIT timer
        self.behind = False          # did not drain in time: holds nobody until it has
        self.proven = False          # keeps up: may hold a publisher in its cooldown
        self.window_start = now      # acknowledgements counted since (while not proven)
        self.acks = 0


class PublisherFlow:
    """A publisher some subscriber held at least once."""

    __slots__ = ("holds", "free_until")

    def __init__(self):
        self.holds = 0               # subscriber sessions holding it now
        self.free_until = 0.0        # not held again before (COOLDOWN)


def high_water(limits) -> tuple[int, int]:
    """(messages, bytes) in a subscriber's queue from which it holds its publishers."""
    messages = limits.max_queued_messages // 2 if limits.max_queued_messages else UNLIMITED_HIGH
    return max(1, messages), limits.max_queued_bytes // 2


def queued(broker, session, message, now: float) -> None:
    """A delivery of `message` joined `session`'s queue: hold its publisher if that
    brought a connected subscriber to its high-water mark."""
    client = session.client
    if client is None or client.state != CONNECTED:
        return
    state = session.flow
    if state is None:
        state = session.flow = SessionFlow(now)   # from now on its acknowledgements count
    high, high_bytes = high_water(broker.limits)
    if session.queued < high and not (high_bytes and session.queue_bytes >= high_bytes):
        return
    publisher = message.origin_client
    if (publisher is None or publisher.state != CONNECTED or publisher.session is session
            or publisher.bridge is not None or state.behind):
        return
    for held in state.publishers:
        if held is publisher:
            return
    pflow = publisher.flow
    if pflow is None:
        pflow = publisher.flow = PublisherFlow()
    elif now < pflow.free_until and not state.proven:
        return
    if not state.publishers:
        state.token += 1
        broker.timers.add(now + HOLD_LIMIT, KIND, session, state.token)
    state.publishers.append(publisher)
    pflow.holds += 1
    if pflow.holds == 1:
        if publisher.deferred is None:
            publisher.deferred = []   # its next packets wait (Client._process)
        broker.read_changes.append(publisher)


def drained(broker, session, now: float) -> None:
    """An acknowledgement moved `session`'s queue: count it towards `proven`; release
    its publishers (and forgive it being behind) once it is at its low-water mark.
    Having drained while it held someone, it has shown it keeps up too."""
    state = session.flow
    if not state.proven:
        if now - state.window_start > HOLD_LIMIT:
            state.window_start = now
            state.acks = 0
        state.acks += 1
        if state.acks >= high_water(broker.limits)[0] // 2:
            state.proven = True
    if not state.publishers and not state.behind:
        return                       # (the common case)
    high, high_bytes = high_water(broker.limits)
    if session.queued > high // 2 or (high_bytes and session.queue_bytes > high_bytes // 2):
        return
    if state.publishers:
        state.proven = True          # it drained before HOLD_LIMIT: it keeps up
    state.behind = False
    _release(broker, session, now, timed_out=False)


def session_gone(broker, session, now: float) -> None:
    """The subscriber's connection ended: it holds nobody any more."""
    if session.flow is not None:
        _release(broker, session, now, timed_out=False)
        session.flow = None


def reading_allowed(client) -> bool:
    """Whether the server should read `client`'s socket (False while it is held)."""
    pflow = client.flow
    return pflow is None or pflow.holds == 0


def check(broker, kind, owner, token, now: float) -> None:
    """A flow timer came due."""
    if kind == KIND:
        state = owner.flow
        if state is None or token != state.token or not state.publishers:
            return
        state.behind = True
        state.proven = False
        log = broker.log
        if broker.limits.connection_messages and log.enabled(LogType.NOTICE):
            log.notice(f"Client {owner.client_id} is not keeping up with its QoS 1/2 messages "
                       f"({owner.queued} queued); its publishers go on without it.")
        _release(broker, owner, now, timed_out=True)
    elif owner.state != CLOSED and reading_allowed(owner) and owner.deferred is not None:
        owner.resume_deferred(now)


def live(kind, owner, token) -> bool:
    if kind == KIND:
        return owner.flow is not None and token == owner.flow.token
    return owner.state != CLOSED


def _release(broker, session, now: float, timed_out: bool) -> None:
    state = session.flow
    if state is None or not state.publishers:
        return
    publishers, state.publishers = state.publishers, []
    state.token += 1
    for publisher in publishers:
        pflow = publisher.flow
        pflow.holds -= 1
        if timed_out:
            pflow.free_until = now + COOLDOWN
        if pflow.holds == 0 and publisher.state != CLOSED:
            broker.read_changes.append(publisher)
            # Its held packets go on at the next timer turn, not inside this
            # subscriber's PUBACK (the queue being pumped must not change under it).
            broker.timers.add(now, RESUME_KIND, publisher, 0)
