"""`midge broker [-c FILE] [-d] [-p PORT]... [-v]`: mosquitto's command line, same meaning.

- `-c FILE`: read this mosquitto.conf (without it: local-only mode on 127.0.0.1/::1:1883,
  anonymous allowed, exactly as mosquitto without a config).
- `-p PORT`: listen on PORT (up to 10 times); ignored when the config defines listeners.
- `-v`: every log type (overrides `log_type`).
- `-d`: run in the background (writes `pid_file` if configured).

Started as root, the broker switches to `user` (default mosquitto) once its listeners
are bound (server/privileges.py). Under systemd (`$NOTIFY_SOCKET`) it reports READY,
RELOADING and STOPPING (server/sdnotify.py; contrib/systemd/midge.service).

Exit codes: 0 after SIGINT/SIGTERM, 3 for a configuration error (like mosquitto),
1 when a listener or a TLS context cannot be set up.
"""

from __future__ import annotations

import argparse
import os
import sys

from midge import __version__

CONFIG_ERROR_EXIT = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="midge broker",
        description="midge: an MQTT 3.1/3.1.1/5.0 broker that reads mosquitto.conf.",
        epilog="See docs/configuration.md for every option.",
    )
    p.add_argument("-c", "--config-file", dest="config", metavar="FILE", help="configuration file (mosquitto.conf syntax)")
    p.add_argument("-d", "--daemon", action="store_true", help="run in the background")
    p.add_argument("-p", "--port", action="append", type=int, default=[], metavar="PORT",
                   help="port to listen on when the config has no listener (up to 10 times)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every message type")
    p.add_argument("--version", action="version", version=f"midge {__version__}")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if len(args.port) > 10:
        print("Error: -p may be given at most 10 times.", file=sys.stderr)
        return CONFIG_ERROR_EXIT
    for port in args.port:
        if not 1 <= port <= 65535:
            print(f"Error: Invalid port specified ({port}).", file=sys.stderr)
            return CONFIG_ERROR_EXIT

    from midge.config import ConfigError, load_config
    from midge.log import Log

    config_path = os.path.abspath(args.config) if args.config else None
    try:
        config = load_config(config_path, ports=args.port, verbose=args.verbose)
    except ConfigError as exc:
        # Every error of the file at once, as `midge check` prints them (not only the first).
        for error in exc.errors or [exc]:
            print(f"Error: {error}", file=sys.stderr)
        if len(exc.errors) > 1:
            print(f"{len(exc.errors)} errors in the configuration; midge did not start.", file=sys.stderr)
        return CONFIG_ERROR_EXIT
    except OSError as exc:
        print(f"Error: Unable to open config file {args.config}: {exc.strerror}", file=sys.stderr)
        return CONFIG_ERROR_EXIT

    from midge.server.privileges import PrivilegeError, PrivilegeSwitch

    try:
        switch = PrivilegeSwitch.plan(config)  # `user`: who to become after binding
    except PrivilegeError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    switch.prepare_log_file(config)
    log = Log(config)
    if args.daemon:
        _daemonise()
    pid_file = None if os.environ.get("MIDGE_WORKER") else config.pid_file
    if pid_file:
        try:
            with open(pid_file, "w") as f:
                f.write(f"{os.getpid()}\n")
        except OSError as exc:
            log.error(f"Error: Unable to write pid file {pid_file}: {exc.strerror}")
            return 1

    if config.workers > 1 and not os.environ.get("MIDGE_WORKER"):
        from midge.server.workers import supervise

        worker_argv = (["-c", config_path] if config_path else []) + [f"-p{port}" for port in args.port]
        if args.verbose:
            worker_argv.append("-v")
        try:
            return supervise(config, log, worker_argv)
        finally:
            if pid_file:
                try:
                    os.unlink(pid_file)
                except OSError:
                    pass

    from midge.security import SecurityError
    from midge.server.sdnotify import SdNotify
    from midge.server.server import run

    switch.start_keeper(config_path, ports=args.port, verbose=args.verbose)
    notify = SdNotify.from_environment()
    try:
        return run(config, log, config_path, ports=args.port, verbose=args.verbose,
                   notify=notify, after_bind=switch)
    except ConfigError as exc:  # e.g. a password file that cannot be read
        log.error(f"Error: {exc}")
        # Mosquitto's exit codes: 13 for a security file it cannot open, else 3.
        return exc.exit_code if isinstance(exc, SecurityError) else CONFIG_ERROR_EXIT
    except OSError as exc:
        log.error(f"Error: {exc}")
        return 1
    finally:
        if pid_file:
            try:
                os.unlink(pid_file)
            except OSError:
                pass


def _daemonise() -> None:
    """Detach from the terminal the classic way (fork, setsid, fork)."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
