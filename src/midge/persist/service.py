"""The persistence service the server drives: open and load at start, write the
broker's changes before client output goes out, save on SIGUSR1 and at shutdown.

No event loop here: the server calls `write_changes` from its drain, `save_now` on
SIGUSR1, `autosave` from a timer every `autosave_interval` seconds, and `close`.
"""

from __future__ import annotations

import sqlite3

from midge.log import LogType
from midge.persist.changes import Changes
from midge.persist.store import PersistError, Store, store_path


class Persistence:
    def __init__(self, config, log, broker, now: float):
        self.log = log
        self.broker = broker
        self.path = store_path(config)
        self.store = Store(self.path, log)
        try:
            retained, sessions = self.store.load(broker, now, config.listeners)
        except (sqlite3.Error, ValueError, TypeError, KeyError) as exc:
            self.store.db.close()
            raise PersistError(f"persistence file {self.path} is damaged ({exc}); move it aside "
                               f"to start with no retained messages or sessions.") from exc
        log.notice(f"Loaded {retained} retained messages and {sessions} persistent sessions "
                   f"from {self.path}.")
        self.changes = Changes()
        broker.persist = self.changes
        broker.retained.changes = self.changes
        self.configure(config)
        self.failed = False

    def configure(self, config) -> None:
        """autosave_interval / autosave_on_changes: when to checkpoint the WAL into the
        main file (changes themselves are written continuously)."""
        self.on_changes = config.autosave_on_changes
        interval = config.autosave_interval
        self.autosave_interval = 0 if self.on_changes else interval
        self.checkpoint_every = interval if self.on_changes else 0
        self._since_checkpoint = 0

    def write_changes(self, now: float) -> None:
        """Store what changed (one transaction); called before client output is written,
        so an acknowledgement never leaves before the state it confirms is stored."""
        try:
            count = self.store.write(self.broker, self.changes, now)
        except sqlite3.Error as exc:
            if not self.failed:
                self.log.error(f"Error saving persistence file {self.path}: {exc}; will retry.")
            self.failed = True
            return
        if self.failed:
            self.log.notice(f"Persistence file {self.path} written again.")
            self.failed = False
        if count:
            if self.log.enabled(LogType.DEBUG):
                self.log.debug(f"Persisted {count} changes to {self.path}.")
            if self.checkpoint_every:
                self._since_checkpoint += count
                if self._since_checkpoint >= self.checkpoint_every:
                    self.autosave()

    def save_now(self, now: float) -> None:
        """SIGUSR1 (Mosquitto: save the database now): rewrite everything, checkpoint."""
        try:
            count = self.store.save_all(self.broker, self.changes, now)
        except sqlite3.Error as exc:
            self.log.error(f"Error saving persistence file {self.path}: {exc}")
            return
        self.log.notice(f"Saved {count} sessions and retained messages to {self.path}.")

    def autosave(self) -> None:
        self._since_checkpoint = 0
        try:
            self.store.checkpoint()
        except sqlite3.Error as exc:
            self.log.error(f"Error checkpointing persistence file {self.path}: {exc}")

    def close(self, now: float) -> None:
        """Clean shutdown: write the last changes (sessions just went offline), close."""
        self.write_changes(now)
        self.store.close()
        self.broker.persist = None
        self.broker.retained.changes = None


def open_persistence(config, log, broker, now: float) -> Persistence | None:
    """The persistence service when `persistence true`, else None; PersistError if the
    file cannot be used."""
    if not config.persistence:
        return None
    return Persistence(config, log, broker, now)


__all__ = ["Persistence", "PersistError", "open_persistence"]
