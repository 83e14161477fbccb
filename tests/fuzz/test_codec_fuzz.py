"""Fuzz target: the codec (`protocol.codec.Decoder`), server and client roles, MQTT 3.1,
3.1.1 and 5.0. Inputs are random bytes and streams of valid packets damaged at byte
level; each is fed whole and in random pieces.

What must hold for any input: `feed` never raises; the error it records is an
`MQTTError` (which carries the reason code the broker answers with); feeding the same
bytes in pieces gives the same packets and the same error; a decoded packet encodes
again. See campaign.py for the budget and the corpus.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from midge.protocol.codec import Decoder, encode
from midge.protocol.errors import MQTTError
from tests.fuzz.campaign import corpus, hypothesis_settings, save_found, timeout_mark, until_spent
from tests.protocol.helpers import connect_bytes
from tests.protocol.test_properties_hypothesis import client_packets, server_packets

INTERESTING = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x30, 0x2F, 0x23, 0x2B, 0xC0, 0xE0]


def _pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    out, start = [], 0
    for point in points:
        out.append(data[start:point])
        start = point
    out.append(data[start:])
    return out


def check_decoder(role: str, version: int, data: bytes, cuts: list[int], max_packet_size=None) -> None:
    """The properties every input must keep (see the module docstring)."""
    def decoder():
        return Decoder(version=None if role == "server" else version, role=role,
                       max_packet_size=max_packet_size)

    whole = decoder()
    packets = whole.feed(data)
    assert isinstance(packets, list)
    assert whole.error is None or isinstance(whole.error, MQTTError), repr(whole.error)
    assert isinstance(getattr(whole.error, "reason_code", 0), int)
    split = decoder()
    pieces: list = []
    for piece in _pieces(data, cuts):
        pieces += split.feed(piece)
    assert pieces == packets, "feeding in pieces decoded something else"
    assert type(split.error) is type(whole.error), (whole.error, split.error)
    used = whole.version or version
    for packet in packets:
        encode(packet, used)


def _stream(role: str, version: int, packets: list) -> bytes:
    data = b"".join(encode(packet, version) for packet in packets)
    return connect_bytes(version) + data if role == "server" else data


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """`data` with 0-4 byte-level mutations: flips, interesting bytes, cuts, inserts,
    repeats and splices of itself."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.integers(0, 5))
        at = draw(st.integers(0, max(0, len(buf) - 1)))
        if op == 0 and buf:
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif op == 1 and buf:
            buf[at] = draw(st.sampled_from(INTERESTING))
        elif op == 2:
            del buf[at:at + draw(st.integers(1, 8))]
        elif op == 3:
            buf[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == 4 and buf:
            end = at + draw(st.integers(1, 16))
            buf[at:at] = buf[at:end]
        elif op == 5:
            buf = buf[:at]
    return bytes(buf)


@st.composite
def codec_inputs(draw):
    role = draw(st.sampled_from(["server", "client"]))
    version = draw(st.sampled_from([3, 4, 5]))
    if draw(st.integers(0, 4)) == 0:
        data = draw(st.binary(max_size=300))
        if role == "server" and draw(st.booleans()):
            data = connect_bytes(version) + data
    else:
        source = client_packets(version) if role == "server" else server_packets(version)
        data = draw(damaged(_stream(role, version, draw(st.lists(source, max_size=6)))))
    cuts = draw(st.lists(st.integers(0, 10_000), max_size=6))
    limit = draw(st.one_of(st.none(), st.integers(2, 400)))
    return role, version, data, cuts, limit


@timeout_mark()
def test_codec_fuzz():
    @hypothesis_settings(brief_examples=300)
    @given(codec_inputs())
    def run(case):
        role, version, data, cuts, limit = case
        try:
            check_decoder(role, version, data, cuts, limit)
        except Exception:
            save_found("codec", ".json", {"about": "found by test_codec_fuzz", "role": role,
                                          "version": version, "max_packet_size": limit,
                                          "cuts": cuts, "hex": data.hex()})
            raise

    until_spent(run)


@pytest.mark.parametrize("path", corpus("codec", ".json"), ids=lambda path: path.stem)
def test_codec_corpus(path):
    case = json.loads(path.read_text())
    data = bytes.fromhex(case["hex"])
    cuts_every = list(range(0, len(data) + 1, max(1, len(data) // 2000)))
    for cuts in (case.get("cuts", []), cuts_every, []):
        check_decoder(case["role"], case["version"], data, cuts, case.get("max_packet_size"))
    if "error" in case:   # the answer the fix gave it
        decoder = Decoder(role=case["role"], version=None if case["role"] == "server" else case["version"])
        decoder.feed(data)
        assert (type(decoder.error).__name__ if decoder.error else None) == case["error"]
