"""`workers 2`: started by `midge broker` alone, end to end with mosquitto_pub/sub and paho."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading

import pytest

from tests.brokerproc import free_port, start_midge
from tests.peers import require_module, require_peer


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not running (its parent has not reaped it yet).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def workers(tmp_path):
    require_peer("nats-server")
    port = free_port()
    process = start_midge(f"listener {port} 127.0.0.1\nallow_anonymous true\nworkers 2\n"
                          "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
                          "log_type subscribe\n", tmp_path, port)
    process.port = port
    process.wait_for_log("2 workers running")
    process.wait_for_log("-w1 is part of cluster")
    process.wait_for_log("-w2 is part of cluster")
    yield process
    process.stop()
    assert "Traceback" not in process.output, process.output


def _pids(process) -> dict:
    pids = {int(m.group(1)): int(m.group(2))
            for m in re.finditer(r"worker (\d+) started \(pid (\d+)\)", process.output)}
    return pids


def test_workers_are_one_broker_for_mosquitto_clients(workers):
    sub_exe, pub_exe = require_peer("mosquitto_sub"), require_peer("mosquitto_pub")
    port = str(workers.port)
    # Several subscribers: the kernel spreads them over both workers.
    # stdbuf: mosquitto_sub writes its "received SUBACK" line at once, not when it exits.
    subs = [subprocess.Popen(["stdbuf", "-oL", sub_exe, "-d", "-p", port, "-t", "wk/#", "-C", "5", "-v", "-W", "30"],
                             stdout=subprocess.PIPE, text=True) for _ in range(6)]
    for sub in subs:   # -d: the subscriber says when its SUBACK came
        for line in sub.stdout:
            if "received SUBACK" in line:
                break
    for i in range(5):
        subprocess.run([pub_exe, "-p", port, "-t", f"wk/{i}", "-m", f"m{i}", "-q", "1"], check=True)
    for sub in subs:
        sub.wait(30)
        out = sub.stdout.read()   # (not communicate(): it would skip what the loop above buffered)
        got = [line for line in out.splitlines() if line.startswith("wk/")]
        assert got == [f"wk/{i} m{i}" for i in range(5)], out


def test_workers_with_paho_retained_and_shared(workers):
    mqtt = require_module("paho.mqtt.client")
    port = workers.port
    got, done = [], threading.Event()

    def on_message(client, userdata, message):
        got.append((message.topic, message.payload, message.retain))
        if len(got) == 1:
            done.set()

    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wk-pub", protocol=mqtt.MQTTv5)
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    publisher.publish("wk/retained", b"kept", qos=1, retain=True).wait_for_publish(10)
    subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wk-sub", protocol=mqtt.MQTTv5)
    subscriber.on_message = on_message
    subscriber.connect("127.0.0.1", port)
    subscriber.loop_start()
    subscriber.subscribe("wk/retained", qos=1)
    assert done.wait(10), got
    assert got[0] == ("wk/retained", b"kept", True)
    for client in (publisher, subscriber):
        client.loop_stop()
        client.disconnect()


def test_dead_worker_restarted_reload_and_clean_stop(workers):
    pids = _pids(workers)
    assert set(pids) == {1, 2}
    mark = workers.mark()
    os.kill(pids[1], signal.SIGKILL)
    workers.wait_for_log("worker 1", start=mark)
    workers.wait_for_log("exited with code -9; restarting it", start=mark)
    workers.wait_for_log("worker 1 started", start=mark)
    workers.wait_for_log("-w1 joined through NATS", start=mark, timeout=20)
    mark = workers.mark()
    workers.signal(signal.SIGHUP)
    first = workers.wait_for_log("Reload complete", start=mark)
    workers.wait_for_log("Reload complete", start=workers.output.splitlines().index(first, mark) + 1)   # both
    nats_pid = int(re.search(r"nats-server started on nats://127.0.0.1:(\d+)", workers.output).group(1))
    all_pids = list(_pids(workers).values())
    assert workers.stop() == 0
    assert not [pid for pid in all_pids if _alive(pid)]
    out = subprocess.run(["pgrep", "-f", f"127.0.0.1:{nats_pid}"], capture_output=True, text=True).stdout
    assert not out.strip()   # no nats-server left listening on that port


def test_persistent_session_follows_its_client_between_workers(workers):
    """mosquitto_sub -c reconnecting: the kernel hands each connection to either worker,
    and the session (with what was queued while it was away) follows it."""
    sub_exe, pub_exe = require_peer("mosquitto_sub"), require_peer("mosquitto_pub")
    port = str(workers.port)
    subprocess.run([sub_exe, "-p", port, "-i", "wk-keeper", "-c", "-q", "1", "-t", "wk/kept", "-E"],
                   check=True, timeout=30)
    sent = 0
    while workers.output.count("Cluster: session of wk-keeper moved here") < 2 and sent < 40:
        sent += 1
        subprocess.run([pub_exe, "-p", port, "-t", "wk/kept", "-m", f"k{sent}", "-q", "1"], check=True, timeout=30)
        out = subprocess.run([sub_exe, "-p", port, "-i", "wk-keeper", "-c", "-q", "1", "-t", "wk/kept",
                              "-C", "1", "-W", "20"], capture_output=True, text=True, timeout=30).stdout
        assert out.split() == [f"k{sent}"], (sent, out)
    assert workers.output.count("Cluster: session of wk-keeper moved here") >= 2, workers.output
