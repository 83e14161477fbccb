"""Observe a running broker's ACL decisions with paho clients, without sleeps.

WRITE: the probed client publishes at QoS 1 and waits for its PUBACK (the broker has
routed the message by then); an `admin` subscribed to `#` then publishes a sentinel
to itself. Whatever the probe produced reaches admin before the sentinel.
READ: the probed client subscribes to the topic and to `sentinel/<client id>`; admin
publishes the probe and then the sentinel; the probe, if allowed, arrives first.
"""

from __future__ import annotations

import itertools
import time

from midge.security import READ, WRITE
from midge.security.passwords import hash_password
from tests.brokerproc import TIMEOUT_SCALE
from tests.clients import PahoClient

PASSWORDS = {"alice": "a-pw", "bob": "b-pw", "admin": "adm-pw"}

ACL = """\
# anonymous section
topic read anon/#
topic write anon/in
topic read
user alice
topic readwrite a/#
topic deny a/secret/#
topic read shared/#
topic write shared/alice
user bob
topic read shared/+
topic write bob/out
user admin
topic readwrite #
pattern readwrite sentinel/%c
pattern read inbox/%u/#
pattern write dev/%c/out
pattern write dev/b/out
pattern read both/%u/%c/%u
"""

# (username, client id, topic, access, expected)
CASES = [
    (None, "anon1", "anon/x", READ, True),
    (None, "anon1", "anon/x", WRITE, False),
    (None, "anon1", "anon/in", WRITE, True),
    (None, "anon1", "a/x", READ, False),
    (None, "anon1", "dev/anon1/out", WRITE, True),
    (None, "anon1", "read", WRITE, True),  # `topic read` alone: the topic "read", readwrite
    (None, "anon1", "inbox//x", READ, False),  # a %u pattern is skipped without a username
    ("alice", "al1", "a/x", WRITE, True),
    ("alice", "al1", "a/x", READ, True),
    ("alice", "al1", "a/secret/x", READ, False),
    ("alice", "al1", "a/secret", WRITE, False),
    ("alice", "al1", "shared/x", WRITE, False),
    ("alice", "al1", "shared/alice", WRITE, True),
    ("alice", "al1", "anon/x", READ, False),
    ("bob", "b1", "shared/x", READ, True),
    ("bob", "b1", "shared/x/y", READ, False),
    ("bob", "b1", "inbox/bob/1", READ, True),
    ("bob", "b1", "inbox/alice/1", READ, False),
    ("bob", "b1", "dev/b1/out", WRITE, True),
    ("bob", "b1", "dev/b2/out", WRITE, False),
    ("bob", "b1", "both/bob/b1/bob", READ, True),
    ("bob", "b1", "both/bob/b1/x", READ, False),
    ("bob", "b1", "bob/out", WRITE, True),
    ("bob", "b+1", "bob/out", WRITE, True),  # wildcard in the client id: own entries still apply,
    ("bob", "b1", "dev/b/out", WRITE, True),
    ("bob", "b+1", "dev/b/out", WRITE, False),  # but the patterns are refused
    ("bob", "b1", "$SYS/broker/x", WRITE, False),
]


def write_files(directory) -> tuple[str, str]:
    pw, acl = directory / "pw", directory / "acl"
    pw.write_text("".join(f"{u}:{hash_password(p.encode(), iterations=10)}\n" for u, p in PASSWORDS.items()))
    acl.write_text(ACL)
    return str(pw), str(acl)


class Prober:
    def __init__(self, port: int, version: int = 4):
        self.port, self.version = port, version
        self.counter = itertools.count()
        self.admin = PahoClient(port, "admin", version, username="admin", password=PASSWORDS["admin"])
        self.admin.subscribe("#", qos=1)

    def close(self):
        self.admin.disconnect()

    def _client(self, username, client_id):
        password = PASSWORDS.get(username) if username else None
        return PahoClient(self.port, client_id, self.version, username=username, password=password)

    def _until(self, client, payload: bytes):
        """Messages `client` receives up to (excluding) the one with `payload`."""
        seen = []
        deadline = time.monotonic() + 10 * TIMEOUT_SCALE
        while True:
            msg = client.message(max(0.0, deadline - time.monotonic()))
            if msg.payload == payload:
                return seen
            seen.append(msg)

    def allowed(self, username, client_id, topic, access) -> bool:
        n = next(self.counter)
        probe, end = f"probe-{n}".encode(), f"end-{n}".encode()
        client = self._client(username, client_id)
        try:
            if access == WRITE:
                client.publish(topic, probe, qos=1)
                self.admin.publish("sentinel/admin", end, qos=1)
                seen = self._until(self.admin, end)
            else:
                client.subscribe([(topic, 1), (f"sentinel/{client_id}", 1)])
                self.admin.publish(topic, probe, qos=1)
                self.admin.publish(f"sentinel/{client_id}", end, qos=1)
                seen = self._until(client, end)
        finally:
            client.disconnect()
        return any(m.topic == topic and m.payload == probe for m in seen)
