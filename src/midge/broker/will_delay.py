"""Delayed wills (MQTT v5 will delay interval; Mosquitto will_delay.c)."""

from __future__ import annotations

KIND = "will"


def add(broker, session, will, client, delay, now) -> None:
    session.will = will
    session.will_client = client
    session.will_token += 1
    broker.timers.add(now + delay, KIND, session, session.will_token)


def remove(session) -> None:
    session.will = None
    session.will_client = None
    session.will_token += 1


def check(broker, session, token, now) -> None:
    if token != session.will_token or session.will is None:
        return
    broker.send_delayed_will(session, now)
