"""Bridge TLS failures name the bridge's options, come from the one verified connection,
and a wrong bridge_psk says the keys differ (issue 13)."""

from __future__ import annotations

from tests.brokerproc import free_port, start_midge
from tests.certs import make_pki


def bridge(local: int, remote: int, extra: str) -> str:
    return (f"listener {local} 127.0.0.1\nallow_anonymous true\nconnection b\n"
            f"address localhost:{remote}\ntopic t/# out 1\nstart_type once\n{extra}")


def test_an_untrusted_remote_names_bridge_cafile_and_is_connected_to_once(tmp_path):
    pki = make_pki(tmp_path / "pki")
    remote_port, local_port = free_port(), free_port()
    (tmp_path / "remote").mkdir()
    (tmp_path / "local").mkdir()
    remote = start_midge(f"listener {remote_port} 127.0.0.1\nallow_anonymous true\n"
                         f"certfile {pki.server_cert}\nkeyfile {pki.server_key}\n", tmp_path / "remote", remote_port)
    local = None
    try:
        mark = 0
        local = start_midge(bridge(local_port, remote_port, f"bridge_cafile {pki.other_ca_cert}\n"),
                            tmp_path / "local", local_port)
        line = local.wait_for_log("Error creating bridge b")
        assert "issuer is not trusted (check bridge_cafile/bridge_capath)" in line, line
        assert "--cafile" not in line
        # The details come from the certificate sent in that one handshake.
        assert "subject CN=localhost" in line and "issuer CN=midge test root CA" in line, line
        local.stop()
        local = None
        remote.wait_for_log("during the handshake", start=mark)  # the bridge's (verified) attempt
        # Every connection but start_midge's readiness probe (connects, sends nothing).
        connections = sum("New connection from" in x for x in remote.lines)
        probes = sum("without sending anything" in x for x in remote.lines)
        assert connections - probes == 1, remote.output  # no second, unverified connection
    finally:
        if local is not None:
            local.stop()
        remote.stop()


def test_a_wrong_bridge_psk_says_the_keys_differ(tmp_path):
    remote_port, local_port = free_port(), free_port()
    (tmp_path / "psk").write_text("bridge-id:deadbeef0123\n")
    (tmp_path / "remote").mkdir()
    (tmp_path / "local").mkdir()
    remote = start_midge(f"listener {remote_port} 127.0.0.1\nallow_anonymous true\npsk_hint hint\n"
                         f"psk_file {tmp_path}/psk\n", tmp_path / "remote", remote_port)
    local = None
    try:
        local = start_midge(bridge(local_port, remote_port, "bridge_identity bridge-id\nbridge_psk 0badbeef0123\n"),
                            tmp_path / "local", local_port)
        line = local.wait_for_log("Error creating bridge b")
        assert "the PSK key (bridge_psk) differs from the server's key for this identity (bridge_identity)" in line
        remote_line = remote.wait_for_log("differs between the client and psk_file")
        assert "identity 'bridge-id'" in remote_line
        local.stop()
        local = start_midge(bridge(local_port, remote_port, "bridge_identity stranger\nbridge_psk deadbeef0123\n"),
                            tmp_path / "local", local_port)
        line = local.wait_for_log("Error creating bridge b")
        assert "does not know this PSK identity (bridge_identity)" in line, line
    finally:
        if local is not None:
            local.stop()
        remote.stop()
