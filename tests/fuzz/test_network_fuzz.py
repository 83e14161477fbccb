"""Fuzz target: a running midge broker, over TCP (netfuzz.py). The broker must never
log an internal error or a traceback, never exit, and keep answering a CONNECT after
every batch of hostile connections. See campaign.py for the budget and the corpus;
corpus/network/ holds the inputs of issue 14's crashes (deep topics, half-sent
packets) and whatever the fuzzer finds later."""

from __future__ import annotations

import json
import socket

import pytest

from tests.brokerproc import TIMEOUT_SCALE, free_port, start_midge
from tests.conformance import packets as p
from tests.fuzz import netfuzz
from tests.fuzz.campaign import corpus, save_found, seconds, timeout_mark

BAD = ("Traceback", "Internal error", "Exception in callback")


def _config(port: int, second: int) -> str:
    # Small windows and queues so that flow control, queue limits and drops happen; a
    # second listener with a mount point. `subscribe` lines let the probe find its own.
    return (f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 5\n"
            "max_queued_messages 50\nlog_type error\nlog_type warning\nlog_type subscribe\n"
            f"connection_messages false\nlistener {second} 127.0.0.1\nmount_point m/\n")


class Target:
    """A midge process under fuzzing, and the check made after every batch."""

    def __init__(self, tmp_path):
        self.port, second = free_port(), free_port()
        self.broker = start_midge(_config(self.port, second), tmp_path, self.port)
        self.probes = 0

    def failed(self) -> str | None:
        """None while the broker is alive, answers, and logged nothing bad so far."""
        if self.broker.proc.poll() is not None:
            return f"the broker exited with {self.broker.proc.returncode}"
        self.probes += 1
        topic = f"fuzz/probe/{self.probes}"
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5 * TIMEOUT_SCALE) as sock:
                sock.sendall(p.gen_connect("fuzz-probe") + p.gen_subscribe(1, topic, 0))
                answer = b""
                while len(answer) < 9:
                    chunk = sock.recv(9 - len(answer))
                    if not chunk:
                        break
                    answer += chunk
                if answer != b"\x20\x02\x00\x00" + p.gen_suback(1, [0]):
                    return f"the broker answered a plain CONNECT and SUBSCRIBE with {answer!r}"
        except OSError as exc:
            return f"the broker did not answer a CONNECT: {exc!r}"
        # Lines come in order: once the probe's subscribe line is read, so is every
        # line the batch caused.
        self.broker.wait_for_log(f"fuzz-probe 0 {topic}")
        with self.broker._cond:
            lines, self.broker.lines[:] = list(self.broker.lines), []   # (a long run logs a lot)
        bad = [line for line in lines if any(word in line for word in BAD)]
        if bad:
            return "the broker logged:\n" + "\n".join(bad[:20])
        return None

    def stop(self) -> None:
        self.broker.stop()


@timeout_mark()
def test_network_fuzz(tmp_path):
    target = Target(tmp_path)
    try:
        played, failure = netfuzz.fuzz(target.port, seconds(), target.failed)
    finally:
        target.stop()
    if failure is not None:
        reason, batches, seed = failure
        path = save_found("network", ".json", {
            "about": f"found by test_network_fuzz (seed {seed}): {reason}",
            "batches": [[session.to_json() for session in batch] for batch in batches]})
        pytest.fail(f"{reason}\nafter {played} connections; the last {len(batches)} batches "
                    f"are saved in {path}")
    assert played > 0


@pytest.mark.parametrize("path", corpus("network", ".json"), ids=lambda path: path.stem)
def test_network_corpus(tmp_path, path):
    case = json.loads(path.read_text())
    batches = [[netfuzz.Session.from_json(s) for s in batch] for batch in case["batches"]]
    target = Target(tmp_path)
    try:
        reason = netfuzz.replay(target.port, batches, target.failed)
    finally:
        target.stop()
    assert reason is None, f"{path.name} ({case['about']}): {reason}"
