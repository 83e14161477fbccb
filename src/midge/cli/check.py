"""`midge check [-c] FILE [-p PORT]...`: validate a mosquitto.conf without starting anything.

Prints every error and warning as `FILE:LINE: OPTION: ...`, checks that the files the
config names (certificates, keys, CA, CRL, password/ACL/PSK files, plugins) exist and
are readable, then summarises each listener: port, bind address, TLS or not, which
security applies and whether anonymous clients are allowed.

Portability: every line Mosquitto 2.0 would refuse (a midge option or value) is marked
`Midge-only:`, every Mosquitto option midge reads differently `Differs:` (the notes come
from the option table, `midge.config.options`). With `--mosquitto`, midge-only lines
are errors: a config that must also run under Mosquitto can be checked in CI.

Exit status: 0 when the config is valid, 3 when it is not (like `mosquitto -c`).
"""

from __future__ import annotations

import argparse
import os
import sys

from midge.config.options import DIFFERS, MIDGE_ONLY

CONFIG_ERROR_EXIT = 3

# (option, what it must be) checked on every listener, security scope and bridge.
LISTENER_FILES = ("certfile", "keyfile", "cafile", "crlfile", "dhparamfile", "keyfile_password_file")
LISTENER_DIRS = ("capath", "http_dir")
SECURITY_FILES = ("password_file", "acl_file", "psk_file")
BRIDGE_FILES = ("bridge_cafile", "bridge_certfile", "bridge_keyfile")
BRIDGE_DIRS = ("bridge_capath",)
CLUSTER_FILES = ("cluster_cafile", "cluster_certfile", "cluster_keyfile", "cluster_credentials")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="midge check",
                                description="Check a mosquitto.conf without starting the broker.")
    p.add_argument("-c", "--config-file", dest="config_opt", metavar="FILE", help="configuration file")
    p.add_argument("config", nargs="?", metavar="FILE", help="configuration file")
    p.add_argument("-p", "--port", action="append", type=int, default=[], metavar="PORT",
                   help="as for `midge broker`: ports for local-only mode")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors and warnings")
    p.add_argument("--mosquitto", action="store_true",
                   help="treat lines Mosquitto 2.0 would refuse (midge-only options and values) as errors")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    path = args.config_opt or args.config
    if not path:
        print("midge check: a config file is needed: midge check [-c] FILE", file=sys.stderr)
        return 2

    from midge.config import read_config

    result = read_config(path, ports=args.port)
    errors = [str(e) for e in result.errors]
    warnings = list(result.warnings)
    portability = list(result.portability)
    if not any(e.option == "" and e.line == 0 and e.file == path for e in result.errors):
        errors += file_problems(result.config)
        warnings += tls_warnings(result.config)
        portability += crl_directories(result.config)
    midge_only = [text for kind, text in portability if kind == MIDGE_ONLY]
    if args.mosquitto:
        errors += midge_only
    for error in errors:
        print(f"Error: {error}")
    for warning in warnings:
        print(f"Warning: {warning}")
    if not args.mosquitto:
        for text in midge_only:
            print(f"Midge-only: {text}")
    for kind, text in portability:
        if kind == DIFFERS:
            print(f"Differs: {text}")
    if errors:
        count = len(errors)
        who = "Mosquitto 2.0" if len(errors) == len(midge_only) and args.mosquitto else "midge"
        print(f"{path}: {count} error{'s' if count > 1 else ''}; {who} would refuse to start.")
        return CONFIG_ERROR_EXIT
    if not args.quiet:
        for line in summary(result.config):
            print(line)
    print(f"{path}: OK")
    return 0


def tls_warnings(config) -> list[str]:
    """`require_ocsp true` with no OCSP responder known (also logged at start-up)."""
    warnings = []
    for listener in config.listeners:
        if getattr(listener, "require_ocsp", False):
            from midge.server.ocsp import unreachable_responder

            warning = unreachable_responder(listener)
            if warning:
                where = listener.origins.get("require_ocsp")
                warnings.append(f"{_where(where)}require_ocsp: listener {listener.name}: {warning}")
    return warnings


def crl_directories(config) -> list[tuple[str, str]]:
    """A crlfile that is a directory: midge reads every CRL in it, Mosquitto refuses it."""
    notes = []
    for listener in config.listeners:
        if listener.crlfile and os.path.isdir(listener.crlfile):
            notes.append((MIDGE_ONLY, f"{_where(listener.origins.get('crlfile'))}crlfile: Mosquitto 2.0 "
                          "would refuse this line: crlfile is a directory (midge reads every CRL in "
                          "it; Mosquitto needs one file)"))
    return notes


def file_problems(config) -> list[str]:
    """`FILE:LINE: OPTION: ...` for each named file that is missing or unreadable."""
    problems: list[str] = []
    seen: set[int] = set()
    scopes = []
    for listener in config.listeners:
        scopes.append((listener, LISTENER_FILES, LISTENER_DIRS))
        if id(listener.security) not in seen:
            seen.add(id(listener.security))
            scopes.append((listener.security, SECURITY_FILES, ()))
    if id(config.security) not in seen:
        scopes.append((config.security, SECURITY_FILES, ()))
    for bridge in config.bridges:
        scopes.append((bridge, BRIDGE_FILES, BRIDGE_DIRS))
    if config.cluster_url or config.workers > 1:
        scopes.append((config, CLUSTER_FILES, ()))
    reported: set[tuple] = set()
    for obj, files, dirs in scopes:
        for option in files + dirs:
            path = getattr(obj, option)   # (names from the option table)
            if not path:
                continue
            where = obj.origins.get(option, ("", 0))
            problem = _path_problem(path, directory=option in dirs)
            if problem and (where, option) not in reported:
                reported.add((where, option))
                problems.append(f"{_where(where)}{option}: {path}: {problem}")
    security_scopes = [s for s in {id(l.security): l.security for l in config.listeners}.values()]
    security_scopes.append(config.security)
    for security in security_scopes:
        for plugin in security.plugins:
            if plugin.path.endswith(".py"):
                problem = _path_problem(plugin.path, directory=False)
                if problem and (plugin.origin, "plugin") not in reported:
                    reported.add((plugin.origin, "plugin"))
                    problems.append(f"{_where(plugin.origin)}plugin: {plugin.path}: {problem}")
    return problems


def _path_problem(path: str, directory: bool) -> str:
    if not os.path.exists(path):
        return "does not exist"
    if directory:
        if not os.path.isdir(path):
            return "is not a directory"
        if not os.access(path, os.R_OK | os.X_OK):
            return "is not readable"
        return ""
    if os.path.isdir(path):
        return "is a directory, expected a file"
    if not os.access(path, os.R_OK):
        return "is not readable by this user"
    return ""


def _where(where) -> str:
    file, line = where or ("", 0)
    return f"{file}:{line}: " if file else ""


def summary(config) -> list[str]:
    """One line per listener, plus the mode and the security rule that applies."""
    lines = []
    if config.local_only:
        lines.append("Local-only mode (no listener configured): listening on 127.0.0.1 and ::1 only, "
                     "anonymous clients allowed.")
    pls = config.per_listener_settings
    lines.append(f"per_listener_settings {'true' if pls else 'false'}: "
                 + ("each listener has its own security options." if pls
                    else "one set of security options for every listener."))
    for listener in config.listeners:
        lines.append("  " + describe_listener(config, listener))
    lines += describe_cluster(config)
    for bridge in config.bridges:
        addresses = " ".join(f"{h}:{p}" for h, p in bridge.address)
        lines.append(f"  bridge {bridge.name} -> {addresses} ({len(bridge.topic)} topic line(s), "
                     f"{'TLS' if bridge.tls_enabled else 'no TLS'})")
    return lines


def describe_cluster(config) -> list[str]:
    """What `workers` and `cluster_*` make of this node (docs/cluster.md)."""
    lines = []
    if config.workers > 1:
        lines.append(f"workers {config.workers}: {config.workers} processes share every listener (SO_REUSEPORT)")
    if config.cluster_url:
        tls = "TLS" if config.cluster_cafile or any(u.startswith("tls://") for u in config.cluster_url) else "no TLS"
        auth = ", credentials " + config.cluster_credentials if config.cluster_credentials else ""
        lines.append(f"cluster {config.cluster_name} through NATS {' '.join(_hide_password(u) for u in config.cluster_url)} "
                     f"({tls}{auth})")
    elif config.workers > 1:
        lines.append(f"cluster {config.cluster_name} through a nats-server midge starts on 127.0.0.1")
    return ["  " + line for line in lines]


def _hide_password(url: str) -> str:
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if at and ":" in credentials:
        credentials = credentials.split(":", 1)[0] + ":***"
    return f"{scheme}://{credentials}{at}{host}"


def describe_listener(config, listener) -> str:
    if listener.path:
        where = f"Unix socket {listener.path}"
    elif config.local_only:
        where = f"port {listener.port} on 127.0.0.1 and ::1"
    else:
        bind = listener.bind_address or "all addresses"
        domain = f" ({listener.socket_domain} only)" if listener.socket_domain else ""
        where = f"port {listener.port} on {bind}{domain}"
    parts = [f"listener {where}", listener.protocol]
    if listener.tls_enabled:
        kinds = []
        if listener.certfile and listener.keyfile:
            kinds.append("certificate")
        if listener.psk_hint:
            kinds.append("PSK")
        tls = "TLS (" + " + ".join(kinds)
        if listener.require_certificate:
            tls += ", client certificate required"
        tls += f", minimum {listener.tls_version or 'tlsv1.2'})"
        parts.append(tls)
    else:
        parts.append("no TLS")
    security = listener.security
    scope = "own security options" if config.per_listener_settings else "global security options"
    auth = []
    if security.password_file:
        auth.append(f"password_file {security.password_file}")
    if security.acl_file:
        auth.append(f"acl_file {security.acl_file}")
    if security.plugins:
        auth.append("plugin " + ", ".join(p.path for p in security.plugins))
    if listener.use_identity_as_username or listener.use_subject_as_username \
            or listener.cert_identity_as_username:
        auth.append("username from TLS identity")
    anonymous = "anonymous allowed" if security.allow_anonymous else "anonymous not allowed"
    parts.append(f"{scope}: {anonymous}" + (f", {', '.join(auth)}" if auth else ""))
    if not security.allow_anonymous and not (security.password_file or security.plugins or auth):
        parts.append("WARNING: no client can authenticate")
    return "; ".join(parts)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
