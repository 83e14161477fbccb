"""Load for the `login-attack` scenario (issue 14, defect 3): wrong logins in parallel
from one address, and what the other clients of the broker see meanwhile.

Roles (one process each, so neither slows the other's clock):

- `attack`: waves of `--parallel` connections from 127.0.0.1, each a CONNECT with a
  wrong password; a wave ends when every one is answered or closed, and the next
  starts at once. Reports how many wrong logins were answered.
- `victim`: every 100 ms a returning user logs in from 127.0.0.2 (it logged in once
  while armed: a broker may remember that) and disconnects; every 500 ms a user who
  never logged in does so from 127.0.0.3; and a client connected from 127.0.0.4 sends
  a PINGREQ every 100 ms. Reports each latency (CONNECT -> CONNACK, PINGREQ ->
  PINGRESP) in milliseconds.

Driven like loadgen.py: worker -> "armed", run.py -> "go", worker -> "done {json}" when
`--seconds` have passed. MQTT 3.1.1 is encoded here; nothing comes from midge.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

PINGREQ = b"\xc0\x00"


def _string(value: str) -> bytes:
    data = value.encode()
    return len(data).to_bytes(2, "big") + data


def connect_packet(client_id: str, username: str, password: str) -> bytes:
    body = _string("MQTT") + b"\x04\xc2\x00\x3c" + _string(client_id) + _string(username) + _string(password)
    return b"\x10" + bytes([len(body)]) + body


async def login(port: int, source: str, client_id: str, username: str, password: str,
                keep: bool = False):
    """(milliseconds to the CONNACK, return code, the connection if kept)."""
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(connect_packet(client_id, username, password))
    try:
        connack = await reader.readexactly(4)
        code = connack[3]
    except (asyncio.IncompleteReadError, ConnectionError):
        code = -1
    elapsed = (time.perf_counter() - start) * 1000
    if keep and code == 0:
        return elapsed, code, (reader, writer)
    if code == 0:
        writer.write(b"\xe0\x00")
    writer.close()
    return elapsed, code, None


async def attack(args) -> dict:
    deadline = time.monotonic() + args.seconds
    answered = waves = 0
    while time.monotonic() < deadline:
        results = await asyncio.gather(*(login(args.port, "127.0.0.1", f"attack{i}", args.user, "wrong")
                                         for i in range(args.parallel)), return_exceptions=True)
        answered += sum(1 for r in results if not isinstance(r, BaseException) and r[1] > 0)
        waves += 1
    return {"wrong_logins_answered": answered, "waves": waves}


async def _every(seconds: float, deadline: float, action) -> None:
    next_at = time.monotonic()
    while next_at < deadline:
        await action()
        next_at += seconds
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))   # the load's own pace


async def victim(args, go: asyncio.Event) -> dict:
    returning, first, ping, codes = [], [], [], []
    users = iter(args.first_users.split(","))
    _, code, kept = await login(args.port, "127.0.0.4", "pinger", args.user, args.password, keep=True)
    assert code == 0, f"the pinger could not log in ({code})"
    await login(args.port, "127.0.0.2", "returning", args.user, args.password)   # remembered from now
    reader, writer = kept
    print("armed", flush=True)
    await go.wait()
    deadline = time.monotonic() + args.seconds

    async def returning_login():
        ms, code, _ = await login(args.port, "127.0.0.2", "returning", args.user, args.password)
        returning.append(ms)
        codes.append(code)

    async def first_login():
        user = next(users, None)
        if user is not None:
            ms, code, _ = await login(args.port, "127.0.0.3", user, user, args.password)
            first.append(ms)
            codes.append(code)

    async def pinged():
        start = time.perf_counter()
        writer.write(PINGREQ)
        await reader.readexactly(2)
        ping.append((time.perf_counter() - start) * 1000)

    await asyncio.gather(_every(0.1, deadline, returning_login), _every(0.5, deadline, first_login),
                         _every(0.1, deadline, pinged))
    writer.close()
    return {"returning_ms": returning, "first_ms": first, "ping_ms": ping,
            "refused": sum(1 for code in codes if code != 0)}


async def main_async(args) -> None:
    loop = asyncio.get_running_loop()
    go = asyncio.Event()

    def read_go():
        if sys.stdin.readline().strip() == "go":
            go.set()

    if args.role == "attack":
        print("armed", flush=True)
        await loop.run_in_executor(None, read_go)
        result = await attack(args)
    else:
        waiter = loop.run_in_executor(None, read_go)
        result = await victim(args, go)
        await waiter
    print("done " + json.dumps(result), flush=True)
    # Stay until run.py closes stdin (loadgen.py's protocol: an exit before every worker
    # said "done" reads as a crash).
    await loop.run_in_executor(None, sys.stdin.read)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["attack", "victim"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--parallel", type=int, default=100)
    parser.add_argument("--user", default="victim")
    parser.add_argument("--password", default="right")
    parser.add_argument("--first-users", default="")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
