"""A session: what outlives a network connection (subscriptions, messages in flight
and queued, incoming QoS 2 state, packet ids, expiry)."""

from __future__ import annotations

from collections import deque

from midge.empty import EMPTY_MAP
from midge.security.subject import Subject

NEVER = 0xFFFFFFFF  # v5 session expiry interval meaning "does not expire"




class Session:
    __slots__ = (
        "client_id", "client", "subscriptions", "inflight", "inflight_bytes", "_queue",
        "queue_bytes", "incoming_qos2", "next_packet_id", "expiry_interval",
        "expiry_token", "will", "will_client", "will_token", "disconnected_at",
        "protocol", "last_client",
    )

    def __init__(self, client_id: str):
        self.client_id = client_id
        self.client = None                 # the connected Client, or None
        # The three maps start as the shared EMPTY_MAP; `own` gives the session its dict.
        self.subscriptions: dict = EMPTY_MAP  # full filter (with $share prefix) -> Subscription
        self.inflight: dict = EMPTY_MAP       # packet id -> Delivery, in send order
        self.inflight_bytes = 0
        # Deliveries waiting for a free inflight slot; created on first use (`queue`):
        # an empty deque is 760 bytes, most sessions never queue (RSS per idle client).
        self._queue: deque | None = None
        self.queue_bytes = 0
        self.incoming_qos2: dict = EMPTY_MAP  # packet id -> Message (or None when dropped) until PUBREL
        self.next_packet_id = 1
        self.expiry_interval = 0           # seconds; NEVER = no expiry
        self.expiry_token = 0
        self.will = None                   # pending delayed will (Will packet)
        self.will_client = None            # the Client the delayed will belongs to
        self.will_token = 0
        self.disconnected_at = None
        self.protocol = 4                  # protocol level of the last connection
        self.last_client: Subject | None = None   # last connection (ACL checks while offline)

    def own(self, name: str) -> dict:
        """The session's own `subscriptions`, `inflight` or `incoming_qos2` dict, for
        writing (created on the first write)."""
        mapping = getattr(self, name)
        if mapping is EMPTY_MAP:
            mapping = {}
            setattr(self, name, mapping)
        return mapping

    @property
    def queue(self) -> deque:
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        return queue

    @property
    def queued(self) -> int:
        """How many deliveries wait in the queue (without creating it)."""
        queue = self._queue
        return len(queue) if queue is not None else 0

    def allocate_packet_id(self) -> int:
        inflight = self.inflight
        packet_id = self.next_packet_id
        while packet_id in inflight:
            packet_id = packet_id + 1 if packet_id < 65535 else 1
        self.next_packet_id = packet_id + 1 if packet_id < 65535 else 1
        return packet_id

    def clear_messages(self) -> None:
        self.inflight.clear()
        self.inflight_bytes = 0
        if self._queue is not None:
            self._queue.clear()
        self.queue_bytes = 0
        self.incoming_qos2.clear()

    def __repr__(self):
        return f"<Session {self.client_id!r} connected={self.client is not None}>"
