"""One heap of deadlines for every timed concern (keepalive, will delay, session
expiry, $SYS), with lazy cancellation.

Cancelling or moving a deadline only bumps the owner's token; stale heap entries
are skipped when they surface. This keeps the per-packet cost of keepalive at
one float store (the entry is re-armed only when it fires early).

What the heap holds keeps its owner alive until the entry surfaces, so no entry holds
a client: keepalive keeps one entry per one-second bucket (keepalive.py), will delay
and session expiry hold the Session (small; the client is gone), and a held CONNECT
(login delay, at most `auth_fail_delay_max`) holds its client for that long only.
"""

from __future__ import annotations

import heapq
import itertools


class TimerHeap:
    def __init__(self):
        self._heap: list = []
        self._seq = itertools.count()

    def add(self, deadline: float, kind: str, owner, token) -> None:
        heapq.heappush(self._heap, (deadline, next(self._seq), kind, owner, token))

    def next_deadline(self, is_live) -> float | None:
        heap = self._heap
        while heap:
            deadline, _, kind, owner, token = heap[0]
            if is_live(kind, owner, token):
                return deadline
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list:
        due = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, kind, owner, token = heapq.heappop(heap)
            due.append((kind, owner, token))
        return due

    def clear(self) -> None:
        self._heap.clear()
