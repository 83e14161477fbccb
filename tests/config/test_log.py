"""midge.log: Mosquitto's line format, types and destinations."""

from __future__ import annotations

import io
import re
import time

from midge.config import load_config_string
from midge.log import ALL_TYPES, Log, LogType, MemoryLog


def config(text: str = "", **kw):
    return load_config_string("listener 1\nallow_anonymous true\n" + text, "m.conf", **kw)


def test_default_log_is_stderr_with_unix_timestamp(capsys):
    log = Log()
    before = int(time.time())
    log.notice("hello")
    log.debug("not by default")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    stamp, message = err[0].split(": ", 1)
    assert message == "hello" and before <= int(stamp) <= int(time.time())


def test_stream_replaces_stderr_and_stdout():
    stream = io.StringIO()
    log = Log(config("log_dest stdout\n"), stream=stream)
    log.error("boom")
    assert re.fullmatch(r"\d+: boom\n", stream.getvalue())


def test_timestamp_format_and_off():
    stream = io.StringIO()
    Log(config("log_timestamp_format %Y-%m-%d\n"), stream=stream).error("x")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d: x\n", stream.getvalue())
    stream = io.StringIO()
    Log(config("log_timestamp false\n"), stream=stream).error("bare")
    assert stream.getvalue() == "bare\n"


def test_types_filter_and_enabled():
    log = Log(config("log_type error\nlog_type subscribe\n"), stream=io.StringIO())
    assert log.enabled(LogType.ERROR) and log.enabled(LogType.SUBSCRIBE)
    assert not log.enabled(LogType.NOTICE) and not log.enabled(LogType.DEBUG)
    verbose = Log(config(verbose=True), stream=io.StringIO())
    assert all(verbose.enabled(t) for t in LogType)


def test_log_dest_none_writes_nothing(capsys):
    Log(config("log_dest none\n")).error("silent")
    assert capsys.readouterr() == ("", "")


def test_file_destination_appends_and_reopens_on_reconfigure(tmp_path):
    path = tmp_path / "midge.log"
    path.write_text("old line\n")
    cfg = config(f"log_dest file {path}\nlog_timestamp false\n")
    log = Log(cfg)
    log.notice("first")
    assert path.read_text() == "old line\nfirst\n"
    rotated = tmp_path / "midge.log.1"
    path.rename(rotated)
    log.reconfigure(cfg)  # SIGHUP after logrotate moved the file
    log.notice("second")
    log.close()
    assert rotated.read_text() == "old line\nfirst\n"
    assert path.read_text() == "second\n"


def test_unopenable_file_falls_back_to_stderr_errors(tmp_path, capsys):
    log = Log(config(f"log_dest file {tmp_path}/missing/dir/log\n"))
    assert "Unable to open log file" in capsys.readouterr().err
    log.notice("dropped")
    log.error("kept")
    err = capsys.readouterr().err
    assert "kept" in err and "dropped" not in err


def test_topic_destination_publishes_to_sys_log_topics():
    published = []
    log = Log(config("log_dest topic\nlog_type all\n"))
    log.set_topic_publisher(lambda topic, payload: published.append((topic, payload)))
    log.error("e")
    log.warning("w")
    log.notice("n")
    log.info("i")
    log.subscribe("s")
    log.unsubscribe("u")
    log.websockets("ws")
    log.debug("never")
    log.internal("never")
    topics = [t for t, _ in published]
    assert topics == ["$SYS/broker/log/E", "$SYS/broker/log/W", "$SYS/broker/log/N",
                      "$SYS/broker/log/I", "$SYS/broker/log/M/subscribe",
                      "$SYS/broker/log/M/unsubscribe", "$SYS/broker/log/WS"]
    assert re.fullmatch(rb"\d+: e", published[0][1])


def test_topic_publisher_does_not_recurse():
    published = []
    log = Log(config("log_dest topic\n"))

    def publish(topic, payload):
        published.append(topic)
        log.error("logged while publishing")

    log.set_topic_publisher(publish)
    log.error("once")
    assert published == ["$SYS/broker/log/E"]


def test_syslog_destination(monkeypatch):
    import syslog

    calls = []
    monkeypatch.setattr(syslog, "openlog", lambda *a: calls.append(("open",) + a))
    monkeypatch.setattr(syslog, "syslog", lambda *a: calls.append(("log",) + a))
    monkeypatch.setattr(syslog, "closelog", lambda: calls.append(("close",)))
    log = Log(config("log_dest syslog\nlog_facility 3\n"))
    log.warning("careful")
    log.close()
    assert calls[0] == ("open", "midge", syslog.LOG_PID, syslog.LOG_LOCAL3)
    assert calls[1] == ("log", syslog.LOG_WARNING, "careful")  # no timestamp in syslog
    assert calls[2] == ("close",)


def test_config_warnings_are_logged():
    stream = io.StringIO()
    Log(config("retry_interval 5\n"), stream=stream)
    assert "Warning: m.conf:3: retry_interval: obsolete option" in stream.getvalue()


def test_memory_log_records():
    log = MemoryLog()
    log.debug("d")
    log.notice("n")
    assert log.records == [(LogType.DEBUG, "d"), (LogType.NOTICE, "n")]
    assert log.lines == ["d", "n"] and log.messages(LogType.NOTICE) == ["n"]
    assert log.contains("n") and log.enabled(LogType.INTERNAL)
    quiet = MemoryLog(types=LogType.ERROR)
    quiet.notice("skip")
    assert quiet.records == [] and ALL_TYPES & LogType.INTERNAL


class CountingStream(io.StringIO):
    """Counts write calls: deferred logging must write once per loop turn."""

    def __init__(self):
        super().__init__()
        self.writes = 0

    def write(self, text):
        self.writes += 1
        return super().write(text)


def test_deferred_writes_batch_until_flush_and_keep_order():
    stream = CountingStream()
    log = Log(config("log_dest stdout\n"), stream=stream)
    scheduled = []
    log.defer_writes(scheduled.append)
    log.notice("one")
    log.notice("two")
    log.debug("not logged")
    assert stream.getvalue() == "" and scheduled == [log.flush]  # scheduled once
    scheduled.pop()()
    assert [line.split(": ", 1)[1] for line in stream.getvalue().splitlines()] == ["one", "two"]
    assert stream.writes == 1
    log.notice("three")
    assert len(scheduled) == 1  # a new turn schedules a new flush


def test_deferred_lines_are_written_on_close_and_when_deferral_stops(tmp_path):
    path = tmp_path / "m.log"
    log = Log(config(f"log_dest file {path}\n"))
    log.defer_writes(lambda callback: None)  # a flush that never comes
    log.notice("kept at close")
    log.close()
    assert "kept at close" in path.read_text()

    stream = io.StringIO()
    log = Log(config("log_dest stdout\n"), stream=stream)
    log.defer_writes(lambda callback: None)
    log.notice("kept when deferral stops")
    log.defer_writes(None)
    assert "kept when deferral stops" in stream.getvalue()
    log.notice("immediate again")
    assert "immediate again" in stream.getvalue()


def test_deferred_lines_are_written_before_a_reconfigure_reopens_the_file(tmp_path):
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    log = Log(config(f"log_dest file {first}\n"))
    log.defer_writes(lambda callback: None)
    log.notice("before rotation")
    log.reconfigure(config(f"log_dest file {second}\n"))
    assert "before rotation" in first.read_text()
    log.close()
