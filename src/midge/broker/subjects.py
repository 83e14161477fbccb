"""MQTT topics <-> NATS subjects, both ways and for every valid topic (docs/cluster.md).

NATS subjects are `.`-separated tokens of printable non-space characters, where `*` (one
token) and `>` (one or more trailing tokens) are wildcards. MQTT topics may hold anything
but `+`, `#` and NUL in a level, including `.`, spaces, `*`, `>`, empty levels and any
UTF-8. So each MQTT level becomes one token by a reversible escape:

- ASCII letters, digits and `-` stay as they are (the common topic is unchanged);
- every other character becomes `_XX` per byte of its UTF-8 (`_` itself is `_5F`,
  `.` `_2E`, a space `_20`, `$` `_24`, `é` `_C3_A9`);
- an empty level becomes `_` alone, which no escaped level can be.

A subject starts with a kind token: `t` for ordinary topics, `d` for topics whose first
level starts with `$`. A filter starting with a wildcard maps to `t` only, which is MQTT's
rule that `+/...` and `#` never match `$SYS/...` (4.7.2), expressed in NATS terms.

A filter maps to one or two subjects: `+` is `*`, a trailing `#` is `>`, and because
MQTT's `a/#` also matches `a` itself while NATS's `a.>` needs one more token, a filter
ending in `/#` adds its parent (`a/#` -> `t.a.>` and `t.a`). `#` alone is `t.>`.
"""

from __future__ import annotations

import re

_SAFE_LEVEL = re.compile(r"[A-Za-z0-9-]+\Z").match
_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_EMPTY = "_"
ORDINARY = "t"
DOLLAR = "d"


def encode_level(level: str) -> str:
    """One MQTT topic level as one NATS token."""
    if _SAFE_LEVEL(level):
        return level
    if not level:
        return _EMPTY
    out = []
    for char in level:
        if char in _SAFE_CHARS:
            out.append(char)
        else:
            out.extend(f"_{byte:02X}" for byte in char.encode())
    return "".join(out)


def decode_level(token: str) -> str:
    """The inverse of `encode_level`; ValueError for a token it cannot have produced."""
    if token == _EMPTY:
        return ""
    if "_" not in token:
        if not _SAFE_LEVEL(token):
            raise ValueError(f"not an encoded level: {token!r}")
        return token
    data = bytearray()
    index = 0
    length = len(token)
    while index < length:
        char = token[index]
        if char == "_":
            hex_digits = token[index + 1:index + 3]
            if len(hex_digits) != 2 or hex_digits.upper() != hex_digits:
                raise ValueError(f"bad escape in {token!r}")
            data.append(int(hex_digits, 16))
            index += 3
        elif char in _SAFE_CHARS:
            data.append(ord(char))
            index += 1
        else:
            raise ValueError(f"not an encoded level: {token!r}")
    return data.decode()


def topic_to_subject(topic: str, prefix: str) -> str:
    """`prefix.t.level...` or `prefix.d.level...` for a topic name."""
    kind = DOLLAR if topic[:1] == "$" else ORDINARY
    if "/" not in topic:
        return f"{prefix}.{kind}.{encode_level(topic)}"
    return f"{prefix}.{kind}." + ".".join(map(encode_level, topic.split("/")))


def subject_to_topic(subject: str, prefix: str) -> str:
    """The inverse of `topic_to_subject`."""
    head = prefix + "."
    if not subject.startswith(head):
        raise ValueError(f"{subject!r} is not under {prefix!r}")
    kind, _, rest = subject[len(head):].partition(".")
    if kind not in (ORDINARY, DOLLAR) or not rest:
        raise ValueError(f"{subject!r} has no topic kind")
    topic = "/".join(decode_level(token) for token in rest.split("."))
    if (kind == DOLLAR) != topic.startswith("$"):
        raise ValueError(f"{subject!r}: kind {kind} does not fit topic {topic!r}")
    return topic


def filter_to_subjects(topic_filter: str, prefix: str) -> tuple[str, ...]:
    """The NATS subjects that together match what the MQTT filter matches (one or two)."""
    levels = topic_filter.split("/")
    first = levels[0]
    kind = DOLLAR if first[:1] == "$" else ORDINARY
    tokens = ["*" if level == "+" else ">" if level == "#" else encode_level(level) for level in levels]
    head = f"{prefix}.{kind}"
    subject = head + "." + ".".join(tokens)
    if tokens[-1] != ">" or len(tokens) == 1:
        return (subject,)
    return (subject, head + "." + ".".join(tokens[:-1]))


def subject_to_filter(subject: str, prefix: str) -> str:
    """The MQTT filter of the first subject `filter_to_subjects` gives (for logs and tests)."""
    head = prefix + "."
    kind, _, rest = subject[len(head):].partition(".")
    return "/".join("+" if t == "*" else "#" if t == ">" else decode_level(t) for t in rest.split("."))


def encode_token(text: str) -> str:
    """Any string (a share name, a client id, a node id) as one NATS token."""
    return encode_level(text)
