"""Issue 12: a real browser. Debian's headless Chromium loads a page that midge serves
from `http_dir` over http and https; the page runs MQTT.js (npm `mqtt`) against the same
listener over ws:// and wss://, MQTT 3.1.1 and 5.0: subscribe, publish, receive its own
message and one Python publishes into the broker when the page asks; the results are
written into the page, which the test reads over the DevTools protocol.

The https page and wss:// are trusted the way a user would trust them: the test CA is
added to an NSS database in the browser's HOME (certutil), not --ignore-certificate-errors.
Peers: `chromium`, `certutil` (libnss3-tools) and MQTT.js, which `.ci/run` installs with
npm into .cache/npm (or MIDGE_MQTTJS names mqtt.min.js).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from websockets.sync.client import connect

import midge
from midge.cli.certs import make_dev_pki
from tests.brokerproc import TIMEOUT_SCALE
from tests.peers import REQUIRE_PEERS, require_peer

ROOT = Path(__file__).resolve().parents[2]
WWW = Path(__file__).with_name("www")
MQTTJS = Path(os.environ.get("MIDGE_MQTTJS") or ROOT / ".cache/npm/node_modules/mqtt/dist/mqtt.min.js")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--remote-debugging-port=0", "about:blank"]
TIMEOUT = 60 * TIMEOUT_SCALE


def mqtt_js() -> Path:
    if not MQTTJS.exists():
        message = (f"MQTT.js not found at {MQTTJS} (npm install --prefix .cache/npm mqtt, as .ci/run "
                   "does, or set MIDGE_MQTTJS)")
        if REQUIRE_PEERS:
            pytest.fail(message + "; MIDGE_REQUIRE_PEERS is set", pytrace=False)
        pytest.skip(message)
    return MQTTJS


class DevTools:
    """A minimal Chrome DevTools protocol client over the `websockets` package."""

    def __init__(self, ws):
        self.ws = ws  # a websockets.sync.client connection to the browser's endpoint
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def call(self, method: str, session: str | None = None, **params) -> dict:
        ident = next(self.ids)
        message = {"id": ident, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv(timeout=TIMEOUT))
            if reply.get("id") == ident:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_event(self, method: str, session: str) -> dict:
        for index, event in enumerate(self.events):
            if event.get("method") == method and event.get("sessionId") == session:
                return self.events.pop(index)
        while True:
            event = json.loads(self.ws.recv(timeout=TIMEOUT))
            if event.get("method") == method and event.get("sessionId") == session:
                return event
            self.events.append(event)

    def console(self) -> list[str]:
        lines = []
        for event in self.events:
            if event.get("method") == "Runtime.consoleAPICalled":
                lines.append(" ".join(str(a.get("value", a.get("description"))) for a in event["params"]["args"]))
            elif event.get("method") == "Runtime.exceptionThrown":
                lines.append(event["params"]["exceptionDetails"].get("exception", {}).get("description", "?"))
        return lines


@pytest.fixture
def browser_home(tmp_path):
    """A HOME whose NSS database trusts the test CA (where Chromium on Linux looks)."""
    chromium = require_peer("chromium")
    certutil = require_peer("certutil")
    pki = make_dev_pki(tmp_path / "pki", key_type="ec", days=2)
    home = tmp_path / "home"
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run([certutil, "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True, capture_output=True)
    subprocess.run([certutil, "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "midge test CA", "-i", pki.cafile],
                   check=True, capture_output=True)
    return chromium, home, pki


@pytest.fixture
def page_dir(tmp_path):
    www = tmp_path / "www"
    shutil.copytree(WWW, www)
    shutil.copy(mqtt_js(), www / "mqtt.min.js")
    return www


def start_chromium(chromium: str, home: Path, profile: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, HOME=str(home))
    proc = subprocess.Popen([chromium, f"--user-data-dir={profile}", *CHROMIUM_FLAGS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    output = []
    found: list[str] = []

    def read():
        for line in proc.stderr:  # keep draining, or Chromium blocks on a full pipe
            output.append(line)
            match = re.search(r"DevTools listening on (ws://\S+)", line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    ready = threading.Event()
    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(TIMEOUT) or not found:
        proc.kill()
        raise AssertionError("chromium did not start its DevTools endpoint:\n" + "".join(output))
    return proc, found[0]


def run_page(devtools: DevTools, url: str) -> dict:
    target = devtools.call("Target.createTarget", url="about:blank")["targetId"]
    session = devtools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    devtools.call("Page.enable", session)
    devtools.call("Runtime.enable", session)
    navigation = devtools.call("Page.navigate", session, url=url)
    assert "errorText" not in navigation, f"{url}: {navigation['errorText']}"
    devtools.wait_event("Page.loadEventFired", session)
    done = devtools.call("Runtime.evaluate", session, expression="window.midgeTest.then(() => "
                         "document.getElementById('results').textContent)",
                         awaitPromise=True, returnByValue=True, timeout=TIMEOUT * 1000)
    assert "exceptionDetails" not in done, (done, devtools.console())
    text = done["result"]["value"]
    devtools.call("Target.closeTarget", targetId=target)
    return json.loads(text)


def test_mqtt_js_in_chromium_over_ws_and_wss(browser_home, page_dir, tmp_path, caplog):
    chromium, home, pki = browser_home
    caplog.set_level(logging.INFO, logger="midge")
    config = (f"allow_anonymous true\n"
              f"listener auto 127.0.0.1\nprotocol websockets\nhttp_dir {page_dir}\n"
              f"listener auto 127.0.0.1\nprotocol websockets\nhttp_dir {page_dir}\n"
              f"certfile {pki.server_certfile}\nkeyfile {pki.server_keyfile}\n")
    with midge.Broker(config) as broker:
        ws, wss = broker.listeners
        assert (ws.kind, wss.kind) == ("ws", "wss")
        # When a page says it is ready, Python publishes into the broker for it.
        broker.subscribe("browser/+/ready", lambda m: broker.publish(
            m.topic.replace("/ready", "/from-python"), f"from python to {m.topic.split('/')[1]}",
            qos=1, user_properties=[("origin", "python")]))
        published = broker.messages("browser/+/echo")
        proc, endpoint = start_chromium(chromium, home, tmp_path / "profile")
        try:
            with connect(endpoint, max_size=None, open_timeout=TIMEOUT) as connection:
                devtools = DevTools(connection)
                pages = [run_page(devtools, f"http://127.0.0.1:{ws.port}/"),
                         run_page(devtools, f"https://localhost:{wss.port}/index.html")]
        finally:
            proc.terminate()
            proc.wait(30)
        echoes = {m.topic: m for m in iter(published.get_nowait, None)}
        published.close()

    print(json.dumps(pages, indent=2))  # the test's output, for the record
    runs = {}
    for page in pages:
        assert "error" not in page, page
        for run in page["runs"]:
            runs[run["tag"]] = run
    assert sorted(runs) == ["ws-v4", "ws-v5", "wss-v4", "wss-v5"]
    for tag, run in runs.items():
        scheme, version = tag.split("-v")
        assert run["grantedQos"] == [1]
        assert run["echo"] == f"hello from {tag}" and run["echoQos"] == 1
        assert run["fromPython"] == f"from python to {tag}"
        # User properties exist only in MQTT 5: the version really was the one asked for.
        expected = {"origin": "python"} if version == "5" else None
        assert run["fromPythonUserProperties"] == expected, run
        echo = echoes[f"browser/{tag}/echo"]
        assert echo.user_properties == ((("sent_by", tag),) if version == "5" else ())
    # The broker saw each browser connect with the protocol level asked for.
    log = [r.getMessage() for r in caplog.records if r.name == "midge"]
    for tag, level in (("ws-v4", "p2"), ("ws-v5", "p5"), ("wss-v4", "p2"), ("wss-v5", "p5")):
        assert any(f"as browser-{tag} ({level}," in line for line in log), (tag, log)
    # Served files are not failed connections.
    assert not [line for line in log if "failed" in line and ("index.html" in line or ".js" in line)]
