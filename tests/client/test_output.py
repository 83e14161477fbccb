"""mosquitto_sub's output rules, unit by unit (time pinned, no broker)."""

from __future__ import annotations

import time

import pytest

from midge.cli.output import MessagePrinter, check_format, dump_cjson, parse_cjson
from midge.protocol.constants import Property
from midge.protocol.packets import Publish

# 2026-11-28 03:41:43.123456789 UTC
NOW_NS = 1795837303_123456789


@pytest.fixture(autouse=True)
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def render(fmt, message=None, **kwargs):
    printer = MessagePrinter(fmt, clock=lambda: NOW_NS, **kwargs)
    return printer.render(message or Publish("a/b", b"hello", 1, True, False, 7, {}))


def test_time_specifiers():
    assert render("%I") == b"2026-11-28T03:41:43+0000\n"
    assert render("%U") == b"1795837303.123456789\n"
    assert render("@Y/@m/@d @H:@M:@S.@N @@") == b"2026/11/28 03:41:43.123456789 @\n"
    assert render("%j", eol=False).startswith(b'{"tst":"2026-11-28T03:41:43.123456Z+0000","topic":"a/b"')


def test_plain_fields_and_widths():
    assert render("%t|%p|%l|%q|%r|%m|%%") == b"a/b|hello|5|1|1|7|%\n"
    assert render("[%6t][%-6t][%.1t][%03l][%-3l]") == b"[   a/b][a/b   ][a][005][5  ]\n"
    # mosquitto halves the width-capped length for hex: "%8x" of 5 bytes shows 2 of them
    assert render("[%4p][%8x][%-8X]") == b"[hell][    6865][6865    ]\n"
    assert render("%-p|", eol=False) == b"hello     |"  # printf("%*s", -5, "") pads too


def test_missing_properties_print_blanks():
    assert render("[%3A][%03E][%2C][%R][%D][%P]") == b"[   ][000][  ][][][]\n"


def test_properties():
    props = {Property.USER_PROPERTY: [("a", "1"), ("b", "2")], Property.CONTENT_TYPE: "ct",
             Property.SUBSCRIPTION_IDENTIFIER: [5, 6], Property.CORRELATION_DATA: b"\x00id"}
    message = Publish("t", b"", 0, False, False, None, props)
    assert render("%P|%C|%S|%D", message) == b"a:1 b:2|ct|5|\x00id\n"
    assert render("%j", message) == (
        b'{"tst":"2026-11-28T03:41:43.123456Z+0000","topic":"t","qos":0,"retain":0,"payloadlen":0,'
        b'"properties":{"user-properties":{"a":"1","b":"2"},"content-type":"ct",'
        b'"subscription-identifier":5,"subscription-identifier":6,"correlation-data":""},"payload":null}\n')


def test_default_verbose_and_eol():
    empty = Publish("t", b"")
    assert render(None, empty) == b""
    assert render(None, empty, verbose=True) == b"t (null)\n"
    assert render(None, empty, verbose=True, eol=False) == b""
    assert render(None, Publish("t", b"x"), verbose=True, eol=False) == b"t x"


@pytest.mark.parametrize("fmt,error", [
    ("%", "Incomplete format specifier."),
    ("abc@", "Incomplete format specifier."),
    ("%Z", "Invalid format specifier 'Z'."),
    ("%0-5t", "Invalid format specifier '-'."),
    ("x\\q", "Invalid escape specifier 'q'."),
    ("%-08.3t @H \\n %%", None),
])
def test_check_format(fmt, error):
    assert check_format(fmt) == error


@pytest.mark.parametrize("payload,compact,pretty", [
    (b'{"a": [1, 2.5, "x"], "b": {}}', b'{"a":[1,2.5,"x"],"b":{}}', b'{\n\t"a":\t[1, 2.5, "x"],\n\t"b":\t{\n\t}\n}'),
    (b"[]", b"[]", b"[]"),
    (b"1e10", b"10000000000", b"10000000000"),
    (b"0.1", b"0.1", b"0.1"),
    (b'"\\u00e9\\n"', b'"\xc3\xa9\\n"', b'"\xc3\xa9\\n"'),
    (b'{"k": 1, "k": 2}', b'{"k":1,"k":2}', b'{\n\t"k":\t1,\n\t"k":\t2\n}'),
])
def test_cjson_layout(payload, compact, pretty):
    value = parse_cjson(payload)
    assert dump_cjson(value, False) == compact
    assert dump_cjson(value, True) == pretty


@pytest.mark.parametrize("payload", [b"NaN", b"{", b"1 2", b"a\x00", b"\xff"])
def test_cjson_rejects(payload):
    assert render("%J", Publish("t", payload)) == b"\n"


def test_random_filter_100_prints_everything():
    # mosquitto_sub 2.0.11 scales the value by 10 (100 prints about 10%); midge follows
    # the manual: 100 means every message.
    printer = MessagePrinter(None, random_filter=10000)
    assert all(printer.render(Publish("t", b"x")) == b"x\n" for _ in range(200))
    printer = MessagePrinter(None, random_filter=1)
    assert sum(printer.render(Publish("t", b"x")) == b"x\n" for _ in range(200)) < 20
