"""`user`: started as root, switch to an unprivileged user once the listeners are bound.

Mosquitto 2.0's rule: when started as root, drop to `user` (default `mosquitto`; when
that user does not exist, warn and use `nobody`; a `user` that is named but does not
exist is an error); `user root` keeps root, with a warning. midge does the same, in
this order (docs/operations.md tells operators the whole story):

1. As root, before the event loop: resolve the user; create a missing log file and give
   it to the user (so a SIGHUP after log rotation can reopen it); fork the *keeper*
   (server/keeper.py), a root process that will re-read the files the config names.
2. As root, in `Server.start()`: read the config's keys, certificates, CRLs, password,
   ACL and PSK files and load plugins; bind every listener (ports below 1024 too).
   (The cluster's TLS files and `.creds` file are read when the node joins NATS, after
   the switch, through the keeper: midge.files, as a reload reads keys.)
3. `switch(server)`, called once by the server after binding: import every module the
   broker may need later (the interpreter's files may be unreadable to the user: a
   Python installed in /root), set the user's groups, gid and uid, check that root
   cannot be regained, then route denied file reads to the keeper (midge.files).
4. As the user: open the persistence file, serve clients; SIGHUP and the TLS file
   watcher read files directly or, when denied, through the keeper.

Unlike Mosquitto 2.0, which switches before reading keys (so every key must be
`chown`ed to `mosquitto`), midge reads them as root, at start-up and on every reload.
What the user itself must be able to reach is checked right after the switch and
named in a warning: capath (OpenSSL reads it during each handshake), http_dir,
persistence_location and the log file.
"""

from __future__ import annotations

import importlib
import importlib.abc
import os
import pkgutil
import sys

#: Modules the broker imports lazily somewhere (or the stdlib imports lazily for it),
#: loaded before the switch. Every `midge` module is loaded too.
PRELOAD = (
    "encodings.idna", "encodings.punycode", "stringprep", "unicodedata",  # host names
    "syslog", "traceback", "linecache", "tokenize", "_strptime",
    "concurrent.futures.thread",  # asyncio's getaddrinfo executor
    "sqlite3", "zlib", "json", "mimetypes", "uuid", "secrets", "email.utils",
    "cryptography.x509.ocsp", "cryptography.hazmat.primitives.serialization",
    "cryptography.hazmat.primitives.asymmetric.ec", "cryptography.hazmat.primitives.asymmetric.rsa",
    "cryptography.hazmat.primitives.asymmetric.ed25519", "cryptography.hazmat.primitives.asymmetric.padding",
    "websockets.server", "websockets.http11", "websockets.frames", "websockets.protocol",
    "websockets.headers", "websockets.extensions.permessage_deflate", "websockets.asyncio.client",
    "uvloop",
)
#: The NATS client and what it imports lazily (nkeys signs with a `.creds` file's seed):
#: loaded only when the node joins a cluster, since a plain broker never needs them.
PRELOAD_CLUSTER = (
    "nats", "nats.aio.client", "nats.aio.msg", "nats.aio.subscription", "nats.aio.transport",
    "nats.errors", "nats.js", "nats.js.api", "nats.js.errors", "nats.js.client", "nats.js.manager",
    "nkeys", "nacl.signing", "urllib.parse",
)
_SKIP = ("midge.__main__",)


class PrivilegeError(Exception):
    """`user` cannot be honoured; the broker does not start."""


class PrivilegeSwitch:
    """The plan made from the config, and the switch itself (`switch(server)`)."""

    def __init__(self, requested: str, name: str | None = None, uid: int = 0, gid: int = 0,
                 notes: list[str] | None = None):
        self.requested = requested  # the `user` value
        self.name = name            # the user switched to; None: no switch
        self.uid = uid
        self.gid = gid
        self.notes = notes or []    # warnings found before the log existed
        self.keeper = None
        self.switched = False
        self.late_imports = None

    # -- 1. the plan, as root, before the event loop ----------------------------------

    @classmethod
    def plan(cls, config, euid: int | None = None) -> "PrivilegeSwitch":
        import pwd

        requested = getattr(config, "user", None) or "mosquitto"
        euid = os.geteuid() if euid is None else euid
        if euid != 0:
            return cls(requested)  # not root: nothing to switch (as Mosquitto)
        if requested == "root":
            return cls(requested, notes=[
                "Warning: running as root: `user root` keeps every privilege for the whole run. "
                "midge can switch to an unprivileged user after binding its ports and reading "
                "its keys; remove `user root` (default user mosquitto) or name another user."])
        notes = []
        try:
            entry = pwd.getpwnam(requested)
        except KeyError:
            if requested != "mosquitto":
                raise PrivilegeError(f"user {requested}: no such user; midge will not run as root "
                                     "in its place (create the user, or set `user` to an existing "
                                     "one)") from None
            try:
                entry = pwd.getpwnam("nobody")
            except KeyError:
                raise PrivilegeError("user mosquitto does not exist and neither does nobody: "
                                     "set `user` to an existing user") from None
            notes.append("Warning: user mosquitto does not exist; switching to nobody instead "
                         "(as Mosquitto does). Create a mosquitto system user, or set `user`.")
        return cls(requested, entry.pw_name, entry.pw_uid, entry.pw_gid, notes)

    def prepare_log_file(self, config) -> None:
        """Create a missing log file owned by the user, so it can reopen it on SIGHUP
        (logrotate's `nocreate` + reload). Only a file midge creates is given away."""
        path = getattr(config, "log_file", None)
        if self.name is None or not path or "file" not in (getattr(config, "log_dest", ()) or ()):
            return
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
        except OSError:
            return  # exists (its owner is the operator's business) or cannot be made: Log says so
        try:
            os.fchown(fd, self.uid, self.gid)
        finally:
            os.close(fd)

    def start_keeper(self, config_path: str | None, ports=(), verbose: bool = False) -> None:
        """Fork the root keeper (no thread or event loop may exist yet)."""
        if self.name is None or config_path is None:
            return
        from midge.server.keeper import FileKeeper

        self.keeper = FileKeeper.start(config_path, ports, verbose)

    # -- 3. the switch, called once by the server after binding --------------------------

    def __call__(self, server) -> None:
        self.switch(server)

    def switch(self, server) -> None:
        log = server.log
        for note in self.notes:
            log.warning(note)
        if self.name is None:
            return
        problems = preload(cluster=clustered(server.config))
        for problem in problems:
            log.warning(f"Warning: could not load {problem} before switching user; "
                        "midge may fail later where it needs it.")
        try:
            os.initgroups(self.name, self.gid)  # the user's groups (e.g. ssl-cert) too
            os.setresgid(self.gid, self.gid, self.gid)
            os.setresuid(self.uid, self.uid, self.uid)
        except OSError as exc:
            from midge.server.server import StartupError

            raise StartupError(f"user {self.name}: cannot switch to uid {self.uid} / gid {self.gid}: "
                               f"{exc.strerror or exc}") from None
        _check_no_way_back()
        self.switched = True
        if self.keeper is not None:
            from midge import files

            files.install(self.keeper)
        self.late_imports = LateImportWatch(log, self.name)
        sys.meta_path.insert(0, self.late_imports)
        keeper = (f"; root keeper process {self.keeper.pid} re-reads the files the config names "
                  "for SIGHUP and the TLS file watcher" if self.keeper is not None else "")
        log.notice(f"Switched to user {self.name} (uid {self.uid}, gid {self.gid}){keeper}.")
        for warning in reachability_warnings(server.config, self.name):
            log.warning(warning)


def clustered(config) -> bool:
    """Will this process join NATS (cluster_url, or a worker of `workers N`)?"""
    return bool(getattr(config, "cluster_url", None) or os.environ.get("MIDGE_CLUSTER_URL"))


def preload(cluster: bool = False) -> list[str]:
    """Import every midge module and PRELOAD (and PRELOAD_CLUSTER for a cluster node);
    return the names that failed."""
    import midge

    failed = []
    names = [info.name for info in pkgutil.walk_packages(midge.__path__, "midge.")
             if info.name not in _SKIP]
    for name in (*names, *PRELOAD, *(PRELOAD_CLUSTER if cluster else ())):
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - optional modules (uvloop) may be missing
            if not isinstance(exc, ModuleNotFoundError) or exc.name != name:
                failed.append(f"{name} ({exc!r})")
    import mimetypes

    mimetypes.init()  # reads /etc/mime.types once, now
    return failed


def _check_no_way_back() -> None:
    """After setresuid, root must be gone for good (saved set-user-ID included)."""
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise RuntimeError("switching user failed: the process could regain root")


class LateImportWatch(importlib.abc.MetaPathFinder):
    """Logs each module first imported after the switch: where the user cannot read the
    interpreter's files, that import fails, and the log says which module it was."""

    def __init__(self, log, user: str):
        self.log = log
        self.user = user
        self.seen: list[str] = []
        self._busy = False

    def find_spec(self, name, path=None, target=None):
        if not self._busy and name not in self.seen:
            self._busy = True
            try:
                self.seen.append(name)
                self.log.warning(f"Warning: module {name} is imported after the switch to user "
                                 f"{self.user}; if that user cannot read it the import fails "
                                 "(please report it: midge should load it before switching).")
            finally:
                self._busy = False
        return None


def reachability_warnings(config, user: str) -> list[str]:
    """What the user itself must reach at run time and cannot (call after the switch)."""
    warnings = []
    for listener in config.listeners:
        capath = getattr(listener, "capath", None)
        if capath and not os.access(capath, os.R_OK | os.X_OK):
            warnings.append(f"Warning: listener {listener.name}: capath {capath} is not readable by "
                            f"user {user}, and OpenSSL reads it during each handshake: client "
                            "certificates will not verify. Make it readable (chgrp, chmod g+rx) "
                            "or use cafile, which midge reads as root.")
        http_dir = getattr(listener, "http_dir", None)
        if http_dir and not os.access(http_dir, os.R_OK | os.X_OK):
            warnings.append(f"Warning: listener {listener.name}: http_dir {http_dir} is not readable "
                            f"by user {user}, who serves its files.")
    if getattr(config, "persistence", False):
        from midge.persist.store import store_path

        directory = os.path.dirname(os.path.abspath(store_path(config)))
        if not os.access(directory, os.W_OK | os.X_OK):
            warnings.append(f"Warning: persistence_location {directory} is not writable by user "
                            f"{user}, who writes the persistence file (as with Mosquitto): "
                            f"chown {user} {directory}")
    log_file = getattr(config, "log_file", None)
    if log_file and "file" in (getattr(config, "log_dest", ()) or ()):
        try:
            with open(log_file, "a"):
                pass
        except OSError as exc:
            warnings.append(f"Warning: log file {log_file} cannot be reopened by user {user} "
                            f"({exc.strerror}): midge keeps writing the file it opened as root, "
                            f"but a SIGHUP (log rotation) will fall back to stderr; chown {user} "
                            f"{log_file}")
    return warnings
