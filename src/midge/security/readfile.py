"""Reading the files security options name (password, ACL and PSK files): one rule for
how they are read and for the error Mosquitto prints when one cannot be opened."""

from __future__ import annotations


def read_security_file(path: str, label: str, error: type[Exception]) -> str:
    """The file's text (bytes that are not UTF-8 kept as surrogates, so a line can still
    be named in an error), or `error("Unable to open LABEL "PATH": REASON")`."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise error(f"Unable to open {label} \"{path}\": {exc.strerror}") from exc
    return data.decode("utf-8", errors="surrogateescape")
