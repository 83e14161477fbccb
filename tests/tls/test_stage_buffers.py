"""How the TLS stage hands bytes to OpenSSL: in pieces, so its memory BIOs stay small.

A MemoryBIO keeps the largest size it ever had for the life of the connection; the stage
feeds the handshake in small pieces and application data record by record (see
`_HANDSHAKE_PIECE`, `_RECORD_PIECE` in server/tls_stage.py). These tests check that nothing is
lost or reordered by the cutting, and (with glibc) that a burst leaves no large buffer.
"""

import ctypes
import ctypes.util
import gc
import os
import ssl

import pytest

from midge.server import tls_stage
from midge.server.tls_context import TlsListenerContext
from tests.tls.memory import Pair, client_context, listener

V12, V13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
VERSIONS = pytest.mark.parametrize("version", [V12, V13], ids=["tls1.2", "tls1.3"])


def mutual_pair(pki, version=None):
    context = TlsListenerContext.from_listener(listener(pki, require_certificate=True), None, None)
    return Pair(context.new_stage("127.0.0.1:50000"), client_context(pki, pki.client("alice"), version))


def test_mqtt_bytes_in_the_same_read_as_the_clients_finished(pki):
    """TLS 1.3: the client may send CONNECT right behind its Finished, in one segment."""
    p = mutual_pair(pki, V13)
    stage = p.stage
    p.cin.write(b"")
    while True:  # the client finishes first in TLS 1.3: it sends Finished and may write at once
        try:
            p.client.do_handshake()
            break
        except ssl.SSLWantReadError:
            out = p.cout.read()
            assert stage.feed(out) == b""
            p.cin.write(stage.data_to_send())
    p.client.write(b"\x10\x0c\x00\x04MQTT")
    flight = p.cout.read()
    assert len(flight) > 2 * tls_stage._HANDSHAKE_PIECE  # certificate, verify, finished, data
    assert stage.feed(flight) == b"\x10\x0c\x00\x04MQTT"
    assert stage.handshake_complete and stage.info.common_name == "alice"


@VERSIONS
def test_bursts_larger_than_a_piece_arrive_whole_and_in_order(pki, version):
    p = mutual_pair(pki, version)
    assert p.handshake()
    stage = p.stage
    # Records of many sizes, so piece boundaries fall inside records and headers.
    sizes = [1, 5, 100, 16383, 16384, 16385, 40000, 7, 70000, 3]
    payloads = [bytes([n % 251]) * n for n in sizes]
    for payload in payloads:
        p.client.write(payload)
    burst = p.cout.read()
    assert len(burst) > 3 * tls_stage._RECORD_PIECE
    assert stage.feed(burst) == b"".join(payloads)
    # One socket read cut anywhere: still the same bytes.
    for payload in payloads:
        p.client.write(payload)
    burst = p.cout.read()
    cut = len(burst) // 3 + 1
    assert stage.feed(burst[:cut]) + stage.feed(burst[cut:]) == b"".join(payloads)

    big = os.urandom(100_000)
    stage.send(b"small first")
    stage.send(big)
    stage.send(b"small last")
    stage.close()
    p.cin.write(stage.data_to_send())
    assert stage.data_to_send() == b""
    received = []
    while True:
        try:
            chunk = p.client.read(1 << 20)
        except ssl.SSLZeroReturnError:
            break  # the close_notify came last
        if not chunk:
            break  # the close_notify came last (reported as b"" once seen)
        received.append(chunk)
    assert b"".join(received) == b"small first" + big + b"small last"


def _malloc_in_use():
    """glibc's bytes in use, heap and mmap (mallinfo2), or None elsewhere."""
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path)
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError, TypeError):
        return None

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    mallinfo2.restype = Mallinfo2
    def in_use():
        gc.collect()
        info = mallinfo2()
        return info.uordblks + info.hblkhd

    return in_use


def test_a_burst_leaves_no_large_buffer_behind(pki):
    """1 MiB in and out of one connection keeps well under 200 KiB once delivered.

    Without the pieces each memory BIO would keep ~4/3 of the burst (~1.4 MiB each).
    """
    in_use = _malloc_in_use()
    if in_use is None:
        pytest.skip("needs glibc's mallinfo2 to see OpenSSL's memory")
    p = mutual_pair(pki, V13)
    assert p.handshake()
    stage = p.stage
    before = in_use()
    chunk = b"m" * 4096
    for _ in range(256):
        p.client.write(chunk)
    burst = p.cout.read()
    assert len(stage.feed(burst)) == 256 * len(chunk)
    del burst
    stage.send(b"s" * (1 << 20))
    assert len(stage.data_to_send()) > 1 << 20
    # Only the server side may remain: the client's BIOs grew with the burst too.
    p.client = p.cin = p.cout = None
    grown = in_use() - before
    assert grown < 200 * 1024, f"the stage kept {grown // 1024} KiB after a 1 MiB burst"
