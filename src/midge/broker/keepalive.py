"""Keepalive: close a client silent for 1.5 x its keepalive (Mosquitto keepalive.c).

One heap entry per client. Traffic only stores `client.last_activity`; when the
entry fires early (there was traffic), it is re-armed at the new deadline. That
saves a heap operation per packet.
"""

from __future__ import annotations

KIND = "keepalive"


def _limit(client) -> float:
    return client.keepalive * 1.5


def add(broker, client, now) -> None:
    client.keepalive_token += 1
    if client.keepalive:
        broker.timers.add(client.last_activity + _limit(client), KIND, client, client.keepalive_token)


def remove(client) -> None:
    client.keepalive_token += 1


def check(broker, client, token, now) -> None:
    from midge.broker.client import CLOSED
    if client.state == CLOSED or token != client.keepalive_token or not client.keepalive:
        return
    deadline = client.last_activity + _limit(client)
    if now >= deadline:
        client.close(now, "keepalive")
    else:
        broker.timers.add(deadline, KIND, client, token)
