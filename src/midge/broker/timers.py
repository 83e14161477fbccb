"""One heap of deadlines for every timed concern (keepalive, will delay, session
expiry, $SYS), with lazy cancellation.

Cancelling or moving a deadline only bumps the owner's token; stale heap entries
are skipped when they surface. This keeps the per-packet cost of keepalive at
one float store (the entry is re-armed only when it fires early).

Stale entries must not keep their owners alive for long (a closed client holds its
connection, transport and TLS object: ~5.6 KiB TCP, ~55 KiB TLS, for up to 90 s).
Owners that come and go (clients) are therefore stored as weak references by their
modules, and `discarded()` counts known-stale entries so that `next_deadline` can drop
them all in one pass once they are the majority of the heap.
"""

from __future__ import annotations

import heapq
import itertools


class TimerHeap:
    # Compact only past this many stale entries: below it a rebuild costs more than it frees.
    COMPACT_MIN = 256

    def __init__(self):
        self._heap: list = []
        self._seq = itertools.count()
        self._stale = 0

    def discarded(self) -> None:
        """An entry already in the heap went stale (its owner cancelled or moved it)."""
        self._stale += 1

    def add(self, deadline: float, kind: str, owner, token) -> None:
        heapq.heappush(self._heap, (deadline, next(self._seq), kind, owner, token))

    def next_deadline(self, is_live) -> float | None:
        heap = self._heap
        if self._stale > self.COMPACT_MIN and self._stale * 2 > len(heap):
            # O(n) once per n/2 cancellations: amortised O(1) per cancelled entry.
            heap[:] = [entry for entry in heap if is_live(entry[2], entry[3], entry[4])]
            heapq.heapify(heap)
            self._stale = 0
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
        self._stale = 0
