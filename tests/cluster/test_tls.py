"""TLS to NATS: `tls://` URLs with cluster_cafile (and a client certificate for a
nats-server that verifies clients), with certificates the test generates."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from tests.brokerproc import as_root_user, free_port
from tests.certs import make_pki
from tests.cluster.conftest import Nodes
from tests.conformance import packets as p
from tests.conformance.wire import connect, expect_publish, subscribe
from tests.peers import require_peer


@pytest.fixture
def tls_nats(tmp_path):
    """nats-server requiring TLS and a client certificate from the test CA."""
    require_peer("nats-server")
    from midge.server.natsproc import NatsServer

    pki = make_pki(tmp_path / "pki")
    server = NatsServer(str(tmp_path / "nats"), port=free_port(), extra_config=(
        f'tls {{\n  cert_file: "{pki.server_cert}"\n  key_file: "{pki.server_key}"\n'
        f'  ca_file: "{pki.ca_cert}"\n  verify: true\n  timeout: 5\n}}\n'))
    server.start()
    yield server, pki
    server.stop()


def test_nodes_over_mutual_tls_to_nats(tmp_path, tls_nats):
    server, pki = tls_nats
    cert, key = pki.client("midge-node")
    nodes = Nodes(tmp_path, SimpleNamespace(url=f"tls://127.0.0.1:{server.port}"))
    extra = f"cluster_cafile {pki.ca_cert}\ncluster_certfile {cert}\ncluster_keyfile {key}\n"
    try:
        a, b = nodes.start("a", extra), nodes.start("b", extra)
        nodes.joined(a, b)
        sub = connect(b.port, "tls-sub", 4)
        subscribe(sub, "tls/t", 1)
        pub = connect(a.port, "tls-pub", 4)
        pub.send(p.gen_publish("tls/t", 1, b"over tls", mid=1))
        pub.expect(p.gen_puback(1))
        mid = expect_publish(sub, "tls/t", b"over tls", qos=1)
        sub.send(p.gen_puback(mid))
    finally:
        nodes.stop_all()


def _start_alone(tmp_path, text: str) -> tuple[int, str]:
    port = free_port()
    conf = tmp_path / "m.conf"
    text = f"listener {port} 127.0.0.1\n" + text
    conf.write_text(text + as_root_user(text))   # root: keep the user that can read tmp_path
    result = subprocess.run([sys.executable, "-m", "midge", "broker", "-c", str(conf)],
                            capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout + result.stderr


def test_untrusted_nats_certificate_is_refused_and_named(tmp_path, tls_nats):
    server, pki = tls_nats
    cert, key = pki.client("midge-node")
    code, out = _start_alone(tmp_path, (
        f"cluster_url tls://127.0.0.1:{server.port}\ncluster_cafile {pki.other_ca_cert}\n"
        f"cluster_certfile {cert}\ncluster_keyfile {key}\n"))
    assert code == 1, out
    assert f"127.0.0.1:{server.port}" in out and "TLS" in out, out


def test_missing_client_certificate_is_refused(tmp_path, tls_nats):
    server, pki = tls_nats
    code, out = _start_alone(tmp_path, (
        f"cluster_url tls://127.0.0.1:{server.port}\ncluster_cafile {pki.ca_cert}\n"))
    assert code == 1, out
    assert f"127.0.0.1:{server.port}" in out, out
