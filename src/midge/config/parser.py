"""mosquitto.conf -> Config, following Mosquitto 2.0's parser (src/conf.c) line by line.

The syntax rules are Mosquitto's: a comment is a line whose first character is `#`;
the option name ends at the first space; string options take the rest of the line,
trimmed; scope is positional (`listener`, `connection`). Where Mosquitto silently does
something surprising (atoi on junk, a `# comment` glued to a path, certfile without
keyfile serving plaintext, include_dir ignored in included files), midge refuses with a
message that says what to write instead. `docs/configuration.md` lists the differences.

The reader keeps going after an error so `midge check` can report every problem at
once; `load_config` raises the first.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field

from midge import files
from midge.config import options as opts
from midge.config.errors import ConfigError
from midge.config.model import (
    BridgeConfig,
    BridgeTopic,
    Config,
    ListenerConfig,
    PluginConfig,
    SecurityConfig,
)

INT_RE = re.compile(r"[+-]?\d+\Z")
EXPIRATION_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400, "m": 30 * 86400, "y": 365 * 86400}
C_PLUGIN_SUFFIXES = opts.C_PLUGIN_SUFFIXES
CLUSTER_URL_RE = re.compile(r"(?:nats|tls)://(?:[^@/\s]+@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})")
ALL_LOG_TYPES = frozenset(t for t in opts.LOG_TYPES if t not in ("none", "all"))
PATH_COMMENT_RE = re.compile(r"\s#")


@dataclass
class ReadResult:
    """Everything one read of a config produced. With errors, `config` is what could be
    read (for `midge check` to inspect further), not a config to run."""

    config: Config
    errors: list[ConfigError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # (options.MIDGE_ONLY | options.DIFFERS, `file:line: option: ...`) per line, for
    # `midge check`: what a move back to Mosquitto 2.0 would meet.
    portability: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


class _FileScope:
    """Per-file position state: Mosquitto resets the current listener, bridge and plugin
    at the start of every file it reads (included files too)."""

    def __init__(self, default_listener: ListenerConfig):
        self.listener = default_listener
        self.bridge: BridgeConfig | None = None
        self.plugin: PluginConfig | None = None


class _LineError(Exception):
    """Raised inside a handler; turned into a ConfigError at the line being read."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.message = message
        self.option = option


class Reader:
    def __init__(self, ports=(), verbose: bool = False, auto_ports: bool = False):
        self.config = Config()
        self.ports = list(ports or ())
        self.verbose = verbose
        # `listener auto [ADDRESS]`: a free TCP port picked when the socket is bound. Only
        # the embedding API (midge.Broker) turns it on; mosquitto.conf files keep
        # Mosquitto's syntax, where `listener 0 PATH` is a Unix socket.
        self.auto_ports = auto_ports
        self.errors: list[ConfigError] = []
        self.warnings: list[str] = []
        self.portability: list[tuple[str, str]] = []
        self.default_listener = ListenerConfig()
        self.default_listener.origin = ("", 0)
        self.default_listener_used = False
        self.default_listener_port_given = False
        self.first_security_option: tuple[str, int, str] | None = None
        self.listener_keys: dict[tuple, tuple[str, int]] = {}
        self.bridge_names: dict[str, tuple[str, int]] = {}
        self.log_dest: set[str] | None = None   # None until a log_dest line is seen
        self.log_type: set[str] | None = None
        self.log_file_origin: tuple[str, int] | None = None
        # Where the current line is, for messages.
        self.file = ""
        self.line = 0

    # ---- reading ----

    def read_path(self, path: str, main: bool = True) -> None:
        try:
            data = files.read_bytes(path)  # after the switch to `user`: via the root keeper
        except OSError as exc:
            where = (self.file, self.line) if not main else (None, 0)
            if main:
                self._error(f"cannot open config file: {exc.strerror}", "", file=path, line=0)
            else:
                self._error(f"cannot open {path}: {exc.strerror}", "include_dir",
                            file=where[0], line=where[1])
            return
        self.read_bytes(data, path, main)

    def read_bytes(self, data: bytes, name: str, main: bool = True) -> None:
        self.config.files.append(name)
        scope = _FileScope(self.default_listener)
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        for number, raw in enumerate(lines, 1):
            self.file, self.line = name, number
            try:
                self._read_line(raw, scope, main)
            except _LineError as exc:
                self._error(exc.message, exc.option or "")
        self.file, self.line = "", 0

    def _read_line(self, raw: bytes, scope: _FileScope, main: bool) -> None:
        raw = raw.rstrip(b"\r\n")
        if not raw or raw[:1] == b"#":
            return
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _LineError("the line is not valid UTF-8", option="") from None
        if not line.strip():
            return
        stripped = line.lstrip(" ")
        if stripped.startswith("#"):
            raise _LineError("a comment must start at the first character of the line "
                             "(Mosquitto refuses an indented '#' too); remove the leading spaces",
                             option="#")
        name, _, rest = stripped.partition(" ")
        if "\t" in name:
            first = name.split("\t", 1)[0]
            if opts.lookup(first) is not None:
                raise _LineError("a tab separates the option name from its value; Mosquitto "
                                 "only accepts spaces there (it reports 'Unknown configuration "
                                 "variable'); use a space", option=first)
        written = name
        if name == "keyform":
            self._warn("keyform is not a Mosquitto option (it is a client flag); "
                       "read as tls_keyform", option="keyform")
            name = "tls_keyform"
        opt = opts.lookup(name)
        if opt is None:
            close = difflib.get_close_matches(name, opts.known_names(), n=1, cutoff=0.75)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise _LineError(f"unknown option{hint}", option=name)
        note = opts.portability(opt, written, rest.strip())
        if note is not None:
            self.portability.append((note[0], str(ConfigError(note[1], self.file, self.line, written))))
        self._handle(opt, name, rest.strip(), scope, main)

    # ---- one option ----

    def _handle(self, opt: opts.Option, written: str, value: str, scope: _FileScope, main: bool) -> None:
        name = opt.name
        if not opt.implemented:
            # Report, then keep parsing the value so the rest of the file is still checked.
            self._error(opts.NOT_IMPLEMENTED[name], written)
        if name in opts.SECURITY_ORDERED and self.first_security_option is None:
            self.first_security_option = (self.file, self.line, written)
        handler = getattr(self, "_opt_" + re.sub(r"\W", "_", name), None)
        if handler is not None:
            handler(opt, written, value, scope, main)
            return
        target = self._target(opt, written, scope)
        parsed = self._parse_value(opt, written, value)
        self._store(target, opt, written, parsed)

    def _store(self, target, opt: opts.Option, written: str, parsed) -> None:
        if opt.kind in (opts.STRING, opts.PATH) and not opt.repeatable and opt.name in target.origins:
            file, line = target.origins[opt.name]
            raise _LineError(f"duplicate value: already set at {file}:{line}; give it once "
                             "(Mosquitto refuses this too)", written)
        setattr(target, opt.attr, parsed)
        target.origins[opt.name] = (self.file, self.line)

    def _target(self, opt: opts.Option, written: str, scope: _FileScope):
        if opt.scope == opts.GLOBAL:
            return self.config
        if opt.scope == opts.LISTENER:
            if opt.name in ("port", "bind_address"):
                self.default_listener_used = True
                self.default_listener_port_given = True
                self.config.local_only = False
                return self.default_listener
            if scope.listener is self.default_listener:
                if opt.name == "mount_point":
                    raise _LineError("needs a listener: put a `listener` line before it", written)
                self.default_listener_used = True
            return scope.listener
        if opt.scope == opts.SECURITY:
            return self._security(scope)
        if opt.scope == opts.BRIDGE:
            if scope.bridge is None:
                raise _LineError("only valid in a bridge: put it after a `connection NAME` line "
                                 "(Mosquitto: 'Invalid bridge configuration')", written)
            return scope.bridge
        raise AssertionError(opt.scope)

    def _security(self, scope: _FileScope) -> SecurityConfig:
        if self.config.per_listener_settings:
            if scope.listener is self.default_listener:
                self.default_listener_used = True
            return scope.listener.security
        return self.config.security

    # ---- value parsing ----

    def _parse_value(self, opt: opts.Option, written: str, value: str):
        kind = opt.kind
        if kind in (opts.STRING, opts.PATH):
            return self._string(opt, written, value)
        token = self._single_token(written, value)
        if kind == opts.BOOL:
            flag = self._bool(written, token)
            reason = opts.NOT_IMPLEMENTED_VALUES.get((opt.name, "true" if flag else "false"))
            if reason:
                self._error(reason, written)
            return flag
        if kind == opts.INT:
            return self._int(opt, written, token)
        if kind == opts.FLOAT:
            return self._float(opt, written, token)
        if kind == opts.CHOICE:
            reason = opts.NOT_IMPLEMENTED_VALUES.get((opt.name, token))
            if reason:
                self._error(reason, written)
            if token not in opt.choices:
                raise _LineError(f"invalid value {token!r}: expected one of "
                                 f"{', '.join(opt.choices)}", written)
            return token
        raise AssertionError(kind)

    def _single_token(self, written: str, value: str) -> str:
        tokens = value.split()
        if not tokens:
            raise _LineError("empty value", written)
        if len(tokens) > 1 and not tokens[1].startswith("#"):
            raise _LineError(f"unexpected text after the value: {' '.join(tokens[1:])!r} "
                             "(Mosquitto ignores it silently); expected a single value", written)
        return tokens[0]

    def _bool(self, written: str, token: str) -> bool:
        if token in ("true", "1"):
            return True
        if token in ("false", "0"):
            return False
        raise _LineError(f"invalid boolean {token!r}: expected true or false (or 1 or 0)", written)

    def _int(self, opt: opts.Option, written: str, token: str) -> int:
        if not INT_RE.match(token):
            raise _LineError(f"invalid integer {token!r} (Mosquitto would read it as "
                             f"{_atoi(token)}); expected a whole number", written)
        number = int(token)
        if opt.name == "max_connections" and number < 0:
            return -1
        if opt.name == "max_keepalive" and number == 0:
            return 0
        self._check_range(opt, written, number)
        return number

    def _float(self, opt: opts.Option, written: str, token: str) -> float:
        try:
            number = float(token)
        except ValueError:
            raise _LineError(f"invalid number {token!r}: expected a number of seconds, e.g. 2.5",
                             written) from None
        if not math.isfinite(number):
            raise _LineError(f"invalid number {token!r}: expected a finite number", written)
        self._check_range(opt, written, number)
        return number

    @staticmethod
    def _check_range(opt: opts.Option, written: str, number) -> None:
        low, high = opt.minimum, opt.maximum
        if (low is not None and number < low) or (high is not None and number > high):
            if low is not None and high is not None:
                expected = f"between {_num(low)} and {_num(high)}"
            elif low is not None:
                expected = f"at least {_num(low)}"
            else:
                expected = f"at most {_num(high)}"
            raise _LineError(f"invalid value {_num(number)}: expected {expected}", written)

    def _string(self, opt: opts.Option, written: str, value: str) -> str:
        if not value:
            raise _LineError("empty value", written)
        if PATH_COMMENT_RE.search(value):
            if opt.kind == opts.PATH:
                raise _LineError(f"the value {value!r} contains ' #': Mosquitto does not strip "
                                 "comments after values and would use it all as the path; put "
                                 "the comment on its own line", written)
            self._warn(f"the value {value!r} contains ' #': it is part of the value "
                       "(comments are only whole lines)", written)
        return value

    # ---- special options ----

    def _opt_listener(self, opt, written, value, scope, main) -> None:
        tokens = _strip_comment(value.split())
        if not tokens:
            raise _LineError("missing port: expected `listener PORT [BIND_ADDRESS|UNIX_PATH]`", written)
        if len(tokens) > 2:
            raise _LineError(f"unexpected text {' '.join(tokens[2:])!r}: expected "
                             "`listener PORT [BIND_ADDRESS|UNIX_PATH]`", written)
        host = tokens[1] if len(tokens) > 1 else None
        if tokens[0] == "auto" and self.auto_ports:
            listener = ListenerConfig(port=0, bind_address=host, auto_port=True)
            listener.origin = (self.file, self.line)
            self.config.listeners.append(listener)
            self.config.local_only = False
            scope.listener = listener
            return
        port = self._port(written, tokens[0], allow_zero=True)
        listener = ListenerConfig(port=port)
        listener.origin = (self.file, self.line)
        if port == 0:
            if not host:
                raise _LineError("port 0 needs a Unix socket path: `listener 0 /path/to/socket`",
                                 written)
            listener.path = host
        else:
            listener.bind_address = host
        key = (port, host)
        if key in self.listener_keys:
            file, line = self.listener_keys[key]
            raise _LineError(f"listener {' '.join(tokens)} is already defined at {file}:{line}",
                             written)
        self.listener_keys[key] = listener.origin
        self.config.listeners.append(listener)
        self.config.local_only = False
        scope.listener = listener

    def _opt_port(self, opt, written, value, scope, main) -> None:
        token = self._single_token(written, value)
        target = self._target(opt, written, scope)
        target.port = self._port(written, token, allow_zero=False)
        target.origins["port"] = (self.file, self.line)

    def _port(self, written: str, token: str, allow_zero: bool) -> int:
        if not INT_RE.match(token):
            raise _LineError(f"invalid port {token!r}: expected a number from 1 to 65535", written)
        port = int(token)
        if not (0 if allow_zero else 1) <= port <= 65535:
            raise _LineError(f"invalid port {port}: expected 1 to 65535"
                             + (" (or 0 with a Unix socket path)" if allow_zero else ""), written)
        return port

    def _opt_include_dir(self, opt, written, value, scope, main) -> None:
        directory = self._string(opt, written, value) if value else ""
        if not directory:
            raise _LineError("empty value: expected a directory", written)
        if not main:
            raise _LineError("only allowed in the main config file (Mosquitto silently ignores "
                             "it in included files); move it to the main file", written)
        self.config.include_dirs.append(directory)
        try:
            names = sorted(n for n in files.listdir(directory) if n.endswith(".conf"))
        except OSError as exc:
            raise _LineError(f"cannot read directory {directory}: {exc.strerror}", written) from None
        here = (self.file, self.line)
        for name in names:
            path = os.path.join(directory, name)
            if files.is_file(path):
                self.read_path(path, main=False)
        self.file, self.line = here

    def _opt_retry_interval(self, opt, written, value, scope, main) -> None:
        self._warn("obsolete option, ignored (as Mosquitto does)", written)

    def _opt_persistent_client_expiration(self, opt, written, value, scope, main) -> None:
        token = self._single_token(written, value)
        match = re.fullmatch(r"(\d+)([hdwmy])", token)
        if not match or int(match.group(1)) <= 0:
            raise _LineError(f"invalid duration {token!r}: expected a positive number followed "
                             "by h, d, w, m or y (e.g. 14d)", written)
        self.config.persistent_client_expiration = int(match.group(1)) * EXPIRATION_UNITS[match.group(2)]
        self.config.origins[opt.name] = (self.file, self.line)

    def _opt_cluster_url(self, opt, written, value, scope, main) -> None:
        token = self._single_token(written, value)
        match = CLUSTER_URL_RE.fullmatch(token)
        if not match:
            raise _LineError(f"invalid URL {token!r}: expected nats://HOST:PORT or tls://HOST:PORT "
                             "(user:password@ allowed before the host)", written)
        port = int(match.group("port"))
        if not 1 <= port <= 65535:
            raise _LineError(f"invalid port {port} in {token!r}: expected 1 to 65535", written)
        self.config.cluster_url.append(token)
        self.config.origins[opt.name] = (self.file, self.line)

    def _opt_cluster_name(self, opt, written, value, scope, main) -> None:
        token = self._single_token(written, value)
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", token):
            raise _LineError(f"invalid name {token!r}: expected 1 to 64 letters, digits, - or _ "
                             "(it names NATS subjects and JetStream streams)", written)
        self.config.cluster_name = token
        self.config.origins[opt.name] = (self.file, self.line)

    def _opt_cluster_node_id(self, opt, written, value, scope, main) -> None:
        token = self._single_token(written, value)
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", token):
            raise _LineError(f"invalid node id {token!r}: expected 1 to 128 letters, digits, "
                             "., - or _", written)
        self.config.cluster_node_id = token
        self.config.origins[opt.name] = (self.file, self.line)

    def _opt_log_dest(self, opt, written, value, scope, main) -> None:
        dest, _, rest = value.partition(" ")
        rest = rest.strip()
        if not dest:
            raise _LineError(f"empty value: expected one of {', '.join(opts.LOG_DESTS)}", written)
        if dest not in opts.LOG_DESTS:
            raise _LineError(f"invalid value {dest!r}: expected one of "
                             f"{', '.join(opts.LOG_DESTS)}", written)
        if self.log_dest is None:
            self.log_dest = set()
        self.config.origins[opt.name] = (self.file, self.line)
        if dest == "file":
            if not rest:
                raise _LineError("missing path: expected `log_dest file PATH`", written)
            if self.log_file_origin is not None:
                file, line = self.log_file_origin
                raise _LineError(f"only one log file is allowed; one is already set at {file}:{line}",
                                 written)
            path = self._string(opts.BY_NAME["pid_file"], written, rest)
            self.config.log_file = path
            self.log_file_origin = (self.file, self.line)
            self.log_dest.add("file")
            return
        if rest and not rest.startswith("#"):
            raise _LineError(f"unexpected text after {dest}: {rest!r}", written)
        reason = opts.NOT_IMPLEMENTED_VALUES.get((opt.name, dest))
        if reason:
            self._error(reason, written)
        if dest == "none":
            self.log_dest.clear()
            self.config.log_file = None
            self.log_file_origin = None
        else:
            self.log_dest.add(dest)

    def _opt_log_type(self, opt, written, value, scope, main) -> None:
        tokens = _strip_comment(value.split())
        if not tokens:
            # Mosquitto logs an error for this but carries on.
            self._warn("empty value, ignored", written)
            return
        if len(tokens) > 1:
            raise _LineError(f"unexpected text after {tokens[0]}: {' '.join(tokens[1:])!r} "
                             "(give one log_type per line)", written)
        kind = tokens[0]
        if kind not in opts.LOG_TYPES:
            raise _LineError(f"invalid value {kind!r}: expected one of {', '.join(opts.LOG_TYPES)}",
                             written)
        if self.log_type is None:
            self.log_type = set()
        self.config.origins[opt.name] = (self.file, self.line)
        if kind == "none":
            self.log_type.clear()
        elif kind == "all":
            self.log_type.update(ALL_LOG_TYPES)
        else:
            self.log_type.add(kind)

    def _opt_per_listener_settings(self, opt, written, value, scope, main) -> None:
        if self.first_security_option is not None:
            file, line, first = self.first_security_option
            raise _LineError("must be set before any other security option "
                             f"({first} at {file}:{line}); move it up (Mosquitto refuses this too)",
                             written)
        self.config.per_listener_settings = self._bool(written, self._single_token(written, value))
        self.config.origins[opt.name] = (self.file, self.line)

    def _opt_plugin(self, opt, written, value, scope, main) -> None:
        path = self._string(opts.BY_NAME["pid_file"], written, value)
        if path.endswith(C_PLUGIN_SUFFIXES):
            self._error(opts.NOT_IMPLEMENTED_VALUES[("plugin", ".so")], written)
        security = self._security(scope)
        plugin = PluginConfig(path=path, origin=(self.file, self.line))
        security.plugins.append(plugin)
        security.origins.setdefault("plugin", (self.file, self.line))
        scope.plugin = plugin

    def _opt_plugin_opt__(self, opt, written, value, scope, main) -> None:
        prefix = "plugin_opt_" if written.startswith("plugin_opt_") else "auth_opt_"
        key = written[len(prefix):]
        if not key:
            raise _LineError(f"missing option name: expected `{prefix}NAME VALUE`", written)
        if scope.plugin is None:
            raise _LineError("no plugin to apply it to: put it after a `plugin` line", written)
        if not value:
            raise _LineError("empty value", written)
        scope.plugin.options[key] = value

    def _opt_auth_plugin_deny_special_chars(self, opt, written, value, scope, main) -> None:
        flag = self._bool(written, self._single_token(written, value))
        if scope.plugin is None:
            raise _LineError("no plugin to apply it to: put it after a `plugin` line", written)
        scope.plugin.deny_special_chars = flag
        security = self._security(scope)
        security.auth_plugin_deny_special_chars = flag
        security.origins[opt.name] = (self.file, self.line)

    def _opt_connection(self, opt, written, value, scope, main) -> None:
        tokens = _strip_comment(value.split())
        if len(tokens) != 1:
            raise _LineError("expected `connection NAME` (one word)", written)
        name = tokens[0]
        if name in self.bridge_names:
            file, line = self.bridge_names[name]
            raise _LineError(f"duplicate bridge name {name!r}: already used at {file}:{line}",
                             written)
        self.bridge_names[name] = (self.file, self.line)
        bridge = BridgeConfig(name=name)
        bridge.origin = (self.file, self.line)
        self.config.bridges.append(bridge)
        scope.bridge = bridge

    def _opt_address(self, opt, written, value, scope, main) -> None:
        bridge = self._target(opt, written, scope)
        if bridge.address:
            file, line = bridge.origins["address"]
            raise _LineError(f"already given at {file}:{line}; list every address on one line",
                             written)
        tokens = _strip_comment(value.split())
        if not tokens:
            raise _LineError("empty value: expected HOST[:PORT] ...", written)
        addresses = []
        for token in tokens:
            host, sep, port_text = token.rpartition(":")
            if not sep:
                host, port = token, 1883
            else:
                if not host:
                    raise _LineError(f"invalid address {token!r}: expected HOST[:PORT]", written)
                port = self._port(written, port_text, allow_zero=False)
            addresses.append((host, port))
        bridge.address = addresses
        bridge.origins["address"] = (self.file, self.line)

    def _opt_topic(self, opt, written, value, scope, main) -> None:
        bridge = self._target(opt, written, scope)
        tokens = value.split()  # no comment stripping: `topic # both 2` is the classic line
        usage = "expected `topic PATTERN [[[out|in|both] QOS] LOCAL_PREFIX REMOTE_PREFIX]`"
        if not tokens:
            raise _LineError(f"empty value: {usage}", written)
        if len(tokens) == 4 or len(tokens) > 5:
            raise _LineError(f"wrong number of values: {usage}", written)
        fields = ["" if t == '""' else t for t in tokens]
        pattern = fields[0]
        direction = fields[1].lower() if len(fields) > 1 else "out"
        if direction not in ("out", "in", "both"):
            raise _LineError(f"invalid direction {tokens[1]!r}: expected out, in or both", written)
        qos = 0
        if len(fields) > 2:
            if fields[2] not in ("0", "1", "2"):
                raise _LineError(f"invalid QoS {tokens[2]!r}: expected 0, 1 or 2", written)
            qos = int(fields[2])
        local_prefix = fields[3] if len(fields) > 3 else ""
        remote_prefix = fields[4] if len(fields) > 4 else ""
        for label, prefix in (("local prefix", local_prefix), ("remote prefix", remote_prefix)):
            if "+" in prefix or "#" in prefix:
                raise _LineError(f"invalid {label} {prefix!r}: a prefix cannot contain + or #", written)
        if pattern:
            problem = _filter_problem(pattern)
            if problem:
                raise _LineError(f"invalid topic pattern {pattern!r}: {problem}", written)
        elif not (local_prefix and remote_prefix):
            raise _LineError('an empty pattern ("") needs both a local and a remote prefix', written)
        bridge.topic.append(BridgeTopic(pattern, direction, qos, local_prefix, remote_prefix))
        bridge.origins.setdefault("topic", (self.file, self.line))

    def _opt_restart_timeout(self, opt, written, value, scope, main) -> None:
        bridge = self._target(opt, written, scope)
        tokens = _strip_comment(value.split())
        if not 1 <= len(tokens) <= 2 or not all(INT_RE.match(t) for t in tokens):
            raise _LineError("expected `restart_timeout SECONDS` or `restart_timeout BASE CAP`",
                             written)
        numbers = [int(t) for t in tokens]
        if any(n < 1 for n in numbers):
            raise _LineError("values must be at least 1 second", written)
        if len(numbers) == 2:
            base, cap = numbers
            if cap < base:
                raise _LineError(f"cap {cap} is smaller than base {base}", written)
            bridge.restart_timeout = (base, cap)
        else:
            bridge.restart_timeout = (numbers[0], None)
        bridge.origins[opt.name] = (self.file, self.line)

    # ---- after the last line ----

    def finish(self) -> Config:
        config = self.config
        self._finish_listeners()
        self._finish_security()
        self._finish_bridges()
        self._finish_cluster()
        if self.log_dest is not None:
            config.log_dest = self.log_dest
        if self.verbose:
            config.log_type = set(ALL_LOG_TYPES)
        elif self.log_type is not None:
            config.log_type = self.log_type
        config.warnings = self.warnings
        return config

    def _finish_listeners(self) -> None:
        config = self.config
        default = self.default_listener
        if config.per_listener_settings is False:
            default.security = config.security
        if config.local_only:
            # No listener/port/bind_address: local-only mode on 127.0.0.1 and ::1, one
            # listener per -p port; listener options given at the top apply to them.
            config.listeners = []
            for port in self.ports or [1883]:
                listener = _copy_listener(default)
                listener.port = port
                config.listeners.append(listener)
        else:
            if self.ports:
                self._warn_at(("", 0), "-p", "ignored because the config defines listeners "
                              "(as Mosquitto does)")
            if self.default_listener_used:
                if not self.default_listener_port_given:
                    first = next(iter(default.origins.values()), ("", 0))
                    self._warn_at(first, "listener", "listener options before the first `listener` "
                                  f"line create a default listener on port {default.port} (as "
                                  "Mosquitto does); move them after a `listener` line if that is "
                                  "not intended")
                default.origin = default.origins.get("port") or default.origins.get("bind_address") or ("", 0)
                key = (default.port, default.bind_address)
                if key in self.listener_keys:
                    file, line = self.listener_keys[key]
                    self._error_at(default.origin, "port", f"the default listener (port {default.port}) "
                                   f"is also defined by the listener at {file}:{line}")
                config.listeners.append(default)
        for listener in config.listeners:
            if not config.per_listener_settings:
                listener.security = config.security
            self._check_listener(listener)

    def _check_listener(self, listener: ListenerConfig) -> None:
        cert, key = listener.origins.get("certfile"), listener.origins.get("keyfile")
        if bool(listener.certfile) != bool(listener.keyfile):
            have, missing = ("certfile", "keyfile") if listener.certfile else ("keyfile", "certfile")
            self._error_at(cert or key, have, f"listener {listener.name} has {have} but no "
                           f"{missing}: TLS needs both (Mosquitto would silently serve plain "
                           f"MQTT); add {missing}")
        if listener.require_certificate and not (listener.cafile or listener.capath) and listener.certfile:
            self._warn_at(listener.origins.get("require_certificate"), "require_certificate",
                          f"listener {listener.name} requires client certificates but has no "
                          "cafile or capath to verify them: every client will be refused")
        tls_only = ("cafile", "capath", "require_certificate", "crlfile", "use_identity_as_username",
                    "use_subject_as_username", "cert_identity_as_username", "cert_identity_as_clientid")
        if not listener.tls_enabled:
            for option in tls_only:
                if option in listener.origins and getattr(listener, opts.attr_name(option)):
                    self._warn_at(listener.origins[option], option,
                                  f"listener {listener.name} has no TLS (certfile+keyfile or "
                                  "psk_hint), so this has no effect")
        if listener.keyfile_password_file and not listener.keyfile:
            self._warn_at(listener.origins["keyfile_password_file"], "keyfile_password_file",
                          f"listener {listener.name} has no keyfile")
        security = listener.security
        if listener.psk_hint and not security.psk_file and not security.plugins:
            self._warn_at(listener.origins.get("psk_hint"), "psk_hint",
                          f"listener {listener.name} turns TLS-PSK on but no psk_file (or plugin) "
                          "applies to it: no PSK client can connect")
        if listener.http_dir and listener.protocol != "websockets":
            self._warn_at(listener.origins.get("http_dir"), "http_dir",
                          f"listener {listener.name} is not a websockets listener, so http_dir "
                          "has no effect")
        if listener.path and listener.protocol == "websockets":
            self._error_at(listener.origin, "listener", "websockets needs a TCP port, not a Unix socket")

    def _finish_security(self) -> None:
        config = self.config
        scopes = [config.security]
        if config.per_listener_settings:
            scopes += [listener.security for listener in config.listeners]
        for security in scopes:
            if config.local_only:
                if security.allow_anonymous is False:
                    self._warn_at(security.origins.get("allow_anonymous"), "allow_anonymous",
                                  "false is ignored in local-only mode (no listener configured): "
                                  "anonymous clients on this machine are allowed, as in Mosquitto")
                security.allow_anonymous = True
            elif security.allow_anonymous is None:
                security.allow_anonymous = False
        self._warn_nobody_can_connect()

    def _warn_nobody_can_connect(self) -> None:
        """Mosquitto's quiet trap: allow_anonymous false and nothing to check passwords."""
        config = self.config
        if config.local_only:
            return
        for listener in config.listeners:
            security = listener.security
            identity = (listener.use_identity_as_username or listener.use_subject_as_username
                        or listener.cert_identity_as_username)
            if security.allow_anonymous or security.password_file or security.plugins or identity:
                continue
            where = listener.origin if listener.origin[0] else None
            self._warn_at(where, "allow_anonymous",
                          f"listener {listener.name}: anonymous clients are refused (the default "
                          "when a listener is configured) and there is no password_file or "
                          "plugin, so no client can connect; set allow_anonymous true or add a "
                          "password_file")

    def _finish_bridges(self) -> None:
        hostname = os.uname().nodename if hasattr(os, "uname") else "localhost"
        local_ids: dict[str, str] = {}
        for bridge in self.config.bridges:
            where = bridge.origin
            if not bridge.address:
                self._error_at(where, "connection", f"bridge {bridge.name} has no `address`")
            if not bridge.topic:
                self._error_at(where, "connection", f"bridge {bridge.name} has no `topic`: give at least one")
            if bool(bridge.bridge_psk) != bool(bridge.bridge_identity):
                have, missing = (("bridge_psk", "bridge_identity") if bridge.bridge_psk
                                 else ("bridge_identity", "bridge_psk"))
                self._error_at(bridge.origins.get(have), have, f"bridge {bridge.name} needs {missing} too")
            if bridge.bridge_psk and not re.fullmatch(r"[0-9A-Fa-f]+", bridge.bridge_psk):
                self._error_at(bridge.origins.get("bridge_psk"), "bridge_psk", "expected a hex key")
            if bridge.bridge_psk and (bridge.bridge_cafile or bridge.bridge_capath
                                      or bridge.bridge_certfile or bridge.bridge_keyfile):
                self._error_at(bridge.origins.get("bridge_psk"), "bridge_psk",
                               f"bridge {bridge.name} mixes PSK and certificate options; use one")
            if bool(bridge.bridge_certfile) != bool(bridge.bridge_keyfile):
                have = "bridge_certfile" if bridge.bridge_certfile else "bridge_keyfile"
                self._error_at(bridge.origins.get(have), have,
                               f"bridge {bridge.name} needs both bridge_certfile and bridge_keyfile")
            if bridge.bridge_certfile and not (bridge.bridge_cafile or bridge.bridge_capath):
                self._error_at(bridge.origins.get("bridge_certfile"), "bridge_certfile",
                               f"bridge {bridge.name} needs bridge_cafile or bridge_capath for TLS")
            if bridge.remote_clientid is None:
                bridge.remote_clientid = f"{hostname}.{bridge.name}"
            if bridge.local_clientid is None:
                bridge.local_clientid = f"local.{bridge.remote_clientid}"
            if bridge.local_cleansession is None:
                bridge.local_cleansession = bridge.cleansession
            if bridge.local_clientid in local_ids:
                self._error_at(where, "local_clientid", f"bridges {local_ids[bridge.local_clientid]} "
                               f"and {bridge.name} use the same local_clientid {bridge.local_clientid!r}")
            local_ids[bridge.local_clientid] = bridge.name

    def _finish_cluster(self) -> None:
        config = self.config
        origins = config.origins
        clustered = config.cluster_url or config.workers > 1
        if clustered and bool(config.cluster_certfile) != bool(config.cluster_keyfile):
            have, missing = (("cluster_certfile", "cluster_keyfile") if config.cluster_certfile
                             else ("cluster_keyfile", "cluster_certfile"))
            self._error_at(origins.get(have), have, f"mutual TLS to NATS needs {missing} too")
        if not clustered:
            for name in ("cluster_name", "cluster_node_id", "cluster_cafile", "cluster_certfile",
                         "cluster_keyfile", "cluster_credentials"):
                if name in origins:
                    self._warn_at(origins[name], name, "ignored: no cluster_url and workers 1, "
                                  "so this node is not part of a cluster")
        if config.workers > 1 and config.cluster_node_id and "cluster_node_id" in origins:
            self._warn_at(origins["cluster_node_id"], "cluster_node_id",
                          f"with workers {config.workers} each worker is node ID-wN (N = 1..workers)")

    # ---- messages ----

    def _error(self, message: str, option: str, file: str | None = None, line: int | None = None) -> None:
        self.errors.append(ConfigError(message, file if file is not None else self.file,
                                       self.line if line is None else line, option))

    def _error_at(self, where, option: str, message: str) -> None:
        file, line = where or ("", 0)
        self.errors.append(ConfigError(message, file or None, line, option))

    def _warn(self, message: str, option: str) -> None:
        self.warnings.append(str(ConfigError(message, self.file, self.line, option)))

    def _warn_at(self, where, option: str, message: str) -> None:
        file, line = where or ("", 0)
        self.warnings.append(str(ConfigError(message, file or None, line, option)))

    def result(self) -> ReadResult:
        config = self.finish()
        return ReadResult(config, self.errors, self.warnings, self.portability)


def _copy_listener(source: ListenerConfig) -> ListenerConfig:
    listener = ListenerConfig()
    for attr, value in vars(source).items():
        setattr(listener, attr, dict(value) if attr == "origins" else value)
    return listener


def _strip_comment(tokens: list[str]) -> list[str]:
    """Tokens before a trailing `#...` (for options whose values are words, not strings)."""
    for i, token in enumerate(tokens):
        if token.startswith("#"):
            return tokens[:i]
    return tokens


def _atoi(text: str) -> int:
    match = re.match(r"\s*([+-]?\d+)", text)
    return int(match.group(1)) if match else 0


def _num(value) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _filter_problem(pattern: str) -> str:
    """Why `pattern` is not a valid subscription filter, or ""."""
    levels = pattern.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "'#' must be a whole last level"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return ""
