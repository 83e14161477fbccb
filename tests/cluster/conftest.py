"""Real nats-server and midge processes for the cluster tests (never a mock)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.brokerproc import free_port, start_midge
from tests.peers import require_peer


@pytest.fixture
def nats_server(tmp_path):
    require_peer("nats-server")
    from midge.server.natsproc import NatsServer

    server = NatsServer(str(tmp_path / "nats"), port=free_port())
    server.start()
    yield server
    server.stop()


def run_node_until_exit(tmp_path, conf_text: str, timeout: float = 60) -> tuple[int, str]:
    """Run a node that is expected to refuse to start: (exit code, everything it printed)."""
    conf = tmp_path / "m.conf"
    conf.write_text(conf_text)
    result = subprocess.run([sys.executable, "-m", "midge", "broker", "-c", str(conf)],
                            capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout + result.stderr


class Nodes:
    """Start midge nodes on one NATS; every node is stopped (and checked) at the end."""

    def __init__(self, tmp_path, nats):
        self.tmp_path = tmp_path
        self.nats = nats
        self.started = []

    def start(self, node_id: str, extra: str = "", port: int | None = None, wait: bool = True):
        port = port or free_port()
        folder = self.tmp_path / f"{node_id}-{len(self.started)}"
        folder.mkdir()
        text = (f"listener {port} 127.0.0.1\nallow_anonymous true\ncluster_url {self.nats.url}\n"
                f"cluster_node_id {node_id}\n" + extra)
        process = start_midge(text, folder, port if wait else None)
        process.port = port
        process.node_id = node_id
        self.started.append(process)
        return process

    def joined(self, *processes) -> None:
        """Each node has seen every other one."""
        for process in processes:
            for other in processes:
                if other is not process:
                    process.wait_for_log(f"node {other.node_id} is part of cluster")

    def stop_all(self):
        for process in self.started:
            process.stop()
        for process in self.started:
            if "Traceback" in process.output:
                pytest.fail(f"node {process.node_id} logged a traceback:\n" + process.output)


@pytest.fixture
def nodes(tmp_path, nats_server):
    started = Nodes(tmp_path, nats_server)
    yield started
    started.stop_all()


@pytest.fixture
def pair(nodes):
    a, b = nodes.start("a"), nodes.start("b")
    nodes.joined(a, b)
    return a, b
