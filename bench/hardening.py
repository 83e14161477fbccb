"""Scenarios of issue 14 (hardening), measured on both brokers like the others.

- `pipelined-qos1`: `mosquitto_pub -l -M 200 -q 1` (200 QoS 1 messages in flight) ->
  one `mosquitto_sub -q 1` that acknowledges promptly, with the default queue limit
  (`max_queued_messages 1000`, not the suite's 0) and the default 20 messages in flight
  per subscriber. Work is messages *delivered*: before flow control midge delivered
  1,992-16,595 of 20,000 (Mosquitto: all). A run whose subscriber misses messages is
  reported, not failed: the count is the result.
- `login-attack`: a password file with PBKDF2 at 210,000 iterations (what `midge
  passwd` writes); waves of 100 parallel wrong logins from 127.0.0.1 for the whole
  window, while other addresses log in and ping (authload.py). Reports the latency a
  returning user's login, a first login and a PINGREQ see, in milliseconds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path

import scenarios   # its helpers are looked up when a scenario runs (scenarios.py imports us)

PIPELINED_INFLIGHT = 200
ATTACK_PARALLEL = 100
FIRST_USERS = 40
ITERATIONS = 210_000


# --- pipelined-qos1 ------------------------------------------------------------------

def pipelined_listener(assets) -> str:
    return "max_queued_messages 1000\n"   # Mosquitto's default, where drops can happen


def _count(path: Path, needle: bytes | None = None) -> int:
    data = path.read_bytes()
    return data.count(needle) if needle else data.count(b"\n")


def pipelined(run) -> dict:
    total = run.size
    common = ["-h", "127.0.0.1", "-p", str(run.port)]
    deadline = time.monotonic() + run.timeout
    feed = run.workdir / "pub.txt"
    with open(feed, "w") as f:
        for seq in range(total):
            f.write(f"{seq:012d}".ljust(scenarios.PAYLOAD_BYTES, "x") + "\n")
    probe = run.spawn([scenarios._tool("mosquitto_pub"), *common, "-t", "bench/ready", "-r", "-q", "1",
                       "-m", "ready", "-i", "bench-probe"], stdout=subprocess.DEVNULL)
    probe.wait(30)
    out = run.workdir / "sub.txt"
    with open(out, "wb") as f:
        sub = run.spawn([scenarios._tool("mosquitto_sub"), *common, "-t", "bench/ready", "-t", "bench/t", "-q", "1",
                         "-C", str(total + 1), "-i", "bench-sub"], stdout=f, stderr=subprocess.DEVNULL)
    scenarios._wait_first_line(out, "ready", deadline, sub)
    log = run.workdir / "pub.log"
    window = scenarios.Window(run.broker)
    with open(log, "wb") as f:
        # Line-buffered: the PUBACK lines are counted while it runs.
        stdbuf = [shutil.which("stdbuf"), "-oL"] if shutil.which("stdbuf") else []
        pub = run.spawn([*stdbuf, scenarios._tool("mosquitto_pub"), *common, "-t", "bench/t", "-q", "1", "-l",
                         "-M", str(PIPELINED_INFLIGHT), "-d", "-i", "bench-pub"],
                        stdin=subprocess.PIPE, stdout=f, stderr=subprocess.STDOUT)
    release = threading.Event()
    threading.Thread(target=scenarios._feed, args=(pub, feed, release), daemon=True).start()
    # Done when the subscriber has everything, or, once every message was acknowledged
    # to the publisher, when nothing more arrives for 3 s (the rest was dropped).
    last, quiet_since = -1, None
    while sub.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)   # polling the output files, not synchronising
        if _count(log, b"received PUBACK") < total:
            continue
        delivered = _count(out) - 1
        if delivered != last:
            last, quiet_since = delivered, time.monotonic()
        elif time.monotonic() - quiet_since > 3.0:
            break
    finished = sub.poll() is not None
    delivered = max(0, _count(out) - 1)
    row = window.close(delivered)
    settle = time.monotonic() + 5   # the publisher may log its last PUBACKs a moment later
    while _count(log, b"received PUBACK") < total and time.monotonic() < settle:
        time.sleep(0.05)
    acked = _count(log, b"received PUBACK")
    release.set()
    row.update(expected=total, delivered=delivered, acked=acked, lost=total - delivered,
               ok=acked == total)
    if acked != total:
        row["error"] = f"the publisher got {acked} of {total} PUBACKs"
    elif not finished:
        row["note"] = f"{total - delivered} of {total} acknowledged messages never delivered"
    return row


# --- login-attack --------------------------------------------------------------------

def _pbkdf2_line(user: str, password: bytes) -> str:
    """A `$7$` line as mosquitto_passwd / midge passwd write it (both brokers read it)."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password, salt, ITERATIONS, 64)
    return (f"{user}:$7${ITERATIONS}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


def write_password_file(directory: Path) -> Path:
    """`victim` and `first0`.. `first39`, all with password `right`."""
    path = directory / "passwords"
    users = ["victim"] + [f"first{i}" for i in range(FIRST_USERS)]
    path.write_text("".join(_pbkdf2_line(user, b"right") + "\n" for user in users))
    return path


def attack_listener(assets) -> str:
    return f"allow_anonymous false\npassword_file {assets.password_file}\n"


def _stats(values: list[float], prefix: str) -> dict:
    if not values:
        return {f"{prefix}_n": 0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {f"{prefix}_n": len(values), f"{prefix}_p50_ms": round(statistics.median(values), 1),
            f"{prefix}_p99_ms": round(p99, 1), f"{prefix}_max_ms": round(ordered[-1], 1)}


def login_attack(run) -> dict:
    seconds = run.size
    deadline = time.monotonic() + run.timeout
    common = ["--port", str(run.port), "--seconds", str(seconds)]
    workers = scenarios.Workers(run, [
        ["victim", *common, "--first-users", ",".join(f"first{i}" for i in range(FIRST_USERS))],
        ["attack", *common, "--parallel", str(ATTACK_PARALLEL)],
    ], script="authload.py")
    workers.expect_all("armed", deadline)
    window = scenarios.Window(run.broker)
    workers.go()
    results = [json.loads(raw) for raw in workers.expect_all("done", deadline)]
    victim = next(r for r in results if "returning_ms" in r)
    attack = next(r for r in results if "wrong_logins_answered" in r)
    row = window.close(len(victim["returning_ms"]))
    row.update(_stats(victim["returning_ms"], "returning"), **_stats(victim["first_ms"], "first"),
               **_stats(victim["ping_ms"], "ping"))
    row.update(wrong_logins_answered=attack["wrong_logins_answered"], refused=victim["refused"],
               under_50ms=bool(victim["returning_ms"]) and max(victim["returning_ms"]) < 50,
               ok=victim["refused"] == 0 and bool(victim["returning_ms"]))
    workers.release(deadline)
    return row
