"""What changed in the broker's durable state since the last write to the store.

The broker core (sans-I/O) only records *which* sessions and retained topics
changed, in two sets; the server hands them to the store before it writes any
client output. Nothing here knows about SQLite.
"""

from __future__ import annotations


class Changes:
    """Sessions and retained topics whose durable state changed and is not stored yet."""

    __slots__ = ("sessions", "retained")

    def __init__(self):
        self.sessions: set = set()     # Session objects (current or ended)
        self.retained: set = set()     # topic names (stored or cleared)

    def __bool__(self) -> bool:
        return bool(self.sessions or self.retained)

    def __len__(self) -> int:
        return len(self.sessions) + len(self.retained)

    def take(self) -> tuple[set, set]:
        """Hand over the current sets and start new ones."""
        sessions, retained = self.sessions, self.retained
        self.sessions = set()
        self.retained = set()
        return sessions, retained
