"""Drive Debian's mosquitto_sub / mosquitto_pub and paho-mqtt from tests, without sleeps.

`Subscriber` runs `mosquitto_sub -d` and waits for the SUBACK line before the test
publishes; payload lines are the lines that are not protocol-trace lines.
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
import time

from tests.brokerproc import TIMEOUT_SCALE
from tests.peers import require_module, require_peer

TRACE_PREFIXES = ("Client ", "Subscribed (mid")


class Subscriber:
    def __init__(self, port: int, topics: list[str] | str, *args: str, host: str = "127.0.0.1"):
        exe = require_peer("mosquitto_sub")
        if isinstance(topics, str):
            topics = [topics]
        # mosquitto_sub block-buffers its -d trace on a pipe; line-buffer it with stdbuf.
        stdbuf = shutil.which("stdbuf")
        argv = ([stdbuf, "-oL", "-eL"] if stdbuf else []) + [exe, "-h", host, "-p", str(port), "-d"]
        for t in topics:
            argv += ["-t", t]
        argv += list(args)
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.all_lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.all_lines.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _next(self, deadline: float) -> str | None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for mosquitto_sub output:\n" + "\n".join(self.all_lines))
        try:
            return self.lines.get(timeout=remaining)
        except queue.Empty:
            raise TimeoutError("timed out waiting for mosquitto_sub output:\n" + "\n".join(self.all_lines))

    def wait_for(self, needle: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout * TIMEOUT_SCALE
        while True:
            line = self._next(deadline)
            if line is None:
                raise AssertionError(f"mosquitto_sub exited before {needle!r}:\n" + "\n".join(self.all_lines))
            if needle in line:
                return line

    def wait_subscribed(self, timeout: float = 10.0) -> None:
        self.wait_for("received SUBACK", timeout)

    def messages(self, count: int, timeout: float = 10.0) -> list[str]:
        """The next `count` non-trace output lines."""
        deadline = time.monotonic() + timeout * TIMEOUT_SCALE
        out: list[str] = []
        while len(out) < count:
            line = self._next(deadline)
            if line is None:
                raise AssertionError(f"mosquitto_sub exited after {out!r}:\n" + "\n".join(self.all_lines))
            if not line.startswith(TRACE_PREFIXES):
                out.append(line)
        return out

    def wait_exit(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout * TIMEOUT_SCALE)

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def mosquitto_pub(port: int, *args: str, host: str = "127.0.0.1", input: str | None = None,
                  timeout: float = 10.0) -> subprocess.CompletedProcess:
    exe = require_peer("mosquitto_pub")
    return subprocess.run([exe, "-h", host, "-p", str(port), *args], input=input,
                          capture_output=True, text=True, timeout=timeout * TIMEOUT_SCALE)


class PahoClient:
    """A paho-mqtt client on its own network thread with queues for what it receives."""

    def __init__(self, port: int, client_id: str = "", version: int = 4, host: str = "127.0.0.1",
                 clean: bool = True, properties=None, will=None, username=None, password=None,
                 keepalive: int = 60, tls_context=None, connect: bool = True):
        mqtt = require_module("paho.mqtt.client")
        self.mqtt = mqtt
        proto = {3: mqtt.MQTTv31, 4: mqtt.MQTTv311, 5: mqtt.MQTTv5}[version]
        kwargs = {"client_id": client_id, "protocol": proto}
        if version != 5:
            kwargs["clean_session"] = clean
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
        self.version = version
        self.messages: queue.Queue = queue.Queue()
        self.events: queue.Queue = queue.Queue()
        self.client.on_connect = lambda c, u, flags, rc, props: self.events.put(("connect", flags, rc, props))
        self.client.on_disconnect = lambda c, u, flags, rc, props: self.events.put(("disconnect", flags, rc, props))
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self.events.put(("subscribe", mid, rcs, props))
        self.client.on_unsubscribe = lambda c, u, mid, rcs, props: self.events.put(("unsubscribe", mid, rcs, props))
        self.client.on_publish = lambda c, u, mid, rc, props: self.events.put(("publish", mid, rc, props))
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        if username is not None:
            self.client.username_pw_set(username, password)
        if will is not None:
            self.client.will_set(**will)
        if tls_context is not None:
            self.client.tls_set_context(tls_context)
        self.port, self.host, self.keepalive = port, host, keepalive
        self.clean, self.properties = clean, properties
        if connect:
            self.connect()

    def connect(self):
        kwargs = {"keepalive": self.keepalive}
        if self.version == 5:
            kwargs["clean_start"] = self.clean
            if self.properties is not None:
                kwargs["properties"] = self.properties
        self.client.connect(self.host, self.port, **kwargs)
        self.client.loop_start()
        return self.wait_event("connect")

    def wait_event(self, kind: str, timeout: float = 10.0):
        deadline = time.monotonic() + timeout * TIMEOUT_SCALE
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {kind} event")
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                raise TimeoutError(f"no {kind} event")
            if event[0] == kind:
                return event

    def subscribe(self, *args, **kwargs):
        self.client.subscribe(*args, **kwargs)
        return self.wait_event("subscribe")

    def publish(self, *args, **kwargs):
        info = self.client.publish(*args, **kwargs)
        info.wait_for_publish(10 * TIMEOUT_SCALE)
        return info

    def message(self, timeout: float = 10.0):
        try:
            return self.messages.get(timeout=timeout * TIMEOUT_SCALE)
        except queue.Empty:
            raise TimeoutError("no message received")

    def no_message(self, within: float = 0.3) -> bool:
        """True if nothing arrives within `within` seconds (a negative check has to wait)."""
        try:
            self.messages.get(timeout=within)
        except queue.Empty:
            return True
        return False

    def disconnect(self):
        self.client.disconnect()
        self.client.loop_stop()

    def drop(self):
        """Close the socket without DISCONNECT (network loss, so the will is sent)."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()
