"""Run every conformance test against Debian's mosquitto (the reference) and midge.

A test module may set:
  CONFIG           extra config lines after `listener PORT` + `allow_anonymous true`
  EXTRA_LISTENERS  {name: config lines, or (bind address, config lines)} for more
                   listeners, each on its own free port (default bind 127.0.0.1)
Mark a test `@pytest.mark.mosquitto_bug("why")` when Mosquitto 2.0.11 deviates from the
spec: the mosquitto run becomes a strict xfail, the midge run must pass.

The third run, `midge-cluster`, is two midge nodes on one nats-server: each read of
`broker.port` gives the next node, so a test's subscriber and publisher (and a client's
two connections) land on different nodes. A module may set CLUSTER = False (its tests
are about one listener or one node's $SYS), a test may be marked
`@pytest.mark.cluster_gap("why")` for what the cluster does not do yet (docs/cluster.md),
and `@pytest.mark.ping_barrier` when it takes a PINGRESP as proof that nothing more is
coming: across nodes a message may arrive after it, so the cluster run skips it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from tests.brokerproc import BrokerProcess, free_port, start_midge, start_mosquitto, wait_for_port

BROKERS = ("mosquitto", "midge", "midge-cluster")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "mosquitto_bug(reason): Mosquitto 2.0.11 deviates from the spec here "
        "(strict xfail on the mosquitto run)")
    config.addinivalue_line(
        "markers", "ping_barrier: the test takes PINGRESP as the end of deliveries (skipped on midge-cluster)")
    config.addinivalue_line(
        "markers", "cluster_gap(reason): the cluster does not do this yet (xfail on midge-cluster)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        marker = item.get_closest_marker("mosquitto_bug")
        callspec = getattr(item, "callspec", None)
        if marker and callspec and callspec.params.get("broker") == "mosquitto":
            item.add_marker(pytest.mark.xfail(strict=True, reason=marker.args[0]))
        barrier = item.get_closest_marker("ping_barrier")
        if barrier and callspec and callspec.params.get("broker") == "midge-cluster":
            item.add_marker(pytest.mark.skip(reason="uses PINGRESP as the end of deliveries, which holds on "
                                                    "one node only (a cross-node message may come after it)"))
        gap = item.get_closest_marker("cluster_gap")
        if gap and callspec and callspec.params.get("broker") == "midge-cluster":
            item.add_marker(pytest.mark.xfail(strict=True, reason=gap.args[0]))


@dataclass
class Broker:
    name: str
    port: int
    process: BrokerProcess
    ports: dict = field(default_factory=dict)


class ClusterBroker:
    """Two nodes: `port` alternates between them on every read."""

    def __init__(self, ports, processes, nats):
        self.name = "midge-cluster"
        self._ports = ports
        self._turn = itertools.cycle(ports)
        self.processes = processes
        self.process = processes[0]
        self.nats = nats
        self.ports = {}

    @property
    def port(self) -> int:
        return next(self._turn)


@pytest.fixture(scope="module", params=BROKERS)
def broker(request, tmp_path_factory):
    """One broker per module and per implementation, with the module's config."""
    name = request.param
    if name == "midge-cluster":
        yield from _cluster(request, tmp_path_factory)
        return
    port = free_port()
    extra = getattr(request.module, "EXTRA_LISTENERS", {})
    ports = {key: free_port() for key in extra}
    text = f"listener {port} 127.0.0.1\nallow_anonymous true\n" + getattr(request.module, "CONFIG", "")
    websockets = {}
    for key, lines in extra.items():
        bind, lines = lines if isinstance(lines, tuple) else ("127.0.0.1", lines)
        if "protocol websockets" in lines:
            websockets[ports[key]] = bind
        text += f"listener {ports[key]} {bind}\n{lines}"
    tmp = tmp_path_factory.mktemp(name)
    start = start_mosquitto if name == "mosquitto" else start_midge
    process = start(text, tmp, port)
    for ws_port, bind in websockets.items():
        # Mosquitto's WebSocket listener (libwebsockets) may still be starting when its
        # first port answers. (Other extra listeners are not probed: a probe would count
        # against max_connections.)
        wait_for_port(ws_port, host=bind, proc=process.proc)
    yield Broker(name, port, process, ports)
    process.stop()
    (tmp / "broker.log").write_text(process.output)
    if "Traceback" in process.output:  # nothing a client sends may crash a handler
        pytest.fail(f"{name} logged a traceback (full log in {tmp / 'broker.log'}):\n"
                    + process.output[process.output.index("Traceback"):][:3000])


_counter = itertools.count()


@pytest.fixture
def cid(request):
    """A factory of client ids unique across the run (short enough for MQTT 3.1)."""
    base = request.node.originalname.removeprefix("test_")[:14]

    def make(tag: str = "") -> str:
        return f"{base}{tag}-{next(_counter)}"
    return make


def _cluster(request, tmp_path_factory):
    from tests.peers import require_peer

    if getattr(request.module, "EXTRA_LISTENERS", None) or not getattr(request.module, "CLUSTER", True):
        pytest.skip("a single-node test (listeners or one node's $SYS)")
    require_peer("nats-server")
    from midge.server.natsproc import NatsServer

    tmp = tmp_path_factory.mktemp("cluster")
    nats = NatsServer(str(tmp / "nats"))
    nats.start()
    ports, processes = [], []
    try:
        for node in ("a", "b"):
            port = free_port()
            text = (f"listener {port} 127.0.0.1\nallow_anonymous true\ncluster_url {nats.url}\n"
                    f"cluster_node_id {node}\n" + getattr(request.module, "CONFIG", ""))
            node_tmp = tmp / node
            node_tmp.mkdir()
            processes.append(start_midge(text, node_tmp, port))
            ports.append(port)
        processes[0].wait_for_log("node b is part of cluster")
        yield ClusterBroker(ports, processes, nats)
    finally:
        for process, node in zip(processes, "ab"):
            process.stop()
            (tmp / f"{node}.log").write_text(process.output)
        nats.stop()
    for process in processes:
        if "Traceback" in process.output:
            pytest.fail("midge logged a traceback:\n" + process.output[process.output.index("Traceback"):][:3000])
