"""Keepalive: close a client silent for 1.5 x its keepalive (Mosquitto keepalive.c).

Clients wait in one-second buckets (a dict: whole second -> set of clients whose
deadline falls in it), and the broker's timer heap holds one entry per bucket, not per
client. Traffic only stores `client.last_activity`; when a bucket comes due, a client
that had traffic since moves to the bucket of its new deadline, a silent one is closed.

Why buckets rather than a heap entry per client: a connect then costs a set insert
instead of a heap push and a weak reference (a 5-tuple, a weakref and a float: ~190
bytes per idle connection), a closed client leaves its bucket at once (nothing keeps it
alive), and the heap stays small. A client is closed at most one second after its exact
deadline, never before it; Mosquitto checks keepalives at a one-second granularity too.
"""

from __future__ import annotations

from math import ceil

from midge.broker.cleanup import attempt

KIND = "keepalive"


def add(broker, client, now) -> None:
    """Arm the client's keepalive check (at accept, and again after CONNECT)."""
    if not client.keepalive:
        remove(client)
        return
    second = ceil(client.last_activity + client.keepalive * 1.5)
    current = client.keepalive_bucket
    if current:
        if current <= second:
            # The bucket armed at accept comes due first and `check` moves the client
            # on: nothing to do at CONNECT (the common case).
            return
        _bucket_remove(broker.keepalive_buckets, current, client)
    _bucket_add(broker, second, client)


def remove(client) -> None:
    """The client closed or stopped using keepalive: forget its bucket."""
    second = client.keepalive_bucket
    if second:
        _bucket_remove(client.broker.keepalive_buckets, second, client)
        client.keepalive_bucket = 0


def live(broker, second) -> bool:
    """Whether the heap entry for bucket `second` still has its bucket (maybe empty)."""
    return second in broker.keepalive_buckets


def check(broker, second, now) -> None:
    """Bucket `second` came due: close its silent clients, move the others on."""
    clients = broker.keepalive_buckets.pop(second, None)
    if not clients:
        return
    for client in clients:
        client.keepalive_bucket = 0
        deadline = client.last_activity + client.keepalive * 1.5
        if now >= deadline:
            # One client's failing cleanup must not spare the rest of the bucket.
            attempt(broker.log, f"closing client {client.id_for_log} (keepalive)", client.close, now,
                    "keepalive")
        else:
            _bucket_add(broker, ceil(deadline), client)


def _bucket_add(broker, second, client) -> None:
    buckets = broker.keepalive_buckets
    bucket = buckets.get(second)
    if bucket is None:
        bucket = buckets[second] = set()
        broker.timers.add(second, KIND, None, second)
    bucket.add(client)
    client.keepalive_bucket = second


def _bucket_remove(buckets, second, client) -> None:
    # An emptied bucket stays until its heap entry comes due: deleting it would make the
    # next client of the same second push a second heap entry (a storm of connections
    # with keepalive 0 did that once per connection).
    bucket = buckets.get(second)
    if bucket is not None:
        bucket.discard(client)
