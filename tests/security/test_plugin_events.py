"""Plugins hear about connects, messages and disconnects, sync and async, through a real broker."""

from __future__ import annotations

import json

from tests.brokerproc import free_port, start_midge
from tests.clients import PahoClient


def test_plugin_notifications_and_async_basic_auth(tmp_path):
    events = tmp_path / "events.jsonl"
    plugin = tmp_path / "watch.py"
    plugin.write_text(
        "import asyncio, json\n"
        f"PATH = {str(events)!r}\n"
        "def _write(*row):\n"
        "    with open(PATH, 'a') as f:\n"
        "        f.write(json.dumps(row) + '\\n')\n"
        "async def basic_auth(client, username, password):\n"
        "    await asyncio.sleep(0)  # a real plugin would ask a database here\n"
        "    return password == b'letmein'\n"
        "def on_connect(client):\n    _write('connect', client.client_id, client.username)\n"
        "async def on_message(client, topic, payload, qos, retain):\n"
        "    _write('message', client.client_id, topic, payload.decode(), qos, retain)\n"
        "def on_disconnect(client):\n    _write('disconnect', client.client_id)\n"
    )
    port = free_port()
    broker = start_midge(f"listener {port} 127.0.0.1\nplugin {plugin}\nlog_type all\n", tmp_path, port)
    try:
        refused = PahoClient(port, client_id="intruder", username="eve", password="guess", connect=False)
        rc = refused.connect()[2]
        assert rc.is_failure
        refused.client.loop_stop()
        c = PahoClient(port, client_id="watched", username="alice", password="letmein", version=5)
        c.publish("plug/in", b"hello", qos=1)
        c.disconnect()
        broker.wait_for_log("Client watched disconnected")
    finally:
        assert broker.stop() == 0, broker.output
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    assert ["connect", "watched", "alice"] in rows
    assert ["message", "watched", "plug/in", "hello", 1, False] in rows
    assert ["disconnect", "watched"] in rows
    assert not any(row[1] == "intruder" for row in rows)
