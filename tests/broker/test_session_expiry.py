"""Session expiry: v5 intervals, DISCONNECT rules, persistent_client_expiration."""

from midge.protocol.constants import Property, ReasonCode
from midge.protocol.packets import Disconnect
from tests.broker.harness import Harness


def _expiry(seconds):
    return {Property.SESSION_EXPIRY_INTERVAL: seconds}


def test_v5_session_expires():
    h = Harness()
    conn = h.connect("s", version=5, clean_start=False, properties=_expiry(10))
    conn.subscribe("t")
    conn.disconnect()
    h.advance(9)
    assert "s" in h.broker.sessions
    h.advance(2)
    assert "s" not in h.broker.sessions
    assert h.broker.subs.count == 0
    assert h.log.has("Expiring client s due to timeout.")
    again = h.connect("s", version=5, clean_start=False, properties=_expiry(10))
    assert again.connack.session_present is False


def test_v5_expiry_zero_ends_at_disconnect():
    h = Harness()
    conn = h.connect("s", version=5, clean_start=False)
    conn.subscribe("t")
    conn.disconnect()
    assert "s" not in h.broker.sessions


def test_disconnect_can_change_expiry():
    h = Harness()
    conn = h.connect("s", version=5, properties=_expiry(10))
    conn.disconnect(0, _expiry(100))
    h.advance(50)
    assert "s" in h.broker.sessions


def test_disconnect_cannot_change_zero_to_nonzero():
    h = Harness()
    conn = h.connect("s", version=5)
    conn.disconnect(0, _expiry(100))
    [packet] = conn.take()
    assert isinstance(packet, Disconnect) and packet.reason_code == ReasonCode.PROTOCOL_ERROR
    assert conn.closed
    assert "s" not in h.broker.sessions


def test_v3_persistent_session_never_expires_by_default():
    h = Harness()
    h.connect("s", clean_start=False).disconnect()
    h.advance(10 ** 7)
    assert "s" in h.broker.sessions


def test_persistent_client_expiration():
    h = Harness(persistent_client_expiration="1h")
    h.connect("s", clean_start=False).disconnect()
    h.advance(3599)
    assert "s" in h.broker.sessions
    h.advance(2)
    assert "s" not in h.broker.sessions
    assert h.broker.stats.clients_expired == 1


def test_v5_never_expiring_session_uses_persistent_client_expiration():
    h = Harness(persistent_client_expiration="1h")
    h.connect("s", version=5, properties=_expiry(0xFFFFFFFF)).disconnect()
    h.advance(3601)
    assert "s" not in h.broker.sessions


def test_reconnect_cancels_expiry():
    h = Harness()
    h.connect("s", version=5, clean_start=False, properties=_expiry(10)).disconnect()
    h.advance(5)
    conn = h.connect("s", version=5, clean_start=False, properties=_expiry(10))
    h.advance(20)
    assert h.broker.sessions["s"].client is conn.client
