"""The benchmark scenarios (issue 6). Each one runs against a fresh broker and returns
one or more result rows; every row carries its own loss check.

A row's `work` is what the scenario counts (messages delivered, connections accepted,
handshakes, retained messages stored); `cpu_s` is the broker's CPU time spent while
that work happened and `wall_s` the elapsed time. Throughput uses the C clients
(`mosquitto_pub -l`, `mosquitto_sub -C N`); connections, handshakes and retained
topics use `loadgen.py` in several processes.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from brokers import Broker
from certs import PSK_IDENTITY, PSK_KEY_HEX, PkiFiles

HERE = Path(__file__).resolve().parent
PAYLOAD_BYTES = 64
WORKERS = max(2, min(4, os.cpu_count() or 2))
# TLS connections are opened one at a time per worker and each waits a round trip or
# more (Mosquitto, without TCP_NODELAY, holds the CONNACK behind the session tickets
# until the client's delayed ACK, ~40 ms): more workers keep the broker busy.
TLS_WORKERS = 16


@dataclass
class Assets:
    """Files shared by every broker and repetition of one run."""
    pki: dict[str, PkiFiles]
    psk_file: Path
    password_file: Path | None = None   # hardening.py's login-attack scenario


@dataclass
class Run:
    """What a scenario needs to drive one broker once."""
    broker: Broker
    port: int
    workdir: Path
    assets: Assets
    size: int
    timeout: float
    procs: list[subprocess.Popen] = field(default_factory=list)
    pub_port: int | None = None     # publishers' port when it is another node (cluster.py)

    def spawn(self, argv: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(argv, **kwargs)
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        """Stop every client process this run started, even after a failure."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


class Window:
    """Wall clock and broker CPU over the measured part of a scenario."""

    def __init__(self, broker: Broker):
        self.broker = broker
        self.cpu0 = broker.cpu_seconds()
        self.t0 = time.perf_counter()

    def close(self, work: int, **extra) -> dict:
        wall = time.perf_counter() - self.t0
        cpu = self.broker.cpu_seconds() - self.cpu0
        mem = self.broker.memory_kib()
        row = {"work": work, "wall_s": round(wall, 4), "cpu_s": round(cpu, 4),
               "per_wall_s": work / wall if wall > 0 else None,
               "per_cpu_s": work / cpu if cpu > 0 else None,
               "hwm_kib": mem.get("VmHWM"), "rss_kib": mem.get("VmRSS")}
        row.update(extra)
        return row


# --- the C clients ---------------------------------------------------------------

def _tool(name: str) -> str:
    return shutil.which(name) or name


def _c_client_tls(assets: Assets, tls: str | None) -> list[str]:
    if tls is None:
        return []
    if tls == "psk":
        return ["--psk", PSK_KEY_HEX, "--psk-identity", PSK_IDENTITY]
    pki = assets.pki[tls]
    return ["--cafile", str(pki.cafile), "--cert", str(pki.client_cert),
            "--key", str(pki.client_key)]


def _wait_all(procs, deadline: float) -> bool:
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
    return True


def _wait_first_line(path: Path, expected: str, deadline: float, proc) -> None:
    """A subscriber is ready once the retained probe reached its output file."""
    while True:
        with open(path, "rb") as f:
            if f.readline().rstrip(b"\n") == expected.encode():
                return
        if proc.poll() is not None:
            raise RuntimeError(f"subscriber exited with {proc.returncode} before subscribing")
        if time.monotonic() > deadline:
            raise RuntimeError("subscriber never received the retained readiness probe")
        time.sleep(0.01)  # readiness probe interval


def _feed(pub: subprocess.Popen, feed: Path, release: threading.Event) -> None:
    """Write the publisher's lines, then hold its stdin open until `release`."""
    try:
        with open(feed, "rb") as f:
            shutil.copyfileobj(f, pub.stdin, 1 << 16)
        pub.stdin.flush()
        release.wait()
        pub.stdin.close()
    except (BrokenPipeError, ValueError, OSError):
        pass


def pubsub(run: Run, *, publishers: int, subscribers: int, qos: int,
           tls: str | None = None) -> dict:
    """`publishers` mosquitto_pub -l -> one topic -> `subscribers` mosquitto_sub -C N.

    A retained probe on a second topic of the same SUBSCRIBE proves each subscription
    is in place before the clock starts. Work is messages delivered to subscribers.
    """
    per_pub = run.size // publishers
    total = per_pub * publishers
    common = ["-h", "127.0.0.1", "-p", str(run.port)] + _c_client_tls(run.assets, tls)
    pub_common = (["-h", "127.0.0.1", "-p", str(run.pub_port or run.port)]
                  + _c_client_tls(run.assets, tls))
    deadline = time.monotonic() + run.timeout

    feeds = []
    for p in range(publishers):
        path = run.workdir / f"pub{p}.txt"
        with open(path, "w") as f:
            for seq in range(per_pub):
                f.write(f"{p:03d}{seq:09d}".ljust(PAYLOAD_BYTES, "x") + "\n")
        feeds.append(path)
    expected = {f"{p:03d}{seq:09d}" for p in range(publishers) for seq in range(per_pub)}

    probe = run.spawn([_tool("mosquitto_pub"), *pub_common, "-t", "bench/ready", "-r",
                       "-q", "1", "-m", "ready", "-i", "bench-probe"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if not _wait_all([probe], deadline) or probe.returncode != 0:
        raise RuntimeError("retained probe not published: "
                           + (probe.stderr.read().decode(errors="replace") if probe.stderr else ""))

    outs, subs = [], []
    for s in range(subscribers):
        out = run.workdir / f"sub{s}.txt"
        with open(out, "wb") as f:
            subs.append(run.spawn(
                [_tool("mosquitto_sub"), *common, "-t", "bench/ready", "-t", "bench/t",
                 "-q", str(qos), "-C", str(total + 1), "-i", f"bench-sub{s}"],
                stdout=f, stderr=subprocess.DEVNULL))
        outs.append(out)
    for out, sub in zip(outs, subs):
        _wait_first_line(out, "ready", deadline, sub)

    # stdin stays open until the subscribers are done: at EOF mosquitto_pub -l
    # disconnects without waiting for its queued QoS 1 messages.
    window = Window(run.broker)
    pubs, feeders, logs = [], [], []
    release = threading.Event()
    for p, feed in enumerate(feeds):
        log = run.workdir / f"pub{p}.log"
        with open(log, "wb") as f:
            pub = run.spawn(
                [_tool("mosquitto_pub"), *pub_common, "-t", "bench/t", "-q", str(qos), "-l",
                 "-i", f"bench-pub{p}"] + (["-d"] if qos else []),
                stdin=subprocess.PIPE, stdout=f, stderr=subprocess.STDOUT)
        pubs.append(pub)
        logs.append(log)
        feeder = threading.Thread(target=_feed, args=(pub, feed, release), daemon=True)
        feeder.start()
        feeders.append(feeder)
    finished = _wait_all(subs, deadline)
    row = window.close(total * subscribers)
    release.set()
    for feeder in feeders:
        feeder.join(5)
    _wait_all(pubs, deadline)
    # QoS 1: every PUBACK the publishers received (mosquitto_pub -d logs each one).
    acked = sum(log.read_bytes().count(b"received PUBACK") for log in logs) if qos else None

    delivered, missing = 0, 0
    for out in outs:
        lines = out.read_bytes().decode(errors="replace").splitlines()[1:]
        seen = {line[:12] for line in lines}
        delivered += len(lines)
        missing += len(expected - seen)
    pub_codes = [p.returncode for p in pubs]
    row.update(delivered=delivered, expected=total * subscribers, missing=missing,
               acked=acked, publishers_exit=pub_codes,
               ok=finished and missing == 0 and delivered == total * subscribers
               and all(code == 0 for code in pub_codes) and acked in (None, total))
    if not finished:
        row["error"] = f"timed out after {run.timeout}s"
    return row


# --- the Python generator ----------------------------------------------------------

class Workers:
    """loadgen.py (or `script`) processes driven over stdin/stdout (see loadgen.py)."""

    def __init__(self, run: Run, argvs: list[list[str]], script: str = "loadgen.py"):
        self.procs = [run.spawn([sys.executable, str(HERE / script), *argv],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, bufsize=1)
                      for argv in argvs]
        self.lines: queue.Queue = queue.Queue()
        for proc in self.procs:
            threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc) -> None:
        for line in proc.stdout:
            self.lines.put((proc, line.rstrip("\n")))
        self.lines.put((proc, None))

    def expect_all(self, word: str, deadline: float) -> list[str]:
        """Wait until every worker printed a line starting with `word`; return the rest."""
        got: dict = {}
        while len(got) < len(self.procs):
            try:
                proc, line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"{len(self.procs) - len(got)} loadgen workers did not "
                                   f"say {word!r} in time") from None
            if line is None:
                raise RuntimeError("loadgen worker exited: " + proc.stderr.read()[-500:])
            if line.startswith(word):
                got[proc] = line[len(word):].strip()
        return list(got.values())

    def go(self) -> None:
        for proc in self.procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()

    def release(self, deadline: float) -> None:
        for proc in self.procs:
            proc.stdin.close()
        _wait_all(self.procs, deadline)


def _loadgen_tls(assets: Assets, tls: str | None) -> list[str]:
    if tls is None:
        return []
    pki = assets.pki[tls]
    return ["--cafile", str(pki.cafile), "--cert", str(pki.client_cert),
            "--key", str(pki.client_key)]


def _results(raw: list[str]) -> list[dict]:
    import json
    results = [json.loads(r) for r in raw]
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError("loadgen: " + errors[0])
    return results


def _shares(total: int, n: int) -> list[int]:
    """Split `total` into `n` near-equal parts."""
    return [total // n + (1 if k < total % n else 0) for k in range(n)]


def idle(run: Run, tls: str | None = None) -> dict:
    """`size` connections opened and held; connects per CPU-second, RSS per connection."""
    n_workers = TLS_WORKERS if tls else WORKERS
    deadline = time.monotonic() + run.timeout
    before = run.broker.memory_kib()
    workers = Workers(run, [["idle", "--port", str(run.port), "--count", str(share),
                             "--prefix", f"w{k}-", *_loadgen_tls(run.assets, tls)]
                            for k, share in enumerate(_shares(run.size, n_workers))])
    workers.expect_all("armed", deadline)
    window = Window(run.broker)
    workers.go()
    results = _results(workers.expect_all("done", deadline))
    connected = sum(r["connections"] for r in results)
    row = window.close(connected)
    row["kib_per_conn"] = round((row["rss_kib"] - before["VmRSS"]) / connected, 2)
    row.update(expected=run.size, ok=connected == run.size and run.broker.alive())
    workers.release(deadline)
    return row


def handshakes(run: Run, key: str, resume: bool) -> dict:
    """TLS 1.3 handshake with a client certificate + CONNECT/CONNACK + DISCONNECT."""
    deadline = time.monotonic() + run.timeout
    extra = ["--tls13"] + (["--resume"] if resume else [])
    workers = Workers(run, [["handshake", "--port", str(run.port), "--count", str(share),
                             "--prefix", f"w{k}-", *_loadgen_tls(run.assets, key), *extra]
                            for k, share in enumerate(_shares(run.size, TLS_WORKERS))])
    workers.expect_all("armed", deadline)
    window = Window(run.broker)
    workers.go()
    results = _results(workers.expect_all("done", deadline))
    done = sum(r["handshakes"] for r in results)
    reused = sum(r["reused"] for r in results)
    row = window.close(done, reused=reused)
    # With resumption every handshake but each worker's first should resume.
    row.update(expected=run.size,
               ok=done == run.size and (not resume or reused >= done - TLS_WORKERS))
    if resume and reused < done - TLS_WORKERS:
        row["error"] = f"only {reused} of {done} handshakes resumed a session"
    workers.release(deadline)
    return row


def retained(run: Run) -> dict[str, dict]:
    """Store `size` retained topics, then one `#` subscriber receives them all."""
    deadline = time.monotonic() + run.timeout
    before = run.broker.memory_kib()
    workers = Workers(run, [["retain", "--port", str(run.port), "--count", str(run.size),
                             "--prefix", "t"]])
    workers.expect_all("armed", deadline)
    window = Window(run.broker)
    workers.go()
    stored = _results(workers.expect_all("done", deadline))[0]["retained"]
    store = window.close(stored)
    store["kib_per_item"] = round((store["rss_kib"] - before["VmRSS"]) / stored, 3)
    store.update(expected=run.size, ok=stored == run.size)
    workers.release(deadline)

    out = run.workdir / "retained.txt"
    window = Window(run.broker)
    with open(out, "wb") as f:
        sub = run.spawn([_tool("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(run.port),
                         "-t", "bench/r/#", "-q", "0", "-C", str(run.size),
                         "-i", "bench-retained-sub"], stdout=f, stderr=subprocess.DEVNULL)
        finished = _wait_all([sub], deadline)
    delivered = len(out.read_bytes().splitlines())
    deliver = window.close(delivered)
    deliver.update(expected=run.size, ok=finished and delivered == run.size)
    if not finished:
        deliver["error"] = f"timed out after {run.timeout}s with {delivered} delivered"
    return {"retained-store": store, "retained-subscribe": deliver}


# --- the table of scenarios -----------------------------------------------------------

def _tls_listener(key: str) -> Callable[[Assets], str]:
    def listener(assets: Assets) -> str:
        pki = assets.pki[key]
        return (f"cafile {pki.cafile}\ncertfile {pki.server_cert}\n"
                f"keyfile {pki.server_key}\nrequire_certificate true\n")
    return listener


def _psk_listener(assets: Assets) -> str:
    return f"psk_hint bench\npsk_file {assets.psk_file}\n"


@dataclass(frozen=True)
class Scenario:
    name: str
    unit: str                       # what `work` counts
    full: int                       # size in a full run
    quick: int | None               # size with --quick (None: skipped)
    run: Callable[[Run], dict]      # one row, or {row name: row}
    listener: Callable[[Assets], str] = lambda assets: ""


SCENARIOS = [
    Scenario("qos0", "msgs", 100_000, 10_000,
             lambda r: pubsub(r, publishers=1, subscribers=1, qos=0)),
    Scenario("qos1", "msgs", 100_000, 10_000,
             lambda r: pubsub(r, publishers=1, subscribers=1, qos=1)),
    Scenario("fanout", "deliveries", 100_000, 10_000,
             lambda r: pubsub(r, publishers=1, subscribers=10, qos=0)),
    Scenario("fanin", "msgs", 100_000, 10_000,
             lambda r: pubsub(r, publishers=10, subscribers=1, qos=0)),
    Scenario("idle-1k", "connects", 1_000, 1_000, idle),
    Scenario("idle-10k", "connects", 10_000, None, idle),
    Scenario("idle-tls-1k", "connects", 1_000, 200, lambda r: idle(r, tls="p256"),
             _tls_listener("p256")),
    Scenario("handshake-rsa2048", "handshakes", 2_000, 200,
             lambda r: handshakes(r, "rsa2048", resume=False), _tls_listener("rsa2048")),
    Scenario("handshake-rsa2048-resume", "handshakes", 2_000, 200,
             lambda r: handshakes(r, "rsa2048", resume=True), _tls_listener("rsa2048")),
    Scenario("handshake-p256", "handshakes", 2_000, 200,
             lambda r: handshakes(r, "p256", resume=False), _tls_listener("p256")),
    Scenario("handshake-p256-resume", "handshakes", 2_000, 200,
             lambda r: handshakes(r, "p256", resume=True), _tls_listener("p256")),
    Scenario("qos0-mtls", "msgs", 100_000, 10_000,
             lambda r: pubsub(r, publishers=1, subscribers=1, qos=0, tls="p256"),
             _tls_listener("p256")),
    Scenario("qos0-psk", "msgs", 100_000, 10_000,
             lambda r: pubsub(r, publishers=1, subscribers=1, qos=0, tls="psk"),
             _psk_listener),
    Scenario("retained", "retained msgs", 100_000, 10_000, retained),
]


def broker_config(port: int, listener_options: str) -> str:
    """The mosquitto.conf both brokers read: one listener, anonymous, no queue limit.

    max_queued_messages 0 (no limit) everywhere so neither broker may drop a message
    for a slow subscriber and every count check is exact.
    """
    return ("allow_anonymous true\nmax_queued_messages 0\n"
            f"listener {port} 127.0.0.1\n" + listener_options)


# Issue 14's scenarios live in hardening.py (imported last: it uses the helpers above).
from hardening import (attack_listener, login_attack, pipelined, pipelined_listener,  # noqa: E402
                       write_password_file)

SCENARIOS += [
    Scenario("pipelined-qos1", "msgs delivered", 20_000, 20_000, pipelined, pipelined_listener),
    Scenario("login-attack", "returning logins (s of attack)", 20, 8, login_attack, attack_listener),
]
