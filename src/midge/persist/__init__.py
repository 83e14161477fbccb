"""Persistence (`persistence true`): an SQLite store written incrementally.

`Changes` (changes.py) is what the sans-I/O broker fills; `Store` (store.py) loads
the broker's state at start and writes the changes; `Persistence` (service.py) is
the one object the server talks to. See docs/persistence.md.
"""

from midge.persist.changes import Changes
from midge.persist.store import PersistError, Store, store_path

__all__ = ["Changes", "PersistError", "Store", "store_path"]
