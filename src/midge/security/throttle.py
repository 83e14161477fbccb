"""Slowing down repeated failed logins from one address (midge addition).

Contract with the broker: when a CONNECT arrives it asks
`delay = security.login_delay(peer_ip, now)` and sends that client's CONNACK `delay`
seconds later, whatever the outcome (the broker keeps the client in its timer list;
nothing sleeps). Delaying successes too matters: if only refusals were slow, an
attacker running logins in parallel would see a success at once. When the login fails
the broker calls `security.record_failure(peer_ip, now)`; on success
`security.record_success(peer_ip)` clears the address, so a user who mistyped once is
not slowed down afterwards. An address with no recent failure gets 0.0.

The delay doubles with each failure: `auth_fail_delay * 2**(failures - 1)`, capped at
`auth_fail_delay_max`. An address that has not failed for `forget_after` seconds starts
again from zero. A burst is logged once, when it reaches `LOG_AFTER` failures, not on
every attempt.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_DELAY = 0.5
DEFAULT_DELAY_MAX = 8.0
LOG_AFTER = 5
MAX_TRACKED = 10_000


@dataclass(slots=True)
class _Failures:
    count: int
    last: float


def peer_host(peer: str) -> str:
    """The address part of the server's `host:port` peer string.

    `1.2.3.4:5` -> `1.2.3.4`, `::1:5` -> `::1` (the server writes IPv6 without
    brackets, as Mosquitto logs it), `[::1]:5` -> `::1`; `unix-socket` is unchanged.
    """
    if peer.startswith("["):
        return peer[1:].partition("]")[0]
    host, colon, port = peer.rpartition(":")
    if colon and host and port.isdigit():
        return host
    return peer


class LoginThrottle:
    def __init__(self, delay: float = DEFAULT_DELAY, delay_max: float = DEFAULT_DELAY_MAX, log=None):
        self.log = log
        self._failures: dict[str, _Failures] = {}
        self.configure(delay, delay_max)

    def configure(self, delay: float, delay_max: float) -> None:
        """Set (or, on reload, change) the delays; recorded failures are kept."""
        self.delay = max(0.0, delay)
        self.delay_max = max(self.delay, delay_max)
        self.forget_after = max(60.0, 6 * self.delay_max)

    def __len__(self) -> int:
        """How many addresses have recent failed logins (0: the broker need not ask)."""
        return len(self._failures)

    def _current(self, ip: str, now: float) -> _Failures | None:
        entry = self._failures.get(ip)
        if entry is not None and now - entry.last > self.forget_after:
            del self._failures[ip]
            return None
        return entry

    def login_delay(self, ip: str, now: float) -> float:
        """Seconds to hold back the CONNACK to `ip` (0.0 when it has not failed recently)."""
        if self.delay <= 0:
            return 0.0
        entry = self._current(ip, now)
        if entry is None:
            return 0.0
        return min(self.delay_max, self.delay * 2 ** min(entry.count - 1, 60))

    def record_failure(self, ip: str, now: float) -> None:
        entry = self._current(ip, now)
        if entry is None:
            if len(self._failures) >= MAX_TRACKED:
                self._prune(now)
            entry = self._failures[ip] = _Failures(0, now)
        entry.count += 1
        entry.last = now
        if entry.count == LOG_AFTER and self.log is not None:
            self.log.warning(f"Repeated failed logins from {ip} ({LOG_AFTER} so far); "
                             f"its refusals are now delayed up to {self.delay_max:g} s.")

    def record_success(self, ip: str) -> None:
        self._failures.pop(ip, None)

    def _prune(self, now: float) -> None:
        stale = [ip for ip, e in self._failures.items() if now - e.last > self.forget_after]
        for ip in stale:
            del self._failures[ip]
        if len(self._failures) >= MAX_TRACKED:  # under attack from many addresses: forget the oldest half
            oldest = sorted(self._failures, key=lambda ip: self._failures[ip].last)
            for ip in oldest[: len(oldest) // 2]:
                del self._failures[ip]
