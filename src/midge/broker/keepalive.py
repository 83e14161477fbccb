"""Keepalive: close a client silent for 1.5 x its keepalive (Mosquitto keepalive.c).

One heap entry per client. Traffic only stores `client.last_activity`; when the
entry fires early (there was traffic), it is re-armed at the new deadline. That
saves a heap operation per packet.

The heap holds a weak reference to the client: a closed client's entry stays in the
heap until its deadline (up to 90 s), and must not keep the client, its connection and
its TLS object alive that long.
"""

from __future__ import annotations

import weakref

KIND = "keepalive"


def _limit(client) -> float:
    return client.keepalive * 1.5


def add(broker, client, now) -> None:
    """Arm (or re-arm after CONNECT) the client's entry; `client.keepalive_armed` is the
    deadline of its live entry, 0 for none."""
    armed = client.keepalive_armed
    if client.keepalive:
        deadline = client.last_activity + _limit(client)
        if armed and armed <= deadline:
            # The entry armed at accept fires first and check() moves it on: no second
            # entry per connection at CONNECT (one heap push and ~150 bytes saved).
            return
        if armed:
            broker.timers.discarded()
        client.keepalive_token += 1
        client.keepalive_armed = deadline
        broker.timers.add(deadline, KIND, weakref.ref(client), client.keepalive_token)
    else:
        remove(client)


def remove(client) -> None:
    if client.keepalive_armed:
        client.keepalive_armed = 0.0
        client.broker.timers.discarded()
    client.keepalive_token += 1


def live(client_ref, token) -> bool:
    """Whether a heap entry (weak client reference, token) still means something.

    No state check: Client.close() calls remove(), whose token bump already makes the
    entry stale (and saves an import statement here, run after every received chunk)."""
    client = client_ref()
    return client is not None and token == client.keepalive_token


def check(broker, client_ref, token, now) -> None:
    from midge.broker.client import CLOSED
    client = client_ref()
    if client is None or client.state == CLOSED or token != client.keepalive_token or not client.keepalive:
        return
    deadline = client.last_activity + _limit(client)
    if now >= deadline:
        client.keepalive_armed = 0.0
        client.close(now, "keepalive")
    else:
        client.keepalive_armed = deadline
        broker.timers.add(deadline, KIND, client_ref, token)
