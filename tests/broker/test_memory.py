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
