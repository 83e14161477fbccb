"""Password hashing off the event loop: a small worker pool, shared fairly by address.

Why: a `$7$` password (PBKDF2-HMAC-SHA512, 210,000 iterations as `midge passwd` writes
it) costs about 0.13 s of CPU to check. Hashed on the event loop, 100 parallel wrong
logins from one address (released together by the login throttle) stalled every client
of the broker for up to 13 s (issue 14). Here `Security` hands each check that needs
the full hash to `AuthPool.verify` (`security.hash_offload`) and gets an answer later,
as it does for an async plugin (`PendingAuth`); the event loop goes on serving everyone.

- **Threads.** `hashlib.pbkdf2_hmac` releases the GIL while OpenSSL hashes, so worker
  threads hash in parallel with the event loop thread, and no process pool (pickling,
  memory per worker) is needed.
- **Size: one worker per CPU beyond the first, at most 4** (`pool_size`). Hashing is
  pure CPU: more workers than cores only slow each other, and the event loop thread is
  itself CPU-bound, so it keeps a core of its own: on 2 cores one worker, never 0. Four
  checks at a time (~30 logins per second that need a full hash) is more than a broker
  needs; the first login of a user is the only one that does (later ones with the same
  password take Security's HMAC shortcut, microseconds, no pool).
- **Per address: one check at a time, addresses in turn.** Checks wait in one queue per
  source address; a free worker takes the next address in round-robin order. So one
  address, however many connections it opens, holds at most one worker, and a login
  from another address waits for at most one check per busy worker, not for the
  attacker's queue. The login throttle (security/throttle.py) still delays each
  address's CONNACKs as before; this bounds the CPU an address can take on top.
- A check whose client has gone by the time a worker is free is skipped (`wanted`).
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

MAX_WORKERS = 4
PER_ADDRESS = 1   # checks of one address hashed at the same time


def pool_size(cpus: int | None = None) -> int:
    """Workers for `cpus` usable CPUs: every CPU but the event loop's, 1 to MAX_WORKERS."""
    if cpus is None:
        cpus = os.process_cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus - 1))


class _Check:
    __slots__ = ("entry", "password", "wanted", "future")

    def __init__(self, entry, password, wanted, future):
        self.entry = entry
        self.password = password
        self.wanted = wanted
        self.future = future


class AuthPool:
    """Runs `PasswordHash.verify` on worker threads, fairly across source addresses."""

    def __init__(self, loop: asyncio.AbstractEventLoop, workers: int | None = None,
                 per_address: int = PER_ADDRESS):
        self.loop = loop
        self.workers = workers or pool_size()
        self.per_address = per_address
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="midge-auth")
        self._waiting: dict[str, deque[_Check]] = {}   # address -> checks not started
        self._running: dict[str, int] = {}             # address -> checks being hashed
        self._turns: deque[str] = deque()              # addresses with a check to start
        self._busy = 0
        self.closed = False

    def verify(self, address: str, entry, password: bytes, wanted=lambda: True) -> asyncio.Future:
        """A future of `entry.verify(password)`; `wanted()` False drops it unhashed."""
        future = self.loop.create_future()
        if self.closed:
            future.set_result(False)
            return future
        queue = self._waiting.get(address)
        if queue is None:
            queue = self._waiting[address] = deque()
            if self._running.get(address, 0) < self.per_address:
                self._turns.append(address)
        queue.append(_Check(entry, password, wanted, future))
        self._start()
        return future

    @property
    def running(self) -> int:
        """Checks being hashed now."""
        return self._busy

    @property
    def waiting(self) -> int:
        """Checks not started yet (all addresses)."""
        return sum(len(queue) for queue in self._waiting.values())

    def _start(self) -> None:
        while self._busy < self.workers and self._turns:
            address = self._turns.popleft()
            queue = self._waiting[address]
            check = queue.popleft()
            if not queue:
                del self._waiting[address]
            elif self._running.get(address, 0) + 1 < self.per_address:
                self._turns.append(address)          # may start another at once
            if check.future.done() or not check.wanted():
                if not check.future.done():
                    check.future.set_result(False)   # nobody waits for it any more
                self._requeue(address)
                continue
            self._busy += 1
            self._running[address] = self._running.get(address, 0) + 1
            job = self.loop.run_in_executor(self._executor, check.entry.verify, check.password)
            job.add_done_callback(lambda job, address=address, check=check: self._done(address, check, job))

    def _done(self, address: str, check: _Check, job: asyncio.Future) -> None:
        self._busy -= 1
        running = self._running[address] - 1
        if running:
            self._running[address] = running
        else:
            del self._running[address]
        if not check.future.done():
            if job.cancelled():
                check.future.set_result(False)
            elif job.exception() is not None:
                check.future.set_exception(job.exception())
            else:
                check.future.set_result(job.result())
        self._requeue(address)
        self._start()

    def _requeue(self, address: str) -> None:
        """`address` may start a check again: give it a turn if it has one waiting."""
        if (address in self._waiting and address not in self._turns
                and self._running.get(address, 0) < self.per_address):
            self._turns.append(address)

    def close(self) -> None:
        """Shutdown: answer every waiting check False, stop the workers."""
        self.closed = True
        for queue in self._waiting.values():
            for check in queue:
                if not check.future.done():
                    check.future.set_result(False)
        self._waiting.clear()
        self._turns.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)
