"""Issue 14, defect 1: every way a connection ends finishes its cleanup even when one
step raises, and says so in the log.

Seen before the fix: a will whose publish raised (a 1,000-level will topic hit the
recursion limit) escaped `connection_lost` from the uvloop callback, so the will was
never sent and the clean session was never ended; each such client left a ghost session
that kept queueing messages. Steps are made to fail here on purpose (no peer is faked:
the broker's own method is swapped for one that raises).
"""

import pytest

from midge.protocol.packets import Will
from tests.broker.harness import Harness

V311_V5 = pytest.mark.parametrize("version", [4, 5])


def _errors(h):
    return [m for m in h.log.messages("error") if "closing" in m]


def _fail_once(monkeypatch, obj, name):
    """Make `obj.name` raise on its first call, then behave."""
    real = getattr(obj, name)
    calls = []

    def broken(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise RuntimeError(f"{name} broke")
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, broken)
    return calls


def _no_ghost(h, client_id):
    broker = h.broker
    assert client_id not in broker.sessions, f"ghost session {client_id}"
    assert not [c for c in broker.clients if c.client_id == client_id]
    assert broker.subs.count == sum(len(s.subscriptions) for s in broker.sessions.values())


@V311_V5
def test_connection_lost_ends_the_session_when_the_will_raises(monkeypatch, version):
    h = Harness()
    watcher = h.connect("watcher")
    watcher.subscribe("will/#", 1)
    conn = h.connect("c", version=version, will=Will("will/c", b"gone", 1, False))
    conn.subscribe("t/#", 1)
    _fail_once(monkeypatch, h.broker, "publish_will")
    conn.lose()                      # must not raise
    _no_ghost(h, "c")
    assert any("RuntimeError: publish_will broke" in m for m in _errors(h)), h.log.messages("error")
    # The broker goes on: a later publish reaches the watcher, nothing queues for "c".
    pub = h.connect("p")
    pub.publish("will/x", b"1", qos=1)
    assert [m.payload for m in watcher.publishes()] == [b"1"]


@V311_V5
def test_takeover_completes_when_the_old_cleanup_raises(monkeypatch, version):
    h = Harness()
    old = h.connect("dup", version=version, will=Will("will/dup", b"x"))
    _fail_once(monkeypatch, h.broker, "publish_will")
    new = h.connect("dup", version=version)     # takeover sends the old will: it raises
    assert old.client.state == 2 and not new.closed
    assert h.broker.sessions["dup"].client is new.client
    assert h.broker.clients == {new.client}
    assert _errors(h)


def test_keepalive_expiry_closes_every_due_client_when_one_raises(monkeypatch):
    h = Harness()
    conns = [h.connect(f"k{i}", keepalive=10) for i in range(5)]
    calls = _fail_once(monkeypatch, h.broker, "end_session")
    h.advance(16)
    assert all(c.closed for c in conns)
    assert len(calls) == 5
    assert h.broker.clients == set()
    assert _errors(h)
    # The one whose end_session raised: its client is gone and marked, its session is
    # the only one left (the error is logged; nothing else keeps it).
    assert len(h.broker.sessions) <= 1


def test_shutdown_closes_every_client_when_one_raises(monkeypatch):
    h = Harness()
    conns = [h.connect(f"s{i}", version=5) for i in range(5)]
    _fail_once(monkeypatch, h.broker, "end_session")
    h.broker.shutdown(h.now)                     # must not raise
    h.drain()
    assert all(c.closed for c in conns)
    assert h.broker.clients == set()
    assert _errors(h)


def test_connection_lost_finishes_when_the_disconnect_notification_raises(monkeypatch):
    # Security.notify never lets a plugin's exception out; a bug of its own would.
    h = Harness(plugin="class Plugin:\n    def on_disconnect(self, client):\n        pass\n")
    assert h.broker.notify_plugins
    real = h.security.notify

    def notify(event, client, *args):
        if event == "on_disconnect":
            raise RuntimeError("notification broke")
        return real(event, client, *args)

    monkeypatch.setattr(h.security, "notify", notify)
    watcher = h.connect("watcher")
    watcher.subscribe("will/#")
    conn = h.connect("c", will=Will("will/c", b"gone"))
    conn.lose()
    assert [m.payload for m in watcher.publishes()] == [b"gone"]
    _no_ghost(h, "c")
    assert _errors(h)
