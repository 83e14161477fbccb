"""`midge passwd`: mosquitto_passwd 2.0's command line, files and exit codes.

Differences, on purpose:
- PBKDF2 iterations default to 210000 (mosquitto_passwd: 101); `-I N` still chooses.
- Comment and blank lines are kept. mosquitto_passwd stops at them ("Corrupt password
  file") and, when adding a user, silently loses every entry after them.
- The file is rewritten atomically (temporary file in the same directory, then
  rename), keeping its mode; no `.backup` copy is left behind on failure.
- `-U` leaves lines that already hold a `$6$`/`$7$` hash alone instead of hashing
  the hash.
- `--help` exits 0.
"""

from __future__ import annotations

import os
import sys
import tempfile

from midge.security.passwords import (DEFAULT_ITERATIONS, HASH_NAMES, MAX_FIELD_LENGTH, SHA512_PBKDF2, decode_hash,
                                      hash_password)

USAGE = f"""\
midge passwd is a tool for managing password files for mosquitto and midge.

Usage: midge passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c | -D] passwordfile username
       midge passwd [-H sha512 | -H sha512-pbkdf2] [-I iterations] [-c] -b passwordfile username password
       midge passwd -U passwordfile
 -b : run in batch mode to allow passing passwords on the command line.
 -c : create a new password file. This will overwrite existing files.
 -D : delete the username rather than adding/updating its password.
 -H : specify the hashing algorithm. Defaults to sha512-pbkdf2, which is recommended.
      Mosquitto 1.6 and earlier defaulted to sha512.
 -I : number of PBKDF2 iterations for sha512-pbkdf2. Defaults to {DEFAULT_ITERATIONS}
      (OWASP's advice for PBKDF2-HMAC-SHA512); mosquitto_passwd uses 101.
 -U : update a plain text password file to use hashed passwords.

Files are interchangeable with mosquitto_passwd's. Comment and blank lines are kept.
"""


class PasswdError(Exception):
    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _error(message: str, code: int = 1) -> int:
    print(message, file=sys.stderr)
    return code


def _usage(code: int = 1) -> int:
    print(USAGE, end="")
    return code


def _check_username(username: str) -> None:
    if ":" in username:
        raise PasswdError("Error: Username must not contain the ':' character.")
    if any(ord(c) < 32 or ord(c) == 127 for c in username):
        raise PasswdError("Error: Username must not contain control characters.")
    if len(username.encode("utf-8", "surrogateescape")) > MAX_FIELD_LENGTH:
        raise PasswdError("Error: Username must be less than 65536 characters long.")


def _check_password(password: str) -> None:
    if len(password.encode("utf-8", "surrogateescape")) > MAX_FIELD_LENGTH:
        raise PasswdError("Error: Password must be less than 65536 characters long.")


def _read_line(prompt: str) -> str:
    """Prompt on stdout and read one line, without echo when stdin is a terminal."""
    if not sys.stdin.isatty():
        sys.stdout.write(prompt)
        sys.stdout.flush()
        return sys.stdin.readline().rstrip("\r\n")
    import termios

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    new = termios.tcgetattr(fd)
    new[3] &= ~termios.ECHO
    # Echo goes off before the prompt appears, so nothing typed after it is lost.
    termios.tcsetattr(fd, termios.TCSAFLUSH, new)
    try:
        sys.stdout.write(prompt)
        sys.stdout.flush()
        line = sys.stdin.readline()
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)
    return line.rstrip("\r\n")


def _prompt_password() -> str:
    first = _read_line("Password: ")
    if not first:
        raise PasswdError("Error: Empty password.")
    print()
    second = _read_line("Reenter password: ")
    if not second:
        raise PasswdError("Error: Empty password.")
    print()
    if first != second:
        raise PasswdError("Error: Passwords do not match.", 2)
    _check_password(first)
    return first


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _read_file(path: str) -> list[str]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise PasswdError(f"Error: Unable to open password file {path}. {exc.strerror}.") from exc
    return data.decode("utf-8", "surrogateescape").splitlines()


def _write_atomically(path: str, lines: list[str]) -> None:
    """Write `lines` to a temporary file beside `path` and rename it over `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        fd, tmp = tempfile.mkstemp(prefix=".midge-passwd-", dir=directory)
    except OSError as exc:
        raise PasswdError(f"Error: Unable to open file {path} for writing. {exc.strerror}.") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"".join(_encode(line) + b"\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise PasswdError(f"Error: Unable to open file {path} for writing. {exc.strerror}.") from exc


def _line_user(line: str) -> str | None:
    """The username of a `user:hash` line; None for comments, blanks and other lines."""
    if not line.strip() or line.lstrip().startswith("#") or ":" not in line:
        return None
    return line.split(":", 1)[0].strip()


def _set_user(lines: list[str], username: str, entry: str) -> list[str]:
    """Replace the user's line in place (every copy), or append it."""
    out, found = [], False
    for line in lines:
        if _line_user(line) == username:
            if not found:
                out.append(entry)
                found = True
            continue
        out.append(line)
    if not found:
        out.append(entry)
    return out


def _hash(password: str, hash_name: str, iterations: int) -> str:
    return hash_password(_encode(password), hash_name, iterations)


def _update_plaintext(lines: list[str], hash_name: str, iterations: int) -> list[str]:
    out = []
    for line in lines:
        user = _line_user(line)
        if user is None:
            out.append(line)
            continue
        password = line.split(":", 1)[1]
        try:
            decode_hash(password.strip())
            out.append(line)  # already hashed
            continue
        except ValueError:
            pass
        out.append(f"{user}:{_hash(password, hash_name, iterations)}")
    return out


def run(argv: list[str]) -> int:
    if not argv:
        return _usage()
    if argv[0] in ("-h", "--help"):
        return _usage(0)
    create = delete = batch = update = False
    hash_name, iterations = SHA512_PBKDF2, DEFAULT_ITERATIONS
    idx = 0
    while idx < len(argv):
        arg = argv[idx]
        if arg == "-c":
            create = True
        elif arg == "-D":
            delete = True
        elif arg == "-b":
            batch = True
        elif arg == "-U":
            update = True
        elif arg == "-H":
            if idx + 1 >= len(argv):
                return _error("Error: -H argument given but not enough other arguments.")
            hash_name = argv[idx + 1]
            if hash_name not in HASH_NAMES:
                return _error(f"Error: Unknown hash type '{hash_name}'")
            idx += 1
        elif arg == "-I":
            if idx + 1 >= len(argv):
                return _error("Error: -I argument given but not enough other arguments.")
            try:
                iterations = int(argv[idx + 1])
            except ValueError:
                iterations = 0
            if iterations < 1:
                return _error("Error: Number of iterations must be > 0.")
            idx += 1
        else:
            break
        idx += 1
    rest = argv[idx:]

    if create and delete:
        return _error("Error: -c and -D cannot be used together.")
    if create and update:
        return _error("Error: -c and -U cannot be used together.")
    if delete and update:
        return _error("Error: -D and -U cannot be used together.")
    if delete and batch:
        return _error("Error: -b and -D cannot be used together.")

    password: str | None = None
    if create:
        if batch:
            if len(rest) < 3:
                return _error("Error: -c argument given but password file, username, or password missing.")
        elif len(rest) < 2:
            return _error("Error: -c argument given but password file or username missing.")
    elif delete:
        if len(rest) < 2:
            return _error("Error: -D argument given but password file or username missing.")
    elif update:
        if len(rest) != 1:
            return _error("Error: -U argument given but password file missing.")
    elif batch:
        if len(rest) != 3:
            return _usage()
    elif len(rest) != 2:
        return _usage()

    path = rest[0]
    if update:
        _write_atomically(path, _update_plaintext(_read_file(path), hash_name, iterations))
        return 0
    username = rest[1]
    _check_username(username)
    if batch:
        password = rest[2]
        _check_password(password)

    if create:
        if password is None:
            password = _prompt_password()
        _write_atomically(path, [f"{username}:{_hash(password, hash_name, iterations)}"])
        return 0
    lines = _read_file(path)
    if delete:
        kept = [line for line in lines if _line_user(line) != username]
        if len(kept) == len(lines):
            return _error(f"Warning: User {username} not found in password file.")
        _write_atomically(path, kept)
        return 0
    if password is None:
        password = _prompt_password()
    _write_atomically(path, _set_user(lines, username, f"{username}:{_hash(password, hash_name, iterations)}"))
    return 0


def main(argv: list[str]) -> int:
    try:
        return run(argv)
    except PasswdError as exc:
        return _error(str(exc), exc.code)
    except KeyboardInterrupt:
        print()
        return 1
