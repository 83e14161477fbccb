"""A closed connection's objects are freed at once (regression: timer entries kept them 90 s)."""

import gc
import weakref

import pytest

from midge.protocol.packets import Disconnect
from tests.broker.harness import Harness


@pytest.mark.parametrize("ending", ["disconnect", "network_loss", "never_connected"])
def test_closed_clients_are_not_kept_alive(ending):
    h = Harness()
    refs = []
    for i in range(50):
        if ending == "never_connected":
            conn = h.open(version=4)  # TCP accepted, no CONNECT yet (pre-CONNECT timer)
        else:
            conn = h.connect(f"c{i}", keepalive=60)
        refs.append(weakref.ref(conn.client))
        if ending == "disconnect":
            conn.send(Disconnect())
        conn.lose()
        del h.conns[id(conn.client)]  # the test harness's own reference
        del conn
    gc.collect()
    alive = [r for r in refs if r() is not None]
    assert not alive, f"{len(alive)} of 50 closed clients still referenced"


def test_idle_sessions_share_one_empty_mapping_until_they_write():
    from midge.broker.session import Session
    from midge.empty import EMPTY_MAP as NO_ENTRIES

    h = Harness()
    conn = h.connect("idle")
    session = h.broker.sessions["idle"]
    assert session.subscriptions is NO_ENTRIES and session.inflight is NO_ENTRIES
    assert session.incoming_qos2 is NO_ENTRIES
    with pytest.raises(TypeError):
        session.inflight[1] = None  # a writer that forgot Session.own() fails loudly
    conn.subscribe("t/#", qos=1)
    assert session.subscriptions is not NO_ENTRIES and len(session.subscriptions) == 1
    assert len(NO_ENTRIES) == 0 and Session("other").subscriptions is NO_ENTRIES
