"""Issue 10: MQTT.js in headless Chromium across a cluster. Two midge nodes on one
nats-server, each with a WebSocket listener: MQTT.js subscribes over ws:// on node a,
and receives, with their MQTT 5 properties, a message MQTT.js publishes on node b and
one mosquitto_pub publishes on node b. Then the same page on a `workers 2` broker, with
six subscribers so that the kernel spreads them over both workers.

Peers: `chromium`, `certutil`, MQTT.js (test_chromium.py says how they are found),
`nats-server`, `mosquitto_pub` and paho-mqtt (which hears the page's "ready").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from urllib.parse import urlencode

import pytest
from websockets.sync.client import connect

from tests.brokerproc import free_port, start_midge
from tests.browser.test_chromium import (TIMEOUT, DevTools, browser_home, page_dir, run_page,  # noqa: F401
                                         start_chromium)
from tests.cluster.conftest import Nodes, nats_server  # noqa: F401 - the fixture, shared
from tests.peers import require_module, require_peer


class ReadyRelay:
    """paho on the publishing node: when a page says cluster/<tag>/ready, mosquitto_pub
    publishes cluster/<tag>/from-mosquitto there, with v5 properties."""

    def __init__(self, port: int, on_ready=None):
        mqtt = require_module("paho.mqtt.client")
        self.port = port
        self.on_ready = on_ready   # called first, while every client of the page is connected
        self.mosquitto_pub = require_peer("mosquitto_pub")
        self.errors: list[str] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"relay-{port}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_connect = lambda client, *args: client.subscribe("cluster/+/ready", qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(TIMEOUT), "relay not subscribed"

    def _on_message(self, client, userdata, message):
        tag = message.topic.split("/")[1]
        if self.on_ready is not None:
            try:
                self.on_ready(tag)
            except Exception as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(repr(exc))
        result = subprocess.run(
            [self.mosquitto_pub, "-p", str(self.port), "-V", "mqttv5", "-q", "1", "-i", f"{tag}-mosquitto",
             "-t", f"cluster/{tag}/from-mosquitto", "-m", f"mosquitto to {tag}",
             "-D", "publish", "user-property", "origin", "mosquitto_pub",
             "-D", "publish", "content-type", "text/x-mosquitto"],
            capture_output=True, text=True, timeout=TIMEOUT)
        if result.returncode:
            self.errors.append(result.stderr)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_pages(chromium, home, profile, urls: list[str]) -> list[dict]:
    proc, endpoint = start_chromium(chromium, home, profile)
    try:
        with connect(endpoint, max_size=None, open_timeout=TIMEOUT) as connection:
            devtools = DevTools(connection)
            return [run_page(devtools, url) for url in urls]
    finally:
        proc.terminate()
        proc.wait(30)


def page_url(page_port: int, tag: str, sub_port: int, pub_port: int, subscribers: int = 1) -> str:
    query = urlencode({"tag": tag, "sub": f"ws://127.0.0.1:{sub_port}/mqtt",
                       "pub": f"ws://127.0.0.1:{pub_port}/mqtt", "subscribers": subscribers})
    return f"http://127.0.0.1:{page_port}/cluster.html?{query}"


def check(page: dict, tag: str, subscribers: int) -> None:
    assert "error" not in page, page
    assert len(page["subscribers"]) == subscribers
    for index, got in enumerate(page["subscribers"]):
        from_js, from_mosquitto = got["from-js"], got["from-mosquitto"]
        assert from_js["payload"] == f"js to {tag}" and from_js["qos"] == 1 and not from_js["retain"]
        assert from_js["userProperties"] == {"sent_by": tag}
        assert from_js["contentType"] == "text/plain"
        assert from_js["responseTopic"] == f"cluster/{tag}/reply"
        assert from_js["correlationData"] == [0, 1, 255]
        assert from_js["payloadFormatIndicator"] is True
        assert 590 <= from_js["messageExpiryInterval"] <= 600, from_js
        assert from_js["subscriptionIdentifier"] == 7 + index, from_js
        assert from_mosquitto["payload"] == f"mosquitto to {tag}" and from_mosquitto["qos"] == 1
        assert from_mosquitto["userProperties"] == {"origin": "mosquitto_pub"}
        assert from_mosquitto["contentType"] == "text/x-mosquitto"
        assert from_mosquitto["subscriptionIdentifier"] == 7 + index


def ws_listener(page_dir) -> tuple[int, str]:
    port = free_port()
    return port, f"listener {port} 127.0.0.1\nprotocol websockets\nhttp_dir {page_dir}\n"


def test_mqtt_js_across_two_nodes(browser_home, page_dir, tmp_path, nats_server):  # noqa: F811
    chromium, home, _ = browser_home
    nodes = Nodes(tmp_path, nats_server)
    relay = None
    try:
        ws_a, listener_a = ws_listener(page_dir)
        ws_b, listener_b = ws_listener(page_dir)
        a, b = nodes.start("a", listener_a), nodes.start("b", listener_b)
        nodes.joined(a, b)
        relay = ReadyRelay(b.port)
        # The page comes from node a; it subscribes on a and publishes on b.
        [page] = run_pages(chromium, home, tmp_path / "profile", [page_url(ws_a, "nodes", ws_a, ws_b)])
        print(json.dumps(page, indent=2))
        assert not relay.errors, relay.errors
        check(page, "nodes", 1)
        # Each client was where the page put it.
        a.wait_for_log("as nodes-sub0 (p5")
        b.wait_for_log("as nodes-pub (p5")
        b.wait_for_log("as nodes-mosquitto (p5")
        assert "as nodes-pub" not in a.output and "as nodes-sub0" not in b.output
    finally:
        if relay is not None:
            relay.close()
        nodes.stop_all()


def sockets_by_process(pids, port: int) -> dict[int, int]:
    """{client port: pid} of the established TCP connections to local `port` that the
    processes `pids` hold (from /proc: which worker the kernel gave each connection)."""
    owner = {}
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                owner[target[8:-1]] = pid
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in list(f)[1:]:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                if state == "01" and int(local.rsplit(":", 1)[1], 16) == port and inode in owner:
                    found[int(remote.rsplit(":", 1)[1], 16)] = owner[inode]
    return found


def test_mqtt_js_on_workers_2(browser_home, page_dir, tmp_path):  # noqa: F811
    require_peer("nats-server")
    chromium, home, _ = browser_home
    port = free_port()
    ws, listener = ws_listener(page_dir)
    process = start_midge(f"listener {port} 127.0.0.1\nallow_anonymous true\nworkers 2\n" + listener,
                          tmp_path, port)
    relay = None
    placements: dict[str, dict[str, int]] = {}

    def where(tag):
        """Which worker holds each of the page's connections (all open now)."""
        process.wait_for_log(f"as {tag}-pub (p5")   # the publisher connected last
        by_port = sockets_by_process(pids.values(), ws)
        placements[tag] = {client: by_port[int(client_port)] for client_port, client in
                           re.findall(rf"from 127.0.0.1:(\d+) as ({tag}-\S+) \(p5", process.output)
                           if int(client_port) in by_port}

    try:
        process.wait_for_log("2 workers running")
        process.wait_for_log("-w1 is part of cluster")
        process.wait_for_log("-w2 is part of cluster")
        pids = {int(m.group(1)): int(m.group(2))
                for m in re.finditer(r"worker (\d+) started \(pid (\d+)\)", process.output)}
        assert set(pids) == {1, 2}, process.output
        relay = ReadyRelay(port, on_ready=where)
        subscribers = 6
        # The kernel spreads connections over the workers (SO_REUSEPORT); a run where every
        # subscriber landed on the publisher's worker proves nothing, so run again (each
        # time 1 in 64).
        for attempt in range(5):
            tag = f"workers{attempt}"
            [page] = run_pages(chromium, home, tmp_path / f"profile{attempt}",
                               [page_url(ws, tag, ws, ws, subscribers)])
            assert not relay.errors, relay.errors
            check(page, tag, subscribers)
            placed = placements[tag]
            assert len(placed) == subscribers + 1, (placed, process.output)
            if any(pid != placed[f"{tag}-pub"] for pid in placed.values()):
                break
        else:
            raise AssertionError(f"no run had a subscriber on another worker than the publisher: {placements}")
        print(json.dumps(placements, indent=2))
    finally:
        if relay is not None:
            relay.close()
        process.stop()
    assert "Traceback" not in process.output, process.output
