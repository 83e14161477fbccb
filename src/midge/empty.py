"""The one shared empty mapping: what a session's maps, a connection's topic-alias maps
and a message without properties start as, instead of an empty dict each.

An empty dict is 64 bytes and most of these maps stay empty for an object's whole life
(an idle session never subscribes to much or queues anything; aliases are rare; most
messages have no properties), so they all share `EMPTY_MAP`. It reads as an empty dict
(it is one, so code that encodes or copies a dict takes it as it is) and refuses writes:
a writer that forgot to take its own dict first fails loudly instead of filling the map
every other object shares.
"""

from __future__ import annotations


class _ReadOnlyEmpty(dict):
    __slots__ = ()

    def _refuse(self, *args, **kwargs):
        raise TypeError("the shared empty mapping is read-only: give the object its own dict first")

    __setitem__ = setdefault = update = __ior__ = _refuse


EMPTY_MAP: dict = _ReadOnlyEmpty()

__all__ = ["EMPTY_MAP"]
