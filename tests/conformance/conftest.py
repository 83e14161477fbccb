"""Run every conformance test against Debian's mosquitto (the reference) and midge.

A test module may set:
  CONFIG           extra config lines after `listener PORT` + `allow_anonymous true`
  EXTRA_LISTENERS  {name: config lines, or (bind address, config lines)} for more
                   listeners, each on its own free port (default bind 127.0.0.1)
Mark a test `@pytest.mark.mosquitto_bug("why")` when Mosquitto 2.0.11 deviates from the
spec: the mosquitto run becomes a strict xfail, the midge run must pass.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from tests.brokerproc import BrokerProcess, free_port, start_midge, start_mosquitto, wait_for_port

BROKERS = ("mosquitto", "midge")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "mosquitto_bug(reason): Mosquitto 2.0.11 deviates from the spec here "
        "(strict xfail on the mosquitto run)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        marker = item.get_closest_marker("mosquitto_bug")
        callspec = getattr(item, "callspec", None)
        if marker and callspec and callspec.params.get("broker") == "mosquitto":
            item.add_marker(pytest.mark.xfail(strict=True, reason=marker.args[0]))


@dataclass
class Broker:
    name: str
    port: int
    process: BrokerProcess
    ports: dict = field(default_factory=dict)


@pytest.fixture(scope="module", params=BROKERS)
def broker(request, tmp_path_factory):
    """One broker per module and per implementation, with the module's config."""
    name = request.param
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
