"""`midge COMMAND ...`: one entry point, each command in its own module.

Every command module exposes `main(argv: list[str]) -> int`; the module is imported
only when its command runs, so `midge pub` does not pay for the broker's imports.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "broker": ("midge.cli.broker", "run the MQTT broker (mosquitto's flags: -c -p -v -d)"),
    "pub": ("midge.cli.pub", "publish messages (mosquitto_pub's flags)"),
    "sub": ("midge.cli.sub", "subscribe and print messages (mosquitto_sub's flags)"),
    "rr": ("midge.cli.rr", "request/response client (mosquitto_rr's flags)"),
    "passwd": ("midge.cli.passwd", "manage password files (mosquitto_passwd's flags)"),
    "certs": ("midge.cli.certs", "create a development CA, server and client certificates"),
    "check": ("midge.cli.check", "check a mosquitto.conf without starting the broker"),
}


def usage() -> str:
    lines = ["usage: midge COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "`midge COMMAND --help` describes each command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] in ("--version", "version"):
        from midge import __version__

        print(f"midge {__version__}")
        return 0
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"midge: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(command[0])
    return module.main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
