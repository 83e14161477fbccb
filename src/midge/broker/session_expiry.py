"""Session expiry (v5 session expiry interval, v3 persistent sessions with
`persistent_client_expiration`; Mosquitto session_expiry.c)."""

from __future__ import annotations

from midge.broker.session import NEVER

KIND = "expiry"


def interval_for(broker, interval: int) -> float | None:
    """Seconds until an offline session with this expiry interval ends, or None for never."""
    if interval == NEVER:
        # Mosquitto applies persistent_client_expiration to sessions that never expire
        # on their own (v3 clean session 0, v5 0xFFFFFFFF).
        return broker.limits.persistent_client_expiration
    return float(interval)


def add(broker, session, now) -> None:
    session.expiry_token += 1
    interval = interval_for(broker, session.expiry_interval)
    if interval is not None:
        broker.timers.add(now + interval, KIND, session, session.expiry_token)


def remove(session) -> None:
    session.expiry_token += 1


def check(broker, session, token, now) -> None:
    if token != session.expiry_token or session.client is not None:
        return
    if broker.sessions.get(session.client_id) is not session:
        return
    broker.stats.clients_expired += 1
    broker.end_session(session, now, expired=True)
