"""Cleanup that always finishes (issue 14).

Ending a connection is a chain of steps: the v5 DISCONNECT, the log line, leaving the
keepalive buckets, the plugins' on_disconnect, the will, ending or parking the session,
releasing buffers. When one step raised, every step after it used to be skipped: a will
whose publish raised (a 1,000-level topic hit the recursion limit) left the clean session
behind as a ghost that kept queueing messages, and the exception escaped the event loop
callback. Each step now runs through `attempt`, which logs what failed and lets the
caller go on with the next step; so do the loops that close many clients at once
(keepalive expiry, shutdown).
"""

from __future__ import annotations

import traceback

from midge.log import LogType


def attempt(log, what: str, step, *args) -> bool:
    """Run `step(*args)`; if it raises, log "Internal error <what>: <exception>" and
    return False (True when it ran to its end)."""
    try:
        step(*args)
    except Exception as exc:  # a bug in one step must not skip the others
        report(log, what, exc)
        return False
    return True


def report(log, what: str, exc: BaseException) -> None:
    """The error line (and, with debug logging, the traceback); never raises."""
    try:
        if log.enabled(LogType.ERROR):
            detail = "".join(traceback.format_exception_only(exc)).strip()
            log.error(f"Internal error {what}: {detail}")
            if log.enabled(LogType.DEBUG):
                log.debug("".join(traceback.format_exception(exc)))
    except Exception:
        pass
