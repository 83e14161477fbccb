"""Password file format: $6$ / $7$ hashes and Mosquitto's line rules (reference 5.1)."""

from __future__ import annotations

import base64
import hashlib
import subprocess

import pytest

from midge.security.passwords import (PasswordFileError, decode_hash, hash_password, load_password_file,
                                      parse_passwords)
from tests.peers import require_peer

SALT = bytes(range(12))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_sha512_is_password_then_salt_once():
    line = hash_password(b"secret", "sha512", salt=SALT)
    assert line == f"$6${b64(SALT)}${b64(hashlib.sha512(b'secret' + SALT).digest())}"
    assert decode_hash(line).verify(b"secret")
    assert not decode_hash(line).verify(b"Secret")


def test_pbkdf2_records_iterations():
    line = hash_password(b"secret", iterations=7, salt=SALT)
    expected = hashlib.pbkdf2_hmac("sha512", b"secret", SALT, 7, 64)
    assert line == f"$7$7${b64(SALT)}${b64(expected)}"
    entry = decode_hash(line)
    assert (entry.kind, entry.iterations) == (7, 7)
    assert entry.verify(b"secret") and not entry.verify(b"secret2")


def test_default_is_pbkdf2_with_modern_iterations():
    assert hash_password(b"x").startswith("$7$210000$")


@pytest.mark.parametrize("field, why", [
    ("$5$abc$def", "unknown hash type"),
    ("plaintext", "unknown hash type"),
    (f"$6${b64(bytes(11))}${b64(bytes(64))}", "salt is 11 bytes"),
    (f"$6${b64(SALT)}${b64(bytes(63))}", "hash is 63 bytes"),
    (f"$7$0${b64(SALT)}${b64(bytes(64))}", "invalid iteration count"),
    (f"$7$-1${b64(SALT)}${b64(bytes(64))}", "invalid iteration count"),
    (f"$7$x${b64(SALT)}${b64(bytes(64))}", "invalid iteration count"),
    ("$6$!!!!$????", "not valid base64"),
    (f"$7${b64(SALT)}${b64(bytes(64))}", "expected $7$iterations$salt$hash"),
])
def test_bad_hashes_are_refused(field, why):
    with pytest.raises(ValueError, match=why.replace("$", r"\$")):
        decode_hash(field)


def test_line_rules_bad_lines_drop_only_their_user(log):
    good = hash_password(b"pw", iterations=3)
    text = "\n".join([
        "# a comment",
        "",
        "no colon here",
        f"alice:{good}",
        "empty:",
        "broken:$6$short$short",
        f"  bob  :  {good}  ",
        f"carol:{good}\r",
        f"dave::{good}",  # strtok skips the empty field
        f":eve:{good}",  # ... also a leading one (all three checked against mosquitto 2.0.11)
    ])
    users = parse_passwords(text, "pw", log)
    assert sorted(users) == ["alice", "bob", "carol", "dave", "eve"]
    assert "pw:5" in log.text() and "empty" in log.text()
    assert "pw:6" in log.text() and "broken" in log.text()
    assert all(users[u].verify(b"pw") for u in users)


def test_duplicate_user_last_line_wins(log):
    # Checked against mosquitto 2.0.11: with two lines for `u`, the second password works.
    text = f"u:{hash_password(b'one', iterations=2)}\nu:{hash_password(b'two', iterations=2)}\n"
    assert parse_passwords(text, log=log)["u"].verify(b"two")


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(PasswordFileError, match="Unable to open pwfile"):
        load_password_file(str(tmp_path / "nope"))


def test_file_written_by_mosquitto_passwd_verifies(tmp_path, log):
    tool = require_peer("mosquitto_passwd")
    path = tmp_path / "pw"
    subprocess.run([tool, "-c", "-b", path, "p7", "seven"], check=True)
    subprocess.run([tool, "-H", "sha512", "-b", path, "p6", "six"], check=True)
    subprocess.run([tool, "-I", "1000", "-b", path, "p1000", "thousand"], check=True)
    users = load_password_file(str(path), log)
    assert users["p7"].verify(b"seven") and users["p7"].iterations == 101
    assert users["p6"].verify(b"six") and users["p6"].kind == 6
    assert users["p1000"].verify(b"thousand") and users["p1000"].iterations == 1000
    assert not users["p7"].verify(b"six")
    assert log.lines == []
