"""Mosquitto password files: `user:$6$salt$hash` and `user:$7$iterations$salt$hash`.

The reader follows Mosquitto 2.0's broker (`pwfile__parse`, `pw__decode`): one bad
line drops that user only, a file that cannot be opened is an error. The writer side
(`hash_password`, `format_entry`) produces lines that `mosquitto_passwd` and the
mosquitto broker accept, so files move between the two in both directions.

`$6$`: SHA-512 over password bytes then salt bytes, once.
`$7$`: PBKDF2-HMAC-SHA512(password, salt, iterations, 64 bytes).
The salt is 12 random bytes; both fields are standard base64 with padding.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

from midge.security.readfile import read_security_file

SALT_LENGTH = 12
HASH_LENGTH = 64
MAX_FIELD_LENGTH = 65535

SHA512 = "sha512"
SHA512_PBKDF2 = "sha512-pbkdf2"
HASH_NAMES = (SHA512, SHA512_PBKDF2)

# mosquitto_passwd 2.0 uses 101 PBKDF2 rounds; OWASP's 2023 advice for
# PBKDF2-HMAC-SHA512 is 210000. midge writes the modern value and reads any count.
DEFAULT_ITERATIONS = 210_000
MOSQUITTO_ITERATIONS = 101


class PasswordFileError(Exception):
    """A password file cannot be read at all (a bad line only drops its user)."""


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """One stored hash; `line` is the text it came from (used to notice changes)."""

    kind: int  # 6 or 7
    iterations: int  # 1 for $6$
    salt: bytes
    digest: bytes
    line: str = ""

    def verify(self, password: bytes) -> bool:
        """Constant-time check of `password` against this hash."""
        return hmac.compare_digest(_digest(self.kind, password, self.salt, self.iterations), self.digest)


def _digest(kind: int, password: bytes, salt: bytes, iterations: int) -> bytes:
    if kind == 6:
        return hashlib.sha512(password + salt).digest()
    return hashlib.pbkdf2_hmac("sha512", password, salt, iterations, HASH_LENGTH)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def hash_password(password: bytes, hash_name: str = SHA512_PBKDF2, iterations: int = DEFAULT_ITERATIONS,
                  salt: bytes | None = None) -> str:
    """Return the hash field (`$7$...` or `$6$...`) for `password`."""
    if salt is None:
        salt = os.urandom(SALT_LENGTH)
    if hash_name == SHA512:
        return f"$6${_b64(salt)}${_b64(_digest(6, password, salt, 1))}"
    if hash_name == SHA512_PBKDF2:
        if iterations < 1:
            raise ValueError("iterations must be at least 1")
        return f"$7${iterations}${_b64(salt)}${_b64(_digest(7, password, salt, iterations))}"
    raise ValueError(f"unknown hash {hash_name!r}, expected one of {', '.join(HASH_NAMES)}")


def decode_hash(text: str) -> PasswordHash:
    """Parse a `$6$`/`$7$` field; ValueError says why it is not usable."""
    if text.startswith("$6$"):
        parts = text[3:].split("$")
        if len(parts) != 2:
            raise ValueError("expected $6$salt$hash")
        iterations, (salt_text, hash_text) = 1, parts
        kind = 6
    elif text.startswith("$7$"):
        parts = text[3:].split("$")
        if len(parts) != 3:
            raise ValueError("expected $7$iterations$salt$hash")
        iterations_text, salt_text, hash_text = parts
        if not iterations_text.isdigit() or int(iterations_text) < 1:
            raise ValueError(f"invalid iteration count {iterations_text!r}")
        iterations, kind = int(iterations_text), 7
    else:
        raise ValueError("unknown hash type (expected $6$ or $7$)")
    try:
        salt, digest = _unb64(salt_text), _unb64(hash_text)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ValueError("salt or hash is not valid base64") from None
    if len(salt) != SALT_LENGTH:
        raise ValueError(f"salt is {len(salt)} bytes, expected {SALT_LENGTH}")
    if len(digest) != HASH_LENGTH:
        raise ValueError(f"hash is {len(digest)} bytes, expected {HASH_LENGTH}")
    return PasswordHash(kind, iterations, salt, digest, text)


def split_line(line: str) -> tuple[str, str | None] | None:
    """Split a password/PSK file line like Mosquitto's `strtok(":")` does.

    Returns None for comments and lines to skip silently, else (name, value) where
    value is None when the line has a name but nothing after the colon.
    """
    line = line.rstrip("\r\n")
    if not line or line.startswith("#") or ":" not in line:
        return None
    fields = [f for f in line.split(":") if f]  # strtok skips empty fields
    if not fields:
        return None
    name = fields[0].strip()
    value = fields[1].strip() if len(fields) > 1 else None
    return name, value or None


def parse_passwords(text: str, source: str = "password file", log=None) -> dict[str, PasswordHash]:
    """Users and hashes from the text of a password file; bad lines are logged and dropped."""
    users: dict[str, PasswordHash] = {}
    for number, line in enumerate(text.splitlines(), 1):
        parsed = split_line(line)
        if parsed is None:
            continue
        username, field = parsed
        where = f"{source}:{number}"
        if not username:
            continue
        if len(username.encode()) > MAX_FIELD_LENGTH or (field and len(field) > MAX_FIELD_LENGTH):
            _warn(log, f"Warning: {where}: username or hash too long, ignoring this line.")
            continue
        if field is None:
            _warn(log, f"Warning: {where}: empty password for user {username}, ignoring this user.")
            continue
        try:
            users[username] = decode_hash(field)
        except ValueError as exc:
            _error(log, f"Error: {where}: invalid password hash for user {username}, removing entry: {exc}.")
    return users


def load_password_file(path: str, log=None) -> dict[str, PasswordHash]:
    """Read a password file; PasswordFileError if it cannot be opened or decoded."""
    return parse_passwords(read_security_file(path, "pwfile", PasswordFileError), path, log)


def _warn(log, message: str) -> None:
    if log is not None:
        log.warning(message)


def _error(log, message: str) -> None:
    if log is not None:
        log.error(message)
