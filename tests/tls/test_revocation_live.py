"""disconnect_on_revocation: a live session whose certificate gets revoked is dropped (0x98)."""

from __future__ import annotations

import os
import ssl

from tests.brokerproc import free_port, start_midge
from tests.clients import PahoClient


def test_revoked_certificate_disconnects_live_session(pki, tmp_path):
    cert, key = pki.client("live-revoke", key_type="ec")
    keeper_cert, keeper_key = pki.client("live-keeper", key_type="ec")
    crl = tmp_path / "crl.pem"
    crl.write_bytes(pki.crl(revoked=[]).read_bytes())
    port = free_port()
    broker = start_midge(
        f"tls_watch_interval 0.2\nlistener {port} 127.0.0.1\ncafile {pki.ca_cert}\n"
        f"certfile {pki.server_cert}\nkeyfile {pki.server_key}\nrequire_certificate true\n"
        f"use_identity_as_username true\ncrlfile {crl}\ndisconnect_on_revocation true\n",
        tmp_path, port)

    def tls_context(cert, key):
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        ctx.load_cert_chain(str(cert), str(key))
        return ctx

    try:
        doomed = PahoClient(port, client_id="doomed", version=5, host="localhost",
                            tls_context=tls_context(cert, key))
        keeper = PahoClient(port, client_id="keeper", version=5, host="localhost",
                            tls_context=tls_context(keeper_cert, keeper_key))
        mark = broker.mark()
        new_crl = pki.crl(revoked=[cert], filename="crl-revoking.pem")
        os.replace(new_crl, crl)  # atomic swap, as an operator's CRL update would do
        event = doomed.wait_event("disconnect", timeout=15)
        assert event[2].value == 0x98  # Administrative action
        line = broker.wait_for_log("Disconnecting client doomed", start=mark)
        assert "revoked" in line
        # The other client, whose certificate is still good, stays connected.
        keeper.publish("still/here", b"1", qos=1)
        assert keeper.client.is_connected()
        keeper.disconnect()
    finally:
        broker.stop()
