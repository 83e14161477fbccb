"""Started as root, a node reads its cluster TLS key and `.creds` file as root, like every
other key file (server/privileges.py), then serves as `user`, who cannot read them.

Everything sits in pytest's tmp_path, which only root can enter (and the key and the
creds file are 0600 in a 0700 folder, like /etc/letsencrypt/live): before the fix the
node, switched to nobody, failed with "Permission denied" when it joined NATS. The NATS
modules must be loaded before the switch too (no "imported after the switch" warning).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.brokerproc import free_port, start_midge
from tests.certs import make_pki
from tests.cluster.conftest import run_node_until_exit
from tests.conformance import packets as p
from tests.conformance.wire import connect, expect_publish, subscribe
from tests.peers import require_module, require_peer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching user needs root")



def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class Nkey:
    """An nkey pair (nkeys package, which nats-py needs to sign with a .creds file)."""

    def __init__(self, prefix_name: str):
        nkeys = require_module("nkeys")
        self.seed = nkeys.encode_seed(os.urandom(32), getattr(nkeys, f"PREFIX_BYTE_{prefix_name}")).decode()
        self.pair = nkeys.from_seed(bytearray(self.seed.encode()))
        self.public = self.pair.public_key.decode()

    def jwt(self, subject: str, name: str, nats: dict) -> str:
        """A NATS JWT (v2 claims) about `subject`, signed by this key."""
        claims = {"jti": "", "iat": int(time.time()), "iss": self.public, "name": name, "sub": subject,
                  "nats": {**nats, "version": 2}}
        claims["jti"] = base64.b32encode(hashlib.sha256(json.dumps(claims).encode()).digest()).decode().rstrip("=")
        signed = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode()) + "." + _b64(json.dumps(claims).encode())
        return signed + "." + _b64(self.pair.sign(signed.encode()))


def operator_mode() -> tuple[str, str]:
    """(nats-server config lines for operator mode with JetStream, a user's .creds text)."""
    operator, account, system, user = Nkey("OPERATOR"), Nkey("ACCOUNT"), Nkey("ACCOUNT"), Nkey("USER")
    unlimited = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True,
                 "conn": -1, "leaf": -1}
    jetstream = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}
    accounts = {account.public: operator.jwt(account.public, "midge", {"type": "account",
                                                                        "limits": {**unlimited, **jetstream}}),
                system.public: operator.jwt(system.public, "SYS", {"type": "account", "limits": unlimited})}
    server = (f"operator: {operator.jwt(operator.public, 'op', {'type': 'operator'})}\n"
              f"system_account: {system.public}\nresolver: MEMORY\nresolver_preload: {{\n"
              + "".join(f"  {key}: {value}\n" for key, value in accounts.items()) + "}\n")
    user_jwt = account.jwt(user.public, "node", {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1,
                                                 "payload": -1})
    creds = (f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
             "************************* IMPORTANT *************************\n"
             "NKEY Seed printed below can be used to sign and prove identity.\n\n"
             f"-----BEGIN USER NKEY SEED-----\n{user.seed}\n------END USER NKEY SEED------\n")
    return server, creds


def test_cluster_key_and_creds_read_as_root_then_served_as_nobody(tmp_path):
    """nats-server in operator mode (JWT accounts, JetStream) over mutual TLS: node a,
    switched to nobody, authenticates with a root-only .creds file and a root-only key."""
    require_peer("nats-server")
    from midge.server.natsproc import NatsServer

    pki = make_pki(tmp_path / "pki")
    accounts, creds_text = operator_mode()
    server = NatsServer(str(tmp_path / "nats"), port=free_port(), extra_config=(
        f'tls {{\n  cert_file: "{pki.server_cert}"\n  key_file: "{pki.server_key}"\n'
        f'  ca_file: "{pki.ca_cert}"\n  verify: true\n  timeout: 5\n}}\n' + accounts))
    server.start()
    live = tmp_path / "live"   # root only, like /etc/letsencrypt/live
    live.mkdir(mode=0o700)
    cert, key = pki.client("midge-node")
    for name, source in {"ca.crt": pki.ca_cert, "node.crt": cert, "node.key": key}.items():
        shutil.copy(source, live / name)
        (live / name).chmod(0o600)
    creds = live / "node.creds"
    creds.write_text(creds_text)
    creds.chmod(0o600)
    cluster = (f"cluster_url tls://127.0.0.1:{server.port}\ncluster_cafile {live / 'ca.crt'}\n"
               f"cluster_certfile {live / 'node.crt'}\ncluster_keyfile {live / 'node.key'}\n"
               f"cluster_credentials {creds}\nallow_anonymous true\n")
    started = []
    try:
        port_a, port_b = free_port(), free_port()
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        a = start_midge(f"user nobody\nlistener {port_a} 127.0.0.1\ncluster_node_id a\n" + cluster,
                        tmp_path / "a", port_a)
        started.append(a)
        b = start_midge(f"listener {port_b} 127.0.0.1\ncluster_node_id b\n" + cluster, tmp_path / "b", port_b)
        started.append(b)
        a.wait_for_log("Switched to user nobody")
        a.wait_for_log("node b is part of cluster")
        b.wait_for_log("node a is part of cluster")
        # Node a (as nobody) routes both ways, and its retained message reached JetStream.
        for pub_port, sub_port, tag in ((port_a, port_b, "ab"), (port_b, port_a, "ba")):
            sub = connect(sub_port, f"rf-sub-{tag}", 5)
            subscribe(sub, f"rf/{tag}", 1)
            pub = connect(pub_port, f"rf-pub-{tag}", 5)
            pub.send(p.gen_publish(f"rf/{tag}", 1, tag.encode(), mid=1, proto_ver=5, retain=True))
            pub.expect(p.gen_puback(1, 5))
            mid = expect_publish(sub, f"rf/{tag}", tag.encode(), qos=1)
            sub.send(p.gen_puback(mid, 5))
        assert "Permission denied" not in a.output, a.output
        assert "imported after the switch" not in a.output, a.output
    finally:
        for process in started:
            process.stop()
        server.stop()
    assert "Traceback" not in a.output, a.output


def test_without_the_creds_the_operator_mode_server_refuses(tmp_path):
    """The counter-check: the server above really demands the credentials."""
    require_peer("nats-server")
    from midge.server.natsproc import NatsServer

    accounts, _ = operator_mode()
    server = NatsServer(str(tmp_path / "nats"), port=free_port(), extra_config=accounts)
    server.start()
    try:
        port = free_port()
        returncode, out = run_node_until_exit(tmp_path, f"listener {port} 127.0.0.1\ncluster_url nats://127.0.0.1:{server.port}\nuser root\n")
        assert returncode == 1 and "authentication refused" in out, out
    finally:
        server.stop()


def test_workers_switch_user_with_the_nats_modules_loaded(tmp_path):
    """`workers 2` as root with `user nobody`: each worker joins the embedded NATS as
    nobody, with every NATS module loaded before its switch."""
    require_peer("nats-server")
    port = free_port()
    process = start_midge(f"user nobody\nlistener {port} 127.0.0.1\nallow_anonymous true\nworkers 2\n",
                          tmp_path, port)
    try:
        process.wait_for_log("2 workers running")
        process.wait_for_log("-w1 is part of cluster")
        process.wait_for_log("-w2 is part of cluster")
        assert process.output.count("Switched to user nobody") == 2, process.output
        sub = connect(port, "wk-root-sub", 5)
        subscribe(sub, "wk/root", 1)
        for i in range(4):   # new connections, spread over both workers by the kernel
            pub = connect(port, f"wk-root-pub{i}", 5)
            pub.send(p.gen_publish("wk/root", 1, str(i).encode(), mid=1, proto_ver=5))
            pub.expect(p.gen_puback(1, 5))
            mid = expect_publish(sub, "wk/root", str(i).encode(), qos=1)
            sub.send(p.gen_puback(mid, 5))
        assert "imported after the switch" not in process.output, process.output
    finally:
        process.stop()
    assert "Traceback" not in process.output, process.output
