"""Mosquitto's psk_file: `identity:hexkey` lines.

Lines are split like the password file (comments and lines without `:` are skipped,
both fields trimmed). Unlike the password file, one bad key refuses the whole file,
as Mosquitto does. An odd number of hex digits is accepted and padded with a leading
0 nibble (`abc` is the key 0a bc), which is what Mosquitto's BIGNUM conversion does.
"""

from __future__ import annotations

import string

from midge.security.passwords import split_line
from midge.security.readfile import read_security_file

HEX_DIGITS = frozenset(string.hexdigits)


class PskFileError(Exception):
    """The PSK file cannot be read or has a bad key (message names file:line)."""


def hex_to_key(text: str) -> bytes:
    """Mosquitto's hex-to-bytes conversion; ValueError for non-hex input."""
    if not text or not set(text) <= HEX_DIGITS:
        raise ValueError(f"invalid hex key {text!r}")
    if len(text) % 2:
        text = "0" + text
    return bytes.fromhex(text)


def parse_psk(text: str, source: str = "psk file") -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), 1):
        parsed = split_line(line)
        if parsed is None:
            continue
        identity, hexkey = parsed
        if hexkey is None:
            raise PskFileError(f"{source}:{number}: empty key for identity \"{identity}\".")
        try:
            keys[identity] = hex_to_key(hexkey)
        except ValueError:
            raise PskFileError(f"{source}:{number}: key for identity \"{identity}\" is not hexadecimal.") from None
    return keys


def load_psk_file(path: str) -> dict[str, bytes]:
    return parse_psk(read_security_file(path, "psk_file", PskFileError), path)
