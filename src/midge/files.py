"""Reading the files a config names, also after the broker switched to `user`.

Started as root, midge reads its config, keys, certificates, CRLs and password/ACL/PSK
files as root, then switches to `user` (server/privileges.py). A SIGHUP reload or the
TLS file watcher reads them again later, as that user, who may not be allowed to
(`/etc/letsencrypt/live` is root-only). Every such read goes through this module: it
reads the file directly when it can, and otherwise asks the *keeper* installed with
`install()` (server/keeper.py: a root process forked before the switch that reads only
the files the root-owned config names). Nothing here imports sockets, so config/ and
security/ can use it.
"""

from __future__ import annotations

import contextlib
import os
import stat as stat_module

_keeper = None  # an object with read(path) -> bytes, listdir(path) -> list, stat(path) -> tuple


def install(keeper) -> None:
    """Route reads the process is denied to `keeper` (None: direct reads only)."""
    global _keeper
    _keeper = keeper


def keeper():
    return _keeper


def read_bytes(path) -> bytes:
    """The whole file; OSError as open() would raise it when even the keeper cannot."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except PermissionError:
        if _keeper is None:
            raise
        return _keeper.read(os.fspath(path))


def listdir(path) -> list[str]:
    try:
        return os.listdir(path)
    except PermissionError:
        if _keeper is None:
            raise
        return _keeper.listdir(os.fspath(path))


def signature(path) -> tuple:
    """(mtime_ns, size, inode, is_dir) of `path`; OSError when it cannot be seen."""
    try:
        st = os.stat(path)
    except PermissionError:
        if _keeper is None:
            raise
        return tuple(_keeper.stat(os.fspath(path)))
    return (st.st_mtime_ns, st.st_size, st.st_ino, stat_module.S_ISDIR(st.st_mode))


def is_dir(path) -> bool:
    try:
        return bool(signature(path)[3])
    except OSError:
        return False


def is_file(path) -> bool:
    try:
        return not signature(path)[3]
    except OSError:
        return False


def exists(path) -> bool:
    try:
        signature(path)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def openable(path):
    """A path OpenSSL can open for `path` (ssl's load_* functions take only paths).

    The path itself when this process can read the file; else a private in-memory
    copy of what the keeper read (`/proc/self/fd/N` of a memfd, gone on exit).
    """
    if path is None or _keeper is None:
        yield path
        return
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        pass
    except OSError:
        yield path  # missing etc.: let the caller's own error handling speak
        return
    else:
        yield path
        return
    data = _keeper.read(os.fspath(path))
    fd = os.memfd_create("midge-" + os.path.basename(os.fspath(path)), os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)
