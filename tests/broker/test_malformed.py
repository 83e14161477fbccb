"""Malformed input: v5 DISCONNECT with the decoder's reason code, v3 close, log line."""

import pytest

from midge.protocol.constants import ReasonCode
from midge.protocol.packets import Disconnect
from tests.broker.harness import Harness


@pytest.mark.parametrize("version", [4, 5])
def test_malformed_after_connect(version):
    h = Harness()
    conn = h.connect("c", version=version)
    conn.send_raw(b"\x30\x01\x00")  # PUBLISH whose topic length runs past the packet
    assert conn.closed
    packets = conn.take()
    if version == 5:
        assert isinstance(packets[-1], Disconnect)
        assert packets[-1].reason_code >= 0x80
    else:
        assert packets == []
    assert h.log.has("Client c disconnected due to")


def test_oversize_packet_v5():
    h = Harness(max_packet_size=100)
    conn = h.connect("c", version=5)
    conn.publish("t", b"x" * 200)
    assert conn.closed
    assert conn.take()[-1].reason_code == ReasonCode.PACKET_TOO_LARGE
    assert h.log.has("Client c disconnected due to oversize packet.")


def test_packets_before_error_are_handled():
    h = Harness()
    sub = h.connect("sub")
    sub.subscribe("t")
    conn = h.connect("c")
    from midge.protocol.codec import encode
    from midge.protocol.packets import Publish
    conn.send_raw(encode(Publish("t", b"ok"), 4) + b"\x30\x01\x00")
    assert conn.closed
    assert [m.payload for m in sub.publishes()] == [b"ok"]


def test_reason_string_quoting_a_huge_topic_is_cut_not_an_internal_error():
    # A 64 KiB topic quoted in the Reason String would not fit a string field.
    from midge.broker.client import REASON_STRING_MAX
    from midge.protocol.constants import Property, ReasonCode
    from tests.conformance import packets as raw
    h = Harness()
    conn = h.connect("c", version=5)
    conn.send_raw(raw.gen_publish("a" * 65530 + "/#", 0, b"", proto_ver=5))
    [disconnect] = conn.take()
    assert disconnect.reason_code == ReasonCode.TOPIC_NAME_INVALID
    assert len(disconnect.properties[Property.REASON_STRING]) == REASON_STRING_MAX
    assert not h.log.has("Internal error")
