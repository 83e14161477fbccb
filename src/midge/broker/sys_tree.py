"""The `$SYS/broker/...` topics (Mosquitto sys_tree.c).

Every `sys_interval` seconds the values are published retained at QoS 2, each only
when it changed (uptime always). The load averages are Mosquitto's exponentially
weighted per-minute rates, printed with two decimals.
"""

from __future__ import annotations

import math

from midge import __version__
from midge.broker.message import Message

KIND = "sys"

_LOAD_PERIODS = (("1min", 60.0), ("5min", 300.0), ("15min", 900.0))

# load topic -> the counter it follows (Stats attribute)
_LOADS = {
    "messages/received": "messages_received",
    "messages/sent": "messages_sent",
    "publish/received": "publish_received",
    "publish/sent": "publish_sent",
    "publish/dropped": "publish_dropped",
    "bytes/received": "bytes_received",
    "bytes/sent": "bytes_sent",
    "sockets": "sockets",
    "connections": "connections",
}


class SysTree:
    def __init__(self, broker, now):
        self.broker = broker
        self.token = 0
        self.published: dict[str, bytes] = {}
        self.load: dict[str, float] = {}
        self.last_counts: dict[str, int] = {}
        self.last_update = None
        self.interval = 0
        self.reconfigure(now)

    def reconfigure(self, now) -> None:
        interval = self.broker.limits.sys_interval
        if interval == self.interval:
            return
        self.interval = interval
        self.token += 1
        if interval > 0:
            if "$SYS/broker/version" not in self.published:
                self._publish("$SYS/broker/version", f"midge version {__version__}", now, force=True)
            self.broker.timers.add(now, KIND, None, self.token)

    def check(self, token, now) -> None:
        if token != self.token or self.interval <= 0:
            return
        self.update(now)
        self.broker.timers.add(now + self.interval, KIND, None, self.token)

    def _publish(self, topic, value, now, force=False) -> None:
        payload = str(value).encode()
        if not force and self.published.get(topic) == payload:
            return
        self.published[topic] = payload
        self.broker.publish(Message(topic, payload, 2, True, {}), now)

    def update(self, now) -> None:
        broker = self.broker
        stats = broker.stats
        pub = self._publish
        pub("$SYS/broker/uptime", f"{int(now - broker.start_time)} seconds", now, force=True)

        total = len(broker.sessions)
        connected = len(broker.clients)
        if total > stats.clients_maximum:
            stats.clients_maximum = total
        pub("$SYS/broker/clients/total", total, now)
        pub("$SYS/broker/clients/maximum", stats.clients_maximum, now)
        pub("$SYS/broker/clients/connected", connected, now)
        pub("$SYS/broker/clients/active", connected, now)
        pub("$SYS/broker/clients/disconnected", total - connected, now)
        pub("$SYS/broker/clients/inactive", total - connected, now)
        pub("$SYS/broker/clients/expired", stats.clients_expired, now)

        pub("$SYS/broker/messages/received", stats.messages_received, now)
        pub("$SYS/broker/messages/sent", stats.messages_sent, now)
        pub("$SYS/broker/publish/messages/received", stats.publish_received, now)
        pub("$SYS/broker/publish/messages/sent", stats.publish_sent, now)
        pub("$SYS/broker/publish/messages/dropped", stats.publish_dropped, now)
        pub("$SYS/broker/bytes/received", stats.bytes_received, now)
        pub("$SYS/broker/bytes/sent", stats.bytes_sent, now)
        pub("$SYS/broker/publish/bytes/received", stats.publish_bytes_received, now)
        pub("$SYS/broker/publish/bytes/sent", stats.publish_bytes_sent, now)

        stored = broker.retained.count
        stored_bytes = broker.retained.bytes
        for session in broker.sessions.values():
            stored += len(session.inflight) + session.queued
            stored_bytes += session.inflight_bytes + session.queue_bytes
        pub("$SYS/broker/store/messages/count", stored, now)
        pub("$SYS/broker/messages/stored", stored, now)
        pub("$SYS/broker/store/messages/bytes", stored_bytes, now)
        pub("$SYS/broker/retained messages/count", broker.retained.count, now)
        pub("$SYS/broker/subscriptions/count", broker.subs.count - broker.subs.shared_count, now)
        pub("$SYS/broker/shared_subscriptions/count", broker.subs.shared_count, now)
        self._update_loads(now)

    def _update_loads(self, now) -> None:
        stats = self.broker.stats
        initial = self.last_update is None
        elapsed = 0.0 if initial else now - self.last_update
        for name, attr in _LOADS.items():
            count = getattr(stats, attr)
            previous = self.last_counts.get(name, count if initial else 0)
            self.last_counts[name] = count
            rate = 0.0 if elapsed <= 0 else (count - previous) * 60.0 / elapsed
            for suffix, period in _LOAD_PERIODS:
                topic = f"$SYS/broker/load/{name}/{suffix}"
                current = self.load.get(topic, 0.0)
                if initial:
                    value = 0.0
                else:
                    exponent = math.exp(-elapsed / period)
                    value = rate + exponent * (current - rate)
                if initial or abs(value - current) >= 0.01:
                    self._publish(topic, f"{value:.2f}", now, force=True)
                self.load[topic] = value
        self.last_update = now
