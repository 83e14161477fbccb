"""Real nats-server processes for the cluster tests (never a mock)."""

from __future__ import annotations

import pytest

from tests.peers import require_peer


@pytest.fixture
def nats_server(tmp_path):
    require_peer("nats-server")
    from midge.server.natsproc import NatsServer

    server = NatsServer(str(tmp_path / "nats"))
    server.start()
    yield server
    server.stop()
