"""MQTT UTF-8 rules shared by the decoder and the broker (1.5.4), and variable byte integers."""

import pytest

from midge.protocol.errors import MalformedPacket
from midge.protocol.properties import encode_varint, read_varint, valid_utf8_payload


@pytest.mark.parametrize("payload, valid", [
    (b"", True), (b"hello", True), ("caf\u00e9 \u00a0 \U0001F600".encode(), True),
    (b"\xff", False), (b"\xed\xa0\x80", False), (b"a\x00", False), (b"tab\t", False),
    ("\ufffe".encode(), False),
])
def test_valid_utf8_payload(payload, valid):
    assert valid_utf8_payload(payload) is valid


@pytest.mark.parametrize("value, wire", [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"), (16384, b"\x80\x80\x01"),
    (2097151, b"\xff\xff\x7f"), (2097152, b"\x80\x80\x80\x01"), (268435455, b"\xff\xff\xff\x7f"),
])
def test_varint(value, wire):
    assert encode_varint(value) == wire
    assert read_varint(wire, 0, len(wire)) == (value, len(wire))


def test_varint_limits():
    with pytest.raises(ValueError):
        encode_varint(268435456)
    with pytest.raises(MalformedPacket, match="longer than 4 bytes"):
        read_varint(b"\xff\xff\xff\xff\x01", 0, 5)
    with pytest.raises(MalformedPacket, match="past the end"):
        read_varint(b"\xff\xff", 0, 2)
