"""Mosquitto's log types, destinations and line format.

    log = Log(config)                  # or Log() for the defaults: stderr, error..information
    if log.enabled(LogType.DEBUG):     # cheap: check before formatting on hot paths
        log.debug(f"Received PUBLISH from {client_id}")
    log.set_topic_publisher(fn)        # log_dest topic: fn(topic, payload) publishes to $SYS
    log.reconfigure(new_config)        # SIGHUP: new types/destinations, log file reopened
    log.defer_writes(loop.call_soon)   # the server: one write per loop turn, not per line
    log.close()

A line is `<timestamp>: <message>`; the timestamp is Unix seconds, or
`log_timestamp_format` (strftime) when set, or absent with `log_timestamp false`.
syslog gets the bare message; `log_dest topic` publishes `<unix seconds>: <message>` to
`$SYS/broker/log/E|W|N|I|WS` and `$SYS/broker/log/M/subscribe|unsubscribe` (never debug
or internal lines), as Mosquitto's src/logging.c does.
"""

from __future__ import annotations

import sys
import time
from enum import IntFlag


class LogType(IntFlag):
    """Mosquitto's MOSQ_LOG_* bits (same values)."""

    INFORMATION = 0x01
    NOTICE = 0x02
    WARNING = 0x04
    ERROR = 0x08
    DEBUG = 0x10
    SUBSCRIBE = 0x20
    UNSUBSCRIBE = 0x40
    WEBSOCKETS = 0x80
    INTERNAL = 0x80000000


# `log_type` values -> bits.
TYPE_NAMES: dict[str, LogType] = {
    "information": LogType.INFORMATION,
    "notice": LogType.NOTICE,
    "warning": LogType.WARNING,
    "error": LogType.ERROR,
    "debug": LogType.DEBUG,
    "subscribe": LogType.SUBSCRIBE,
    "unsubscribe": LogType.UNSUBSCRIBE,
    "websockets": LogType.WEBSOCKETS,
    "internal": LogType.INTERNAL,
}
ALL_TYPES = LogType(sum(TYPE_NAMES.values()))
DEFAULT_TYPES = LogType.ERROR | LogType.WARNING | LogType.NOTICE | LogType.INFORMATION

# `log_dest topic`: where each type is published; debug and internal never are.
TOPICS: dict[LogType, str] = {
    LogType.ERROR: "$SYS/broker/log/E",
    LogType.WARNING: "$SYS/broker/log/W",
    LogType.NOTICE: "$SYS/broker/log/N",
    LogType.INFORMATION: "$SYS/broker/log/I",
    LogType.SUBSCRIBE: "$SYS/broker/log/M/subscribe",
    LogType.UNSUBSCRIBE: "$SYS/broker/log/M/unsubscribe",
    LogType.WEBSOCKETS: "$SYS/broker/log/WS",
}


def types_mask(names) -> int:
    """A set of `log_type` names -> an int mask of LogType bits."""
    mask = 0
    for name in names:
        mask |= TYPE_NAMES[name]
    return int(mask)


def _enabled_set(mask: int) -> frozenset:
    # Speed: `int & IntFlag` goes through Flag.__rand__ (~1 µs); a set membership test of
    # the single LogType members (hashed as their int values) costs ~15 ns.
    return frozenset(member for member in LogType if mask & member.value)


class Log:
    """The broker's logger, configured from `log_dest`, `log_type`, `log_timestamp*`.

    `stream`, when given, replaces stderr and stdout as the destination of those two
    (tests). When the config cannot open its log file, midge does what Mosquitto does:
    it reports the error on stderr and keeps logging errors there.
    """

    def __init__(self, config=None, stream=None):
        self._stream = stream
        self._file = None
        self._file_path: str | None = None
        self._syslog = None
        self._publisher = None
        self._publishing = False
        self._mask = int(DEFAULT_TYPES)
        self._dests: frozenset[str] = frozenset({"stderr"})
        self._timestamp = True
        self._timestamp_format: str | None = None
        # Deferred writes (`defer_writes`): lines for stderr/stdout/file wait here until
        # the end of the event loop turn, then go out in one write per destination.
        self._schedule = None
        self._pending: list[str] = []
        self.reconfigure(config)

    # ---- configuration ----

    def reconfigure(self, config) -> None:
        """Apply (new) logging options; reopens the log file so it can be rotated."""
        self.flush()
        self._close_outputs()
        if config is None:
            self._mask = int(DEFAULT_TYPES)
            self._dests = frozenset({"stderr"})
            self._timestamp, self._timestamp_format = True, None
            return
        self._mask = types_mask(config.log_type)
        self._dests = frozenset(config.log_dest)
        self._timestamp = config.log_timestamp
        self._timestamp_format = config.log_timestamp_format
        if "file" in self._dests:
            self._file_path = config.log_file
            try:
                self._file = open(self._file_path, "a", buffering=1, encoding="utf-8")
            except (OSError, TypeError) as exc:
                self._dests = frozenset({"stderr"})
                self._mask = int(LogType.ERROR)
                reason = getattr(exc, "strerror", None) or exc   # (a TypeError has none)
                self.error(f"Error: Unable to open log file {self._file_path} for writing ({reason}).")
        if "syslog" in self._dests:
            import syslog

            facility = config.log_facility
            self._syslog = syslog
            syslog.openlog("midge", syslog.LOG_PID, syslog.LOG_DAEMON if facility is None
                           else getattr(syslog, f"LOG_LOCAL{int(facility)}"))
        for warning in config.warnings:
            self.warning(f"Warning: {warning}")

    def set_topic_publisher(self, publish) -> None:
        """`publish(topic: str, payload: bytes)` for `log_dest topic` (None to stop)."""
        self._publisher = publish

    def defer_writes(self, schedule) -> None:
        """Batch stream writes: `schedule(callback)` runs `flush` once the current batch of
        work is done (the server passes `loop.call_soon`, so every line logged during one
        event loop turn goes out in one write). None writes each line at once again.

        Why: a connection storm logs two lines per connect; one write and flush per line
        was ~8 us of the ~55 us a connect cost (bench idle-10k). The cost is that a
        process killed with SIGKILL loses the lines of its last loop turn.
        """
        self.flush()
        self._schedule = schedule

    def flush(self) -> None:
        """Write the lines waiting for the end of the loop turn."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self._write_streams("\n".join(pending) + "\n")

    def _write_streams(self, text: str) -> None:
        """`text` (whole lines) to stderr, stdout and the log file, as configured."""
        dests = self._dests
        if "stderr" in dests:
            self._write(self._stream or sys.stderr, text)
        if "stdout" in dests:
            self._write(self._stream or sys.stdout, text)
        if self._file is not None:
            self._write(self._file, text)

    def close(self) -> None:
        self.flush()
        self._schedule = None
        self._close_outputs()

    def _close_outputs(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
        if self._syslog is not None:
            self._syslog.closelog()
            self._syslog = None

    # ---- logging ----

    @property
    def _mask(self) -> int:
        return self._mask_value

    @_mask.setter
    def _mask(self, value: int) -> None:
        self._mask_value = int(value)
        self._enabled = _enabled_set(self._mask_value)

    def enabled(self, log_type: LogType) -> bool:
        """Whether `log_type` (one LogType) is logged; call it before building an expensive message."""
        return log_type in self._enabled

    def log(self, log_type: LogType, message: str) -> None:
        if log_type not in self._enabled:
            return
        dests = self._dests
        if not dests:
            return
        now = time.time()
        if not self._timestamp:
            line = message
        elif self._timestamp_format:
            line = f"{time.strftime(self._timestamp_format, time.localtime(now))}: {message}"
        else:
            line = f"{int(now)}: {message}"
        if self._schedule is not None:
            if not self._pending:
                self._schedule(self.flush)
            self._pending.append(line)
        else:
            self._write_streams(line + "\n")
        if self._syslog is not None:
            self._syslog.syslog(_syslog_priority(self._syslog, log_type), message)
        if "topic" in dests and self._publisher is not None and not self._publishing:
            topic = TOPICS.get(log_type)
            if topic is not None:
                self._publishing = True  # a log line logged while publishing is not re-published
                try:
                    self._publisher(topic, f"{int(now)}: {message}".encode())
                finally:
                    self._publishing = False

    @staticmethod
    def _write(stream, text: str) -> None:
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken log output must not take the broker down

    def error(self, message: str) -> None:
        self.log(LogType.ERROR, message)

    def warning(self, message: str) -> None:
        self.log(LogType.WARNING, message)

    def notice(self, message: str) -> None:
        self.log(LogType.NOTICE, message)

    def info(self, message: str) -> None:
        self.log(LogType.INFORMATION, message)

    def debug(self, message: str) -> None:
        self.log(LogType.DEBUG, message)

    def subscribe(self, message: str) -> None:
        self.log(LogType.SUBSCRIBE, message)

    def unsubscribe(self, message: str) -> None:
        self.log(LogType.UNSUBSCRIBE, message)

    def websockets(self, message: str) -> None:
        self.log(LogType.WEBSOCKETS, message)

    def internal(self, message: str) -> None:
        self.log(LogType.INTERNAL, message)


def _syslog_priority(syslog, log_type: LogType) -> int:
    if log_type == LogType.ERROR:
        return syslog.LOG_ERR
    if log_type == LogType.WARNING:
        return syslog.LOG_WARNING
    if log_type == LogType.NOTICE:
        return syslog.LOG_NOTICE
    if log_type == LogType.DEBUG:
        return syslog.LOG_DEBUG
    return syslog.LOG_INFO


class MemoryLog(Log):
    """A Log for tests: keeps `(LogType, message)` pairs in `records`, every type enabled
    unless `types` says otherwise; writes nowhere."""

    def __init__(self, types: int = ALL_TYPES):
        self.records: list[tuple[LogType, str]] = []
        super().__init__(None)
        self._mask = int(types)
        self._dests = frozenset()

    def reconfigure(self, config) -> None:
        if config is not None:
            self._mask = types_mask(config.log_type)
            for warning in config.warnings:
                self.warning(f"Warning: {warning}")

    def log(self, log_type: LogType, message: str) -> None:
        if log_type in self._enabled:
            self.records.append((LogType(log_type), message))

    @property
    def lines(self) -> list[str]:
        return [message for _, message in self.records]

    def messages(self, log_type: LogType | None = None) -> list[str]:
        """Messages of one type (all when None)."""
        return [m for t, m in self.records if log_type is None or t & log_type]

    def contains(self, text: str) -> bool:
        return any(text in message for _, message in self.records)
