"""Topic names, topic filters, matching and shared subscriptions (MQTT 5.0 section 4.7, 4.8.2).

A topic *name* is what a PUBLISH carries (no wildcards); a topic *filter* is what a
SUBSCRIBE carries (`+` matches one level, `#` the rest). Topics beginning with `$`
are not matched by a filter that begins with a wildcard, so `#` never sees `$SYS`.
"""

from __future__ import annotations

from collections.abc import Sequence

from midge.protocol.errors import TopicFilterInvalid

MAX_TOPIC_BYTES = 65535
SHARE_PREFIX = "$share/"


def _utf8_length(s: str) -> int | None:
    """Encoded length, or None if `s` cannot be UTF-8 (lone surrogates)."""
    if s.isascii():  # common case: the length is the byte count, no encoding needed
        return len(s)
    try:
        return len(s.encode())
    except UnicodeEncodeError:
        return None


def valid_topic_name(s: str) -> bool:
    """Non-empty, no wildcard, no NUL, at most 65535 bytes of UTF-8."""
    if not s or "+" in s or "#" in s or "\0" in s:
        return False
    length = _utf8_length(s)
    return length is not None and length <= MAX_TOPIC_BYTES


def valid_topic_filter(s: str) -> bool:
    """Non-empty, at most 65535 bytes; `#` only alone in the last level, `+` alone in its level."""
    if not s or "\0" in s:
        return False
    length = _utf8_length(s)
    if length is None or length > MAX_TOPIC_BYTES:
        return False
    if "+" not in s and "#" not in s:
        return True
    levels = s.split("/")
    last = len(levels) - 1
    for index, level in enumerate(levels):
        if "#" in level:
            if level != "#" or index != last:
                return False
        elif "+" in level and level != "+":
            return False
    return True


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True if `topic` (a name) matches `topic_filter`; both assumed valid."""
    if topic_filter == topic:
        return True
    return levels_match(topic_filter.split("/"), topic.split("/"))


def levels_match(filter_levels: Sequence[str], topic_levels: Sequence[str]) -> bool:
    """`topic_matches` on levels already split (ACL entries are split once, at load).
    A wildcard in the first level never matches a topic starting with `$`."""
    if topic_levels[0].startswith("$") and filter_levels[0] in ("+", "#"):
        return False
    count = len(topic_levels)
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True  # also matches the parent level: "a/#" matches "a"
        if index >= count:
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == count


def split_shared(topic_filter: str) -> tuple[str, str] | None:
    """`$share/group/filter` -> (group, filter); None if not a shared subscription.

    Raises TopicFilterInvalid when the share name is empty or has a wildcard, or the
    filter after it is missing or invalid.
    """
    if not topic_filter.startswith(SHARE_PREFIX):
        return None
    group, slash, rest = topic_filter[len(SHARE_PREFIX):].partition("/")
    if not group:
        raise TopicFilterInvalid(f"shared subscription {topic_filter!r} has an empty share name")
    if "+" in group or "#" in group:
        raise TopicFilterInvalid(f"shared subscription {topic_filter!r}: share name has a wildcard")
    if not slash or not rest:
        raise TopicFilterInvalid(f"shared subscription {topic_filter!r} has no topic filter")
    if not valid_topic_filter(rest):
        raise TopicFilterInvalid(f"shared subscription {topic_filter!r}: invalid topic filter {rest!r}")
    return group, rest
