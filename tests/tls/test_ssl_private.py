"""The private CPython ssl names (server/ssl_private.py): checked at import, with fallbacks.

On this Python both shortcuts must be in use (the speed of every TLS record and of every
mutual handshake depends on them); when one breaks, the public path must carry the same
traffic and the self-test must say which path it took.
"""

import ssl

import pytest

from midge.log import LogType, MemoryLog
from midge.server import ssl_private, tls_context, tls_stage
from midge.server.tls_context import TlsListenerContext
from tests.tls.memory import Pair, client_context, listener

V12, V13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3


def test_both_shortcuts_pass_their_self_test_on_this_python(pki):
    assert ssl_private.SHORTCUTS_OK, ssl_private.SELF_TEST
    assert "_sslobj" in ssl_private.SELF_TEST and "_ssl._SSLContext" in ssl_private.SELF_TEST
    stage = TlsListenerContext.from_listener(listener(pki), None, None).new_stage()
    assert stage._records is stage._ssl._sslobj  # records skip SSLObject.read's frame


def test_the_self_test_is_logged_when_a_context_is_built(pki):
    log = MemoryLog()
    TlsListenerContext.from_listener(listener(pki), None, log)
    assert log.messages(LogType.DEBUG) == [ssl_private.SELF_TEST]
    assert log.messages(LogType.WARNING) == []


def test_a_broken_candidate_falls_back_and_says_why():
    record_name, record, notes = ssl_private.resolve(
        [("gone", lambda ssl_object: ssl_object._no_such_attribute),
         ("wrong", lambda ssl_object: ssl.MemoryBIO()),  # read() gives b"", not the record
         *ssl_private.record_layer_candidates()[1:]],
        ssl_private._check_record_layer)
    assert record_name == "SSLObject.read (public)"
    assert [note.split(" failed")[0] for note in notes] == ["gone", "wrong"]
    name, setter, notes = ssl_private.resolve([("deaf", lambda ctx, callback: None), ("absent", None)],
                                              ssl_private._check_message_callback)
    assert (name, setter) == (None, None)
    assert "deaf failed" in notes[0] and "did not see the ClientHello" in notes[0]
    assert notes[1] == "absent missing"


def _mutual_pair(pki, cert, version):
    context = TlsListenerContext.from_listener(listener(pki, require_certificate=True), None, None)
    return context, Pair(context.new_stage("127.0.0.1:50000"), client_context(pki, cert, version))


@pytest.mark.parametrize("version", [V12, V13], ids=["tls1.2", "tls1.3"])
@pytest.mark.parametrize("hook", ["enums", "none"])
def test_the_public_fallbacks_carry_the_same_traffic(pki, monkeypatch, version, hook):
    public_reader = dict(ssl_private.record_layer_candidates())["SSLObject.read (public)"]
    monkeypatch.setattr(tls_stage, "record_layer", public_reader)
    setter = (dict(ssl_private.message_callback_candidates())["ssl.SSLContext._msg_callback (enums)"]
              if hook == "enums" else None)
    monkeypatch.setattr(tls_context.ssl_private, "set_message_callback", setter)

    context, p = _mutual_pair(pki, pki.client("alice"), version)
    assert (context.quiet_context is None) == (hook == "none")
    assert p.handshake() and p.stage.info.common_name == "alice"
    assert p.stage._records is p.stage._ssl
    assert p.client_send(b"\x10\x0c\x00\x04MQTT") == b"\x10\x0c\x00\x04MQTT"
    big = bytes(range(256)) * 300  # several records in one feed
    assert p.client_send(big) == big
    assert p.server_send(b"\x20\x02\x00\x00") == b"\x20\x02\x00\x00"

    _, refused = _mutual_pair(pki, pki.client("stranger", issuer="other", key_type="ec"), version)
    assert not refused.handshake()
    assert refused.stage.failure.kind == "unknown_ca"
    # The hook (here through ssl.py's enum wrapper) is what shows the client's certificate.
    assert ("CN=some other CA" in refused.stage.failure.reason) == (hook == "enums")
