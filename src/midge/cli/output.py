"""How `midge sub` and `midge rr` print a message: byte for byte what mosquitto_sub
2.0 prints for the same flags (`-v`, `-N`, `-F`, `%j`/`%J`, `--pretty`).

The JSON writer reproduces cJSON's layout (tabs in `--pretty`, `", "` between
array items, `%d` or `%1.15g` numbers, raw UTF-8 in strings) because scripts
compare mosquitto_sub's output textually.
"""

from __future__ import annotations

import json
import math
import random
import time

from midge.protocol.constants import Property

PERCENT_SPECIFIERS = set("%ACDEFIjJlmPpqRrStUxX")
ESCAPES = {"\\": b"\\", "0": b"\0", "a": b"\a", "e": b"\033", "n": b"\n", "r": b"\r",
           "t": b"\t", "v": b"\v"}
JSON_PROPERTY_NAMES = {
    Property.PAYLOAD_FORMAT_INDICATOR: "payload-format-indicator",
    Property.MESSAGE_EXPIRY_INTERVAL: "message-expiry-interval",
    Property.CONTENT_TYPE: "content-type",
    Property.RESPONSE_TOPIC: "response-topic",
    Property.CORRELATION_DATA: "correlation-data",
    Property.SUBSCRIPTION_IDENTIFIER: "subscription-identifier",
    Property.TOPIC_ALIAS: "topic-alias",
}


def check_format(fmt: str) -> str | None:
    """The error message for an invalid -F format, or None (client_shared.c:check_format)."""
    i, n = 0, len(fmt)
    while i < n:
        c = fmt[i]
        if c == "%":
            if i == n - 1:
                return "Incomplete format specifier."
            i += 1
            if fmt[i] == "-":
                i += 1
            if i < n and fmt[i] == "0":
                i += 1
            while i < n and fmt[i].isdigit():
                i += 1
            if i < n and fmt[i] == ".":
                i += 1
                while i < n and fmt[i].isdigit():
                    i += 1
            if i >= n:
                return "Incomplete format specifier."
            if fmt[i] not in PERCENT_SPECIFIERS:
                return f"Invalid format specifier '{fmt[i]}'."
        elif c == "@":
            if i == n - 1:
                return "Incomplete format specifier."
            i += 1
        elif c == "\\":
            if i == n - 1:
                return "Incomplete escape specifier."
            i += 1
            if fmt[i] not in ESCAPES:
                return f"Invalid escape specifier '{fmt[i]}'."
        i += 1
    return None


class MessagePrinter:
    """Turns a received PUBLISH into the bytes mosquitto_sub would write."""

    def __init__(self, fmt: str | None = None, verbose: bool = False, eol: bool = True,
                 pretty: bool = False, random_filter: int = 10000, clock=time.time_ns):
        self.fmt = fmt
        self.verbose = verbose
        self.eol = eol
        self.pretty = pretty
        self.random_filter = random_filter
        self.clock = clock
        self.errors: list[str] = []  # stderr lines from the last render()

    def render(self, message) -> bytes:
        """stdout bytes for `message` (possibly empty); stderr text lands in `errors`."""
        self.errors = []
        if self.random_filter < 10000 and random.randrange(10000) >= self.random_filter:
            return b""
        if self.fmt is not None:
            return self.formatted(message)
        payload = message.payload
        newline = b"\n" if self.eol else b""
        if self.verbose:
            if payload:
                return message.topic.encode() + b" " + payload + newline
            return message.topic.encode() + b" (null)\n" if self.eol else b""
        return payload + newline if payload else b""

    # -- -F ---------------------------------------------------------------

    def formatted(self, message) -> bytes:
        fmt, n = self.fmt, len(self.fmt)
        out = bytearray()
        now_ns = self.clock()
        i = 0
        while i < n:
            c = fmt[i]
            if c == "%":
                align, pad, width, precision = "", " ", 0, -1
                if i < n - 1:
                    i += 1
                    if fmt[i] == "-":
                        align = "-"
                        if i < n - 1:
                            i += 1
                    if fmt[i] == "0":
                        pad = "0"
                        if i < n - 1:
                            i += 1
                    while i < n - 1 and fmt[i].isdigit():
                        width = width * 10 + int(fmt[i])
                        i += 1
                    if fmt[i] == "." and i < n - 1:
                        i += 1
                        precision = 0
                        while i < n - 1 and fmt[i].isdigit():
                            precision = precision * 10 + int(fmt[i])
                            i += 1
                    out += self.percent(message, fmt[i], align, pad, width, precision, now_ns)
            elif c == "@":
                if i < n - 1:
                    i += 1
                    if fmt[i] == "@":
                        out += b"@"
                    elif fmt[i] == "N":
                        out += b"%09d" % (now_ns % 1_000_000_000)
                    else:
                        out += time.strftime("%" + fmt[i], time.localtime(now_ns // 1_000_000_000)).encode()
            elif c == "\\":
                if i < n - 1:
                    i += 1
                    out += ESCAPES.get(fmt[i], b"")
            else:
                out += c.encode()
            i += 1
        if self.eol:
            out += b"\n"
        return bytes(out)

    def percent(self, message, spec, align, pad, width, precision, now_ns) -> bytes:
        props = message.properties
        if spec == "%":
            return b"%"
        if spec in "AEFS":
            key = {"A": Property.TOPIC_ALIAS, "E": Property.MESSAGE_EXPIRY_INTERVAL,
                   "F": Property.PAYLOAD_FORMAT_INDICATOR, "S": Property.SUBSCRIPTION_IDENTIFIER}[spec]
            value = props.get(key)
            if isinstance(value, list):
                value = value[0] if value else None
            if value is None:
                return pad.encode() * width
            return _int(value, align, pad, width)
        if spec == "C":
            value = props.get(Property.CONTENT_TYPE)
            if value is None:
                return b" " * width
            return _str(value.encode(), align, width, precision)
        if spec == "D":
            return props.get(Property.CORRELATION_DATA, b"")
        if spec == "R":
            value = props.get(Property.RESPONSE_TOPIC)
            return b"" if value is None else _str(value.encode(), align, width, precision)
        if spec == "I":
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now_ns // 1_000_000_000))
            return _str(stamp.encode(), align, width, precision)
        if spec == "U":
            return b"%d.%09d" % divmod(now_ns, 1_000_000_000)
        if spec in "jJ":
            return self.json(message, now_ns, escaped=spec == "j")
        if spec == "l":
            return _int(len(message.payload), align, pad, width)
        if spec == "m":
            return _int(message.packet_id or 0, align, pad, width)
        if spec == "P":
            pairs = props.get(Property.USER_PROPERTY, [])
            return b" ".join(f"{k}:{v}".encode() for k, v in pairs)
        if spec in "pxX":
            return _payload(message.payload, {"p": 0, "x": 1, "X": 2}[spec], align, pad, width)
        if spec == "q":
            return bytes((48 + message.qos,))
        if spec == "r":
            return b"1" if message.retain else b"0"
        if spec == "t":
            return _str(message.topic.encode(), align, width, precision)
        return b""

    # -- %j / %J -------------------------------------------------------------

    def json(self, message, now_ns: int, escaped: bool) -> bytes:
        seconds, ns = divmod(now_ns, 1_000_000_000)
        local = time.localtime(seconds)
        tst = time.strftime("%Y-%m-%dT%H:%M:%S", local) + ".%06dZ" % (ns // 1000) + time.strftime("%z", local)
        members: list = [("tst", tst), ("topic", _cstring(message.topic.encode())),
                         ("qos", message.qos), ("retain", int(message.retain)),
                         ("payloadlen", len(message.payload))]
        if message.qos > 0:
            members.append(("mid", message.packet_id or 0))
        if message.properties:
            members.append(("properties", JsonObject(_json_properties(message.properties))))
        payload = message.payload
        if escaped:
            members.append(("payload", _cstring(payload) if payload else None))
        elif not payload:
            members.append(("payload", None))
        else:
            value = parse_cjson(payload)
            if value is _INVALID:
                self.errors.append(f"Error: Message payload is not valid JSON on topic {message.topic}.")
                return b""
            members.append(("payload", value))
        return dump_cjson(JsonObject(members), self.pretty)


# -- printf-style helpers (bytes, as C's printf counts bytes) ---------------

def _int(value: int, align: str, pad: str, width: int) -> bytes:
    if width == 0:
        return b"%d" % value
    if align == "-":
        return b"%-*d" % (width, value)
    return (b"%0*d" if pad == "0" else b"%*d") % (width, value)


def _str(value: bytes, align: str, width: int, precision: int) -> bytes:
    if precision >= 0:
        value = value[:precision]
    if len(value) >= width:
        return value
    fill = b" " * (width - len(value))
    return value + fill if align == "-" else fill + value


def _payload(payload: bytes, hexmode: int, align: str, pad: str, width: int) -> bytes:
    length = len(payload)
    if width > 0:
        length = min(length, width)
        if hexmode:
            length //= 2
            padlen = width - length * 2
        else:
            padlen = width - length
    else:
        padlen = width - length
    out = bytearray()
    if align != "-" and padlen > 0:
        out += pad.encode() * padlen
    body = payload[:length]
    out += body if hexmode == 0 else (body.hex().encode() if hexmode == 1 else body.hex().upper().encode())
    if align == "-":
        out += b" " * abs(padlen)  # printf("%*s", padlen, ""): a negative width pads too
    return bytes(out)


# -- cJSON-compatible JSON ------------------------------------------------------

class JsonObject(list):
    """An object as ordered (key, value) pairs; cJSON keeps duplicate keys."""


class CString(bytes):
    """A JSON string held as raw bytes (cJSON prints bytes >= 0x80 unchanged)."""


_INVALID = object()


def _cstring(data: bytes) -> CString:
    """cJSON_CreateString(): C strings stop at the first NUL."""
    return CString(data.split(b"\0", 1)[0])


def _json_properties(props: dict) -> list:
    members: list = []
    for key, value in props.items():
        if key == Property.USER_PROPERTY:
            members.append(("user-properties", JsonObject(
                (name.encode(), _cstring(val.encode())) for name, val in value)))
        elif key in JSON_PROPERTY_NAMES:
            name = JSON_PROPERTY_NAMES[key]
            values = value if isinstance(value, list) else [value]
            for item in values:
                if isinstance(item, str):
                    item = _cstring(item.encode())
                elif isinstance(item, bytes):
                    item = _cstring(item)
                members.append((name, item))
    return members


def parse_cjson(payload: bytes):
    """Parse like cJSON_ParseWithOpts(require_null_terminated): one value, whole payload."""
    if b"\0" in payload:
        return _INVALID
    text = payload.decode("utf-8", "surrogateescape")

    def reject_constant(name):
        raise ValueError(name)

    try:
        return _to_cjson(json.loads(text, strict=False, object_pairs_hook=JsonObject,
                                    parse_constant=reject_constant))
    except (ValueError, RecursionError):
        return _INVALID


def _to_cjson(value):
    if isinstance(value, str):
        return CString(value.encode("utf-8", "surrogateescape"))
    if isinstance(value, JsonObject):
        return JsonObject((k.encode("utf-8", "surrogateescape"), _to_cjson(v)) for k, v in value)
    if isinstance(value, list):
        return [_to_cjson(v) for v in value]
    return value


def dump_cjson(value, pretty: bool, depth: int = 0) -> bytes:
    if value is None:
        return b"null"
    if value is True:
        return b"true"
    if value is False:
        return b"false"
    if isinstance(value, (int, float)):
        return _number(value)
    if isinstance(value, str):
        return _escape(value.encode())
    if isinstance(value, bytes) and not isinstance(value, JsonObject):
        return _escape(value)
    if isinstance(value, JsonObject):
        if not pretty:
            return b"{" + b",".join(_escape(_key(k)) + b":" + dump_cjson(v, False, depth + 1)
                                    for k, v in value) + b"}"
        inner = b"\t" * (depth + 1)
        out = bytearray(b"{\n")
        for index, (k, v) in enumerate(value):
            out += inner + _escape(_key(k)) + b":\t" + dump_cjson(v, True, depth + 1)
            out += b",\n" if index < len(value) - 1 else b"\n"
        out += b"\t" * depth + b"}"
        return bytes(out)
    separator = b", " if pretty else b","
    return b"[" + separator.join(dump_cjson(v, pretty, depth + 1) for v in value) + b"]"


def _key(key) -> bytes:
    return key.encode() if isinstance(key, str) else key


def _number(value) -> bytes:
    d = float(value)
    if math.isnan(d) or math.isinf(d):
        return b"null"
    as_int = max(min(int(d), 2**31 - 1), -(2**31))  # cJSON's saturated valueint
    if d == float(as_int):
        return b"%d" % as_int
    text = "%1.15g" % d
    if float(text) != d:
        text = "%1.17g" % d
    return text.encode()


_ESCAPE_TABLE = {0x22: b'\\"', 0x5C: b"\\\\", 0x08: b"\\b", 0x0C: b"\\f", 0x0A: b"\\n",
                 0x0D: b"\\r", 0x09: b"\\t"}


def _escape(data: bytes) -> bytes:
    out = bytearray(b'"')
    for byte in data:
        if byte in _ESCAPE_TABLE:
            out += _ESCAPE_TABLE[byte]
        elif byte < 32:
            out += b"\\u%04x" % byte
        else:
            out.append(byte)
    out += b'"'
    return bytes(out)
