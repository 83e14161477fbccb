"""Issue 14, defect 4, end to end with real peers: a publisher with 200 QoS 1 messages
in flight (`mosquitto_pub -l -M 200`) and a subscriber that acknowledges promptly
(`mosquitto_sub -q 1`), default limits (max_queued_messages 1000, max_inflight_messages
20). Before broker/flow.py midge delivered 1,992 to 16,595 of 20,000 (Mosquitto:
20,000): it acknowledged whole chunks of PUBLISHes faster than the subscriber's window
moved, and the subscriber's queue overflowed. The speed of either side is not
measured here (bench/ does: `pipelined-qos1`)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time

from tests.brokerproc import TIMEOUT_SCALE, start_midge
from tests.conformance import packets as p
from tests.peers import require_peer

COUNT = 20_000
SILENCE = 3.0 * TIMEOUT_SCALE   # no delivery for this long after the last PUBACK: lost


class LineCounter:
    """Counts a process's output lines on a thread; waits on a condition, not sleeps."""

    def __init__(self, stream, needle: bytes | None = None):
        self.count = 0
        self.needle = needle
        self.cond = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            if self.needle is None or self.needle in line:
                with self.cond:
                    self.count += 1
                    self.cond.notify_all()

    def wait(self, target: int, idle: float) -> int:
        """Until `target` lines, or `idle` seconds without a new one; the count."""
        with self.cond:
            while self.count < target:
                seen = self.count
                self.cond.wait(idle)
                if self.count == seen:
                    break
            return self.count


def test_pipelined_qos1_publisher_loses_nothing_to_a_prompt_subscriber(tmp_path, port):
    midge = start_midge(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                        "log_type error\nlog_type warning\nlog_type notice\nlog_type subscribe\n",
                        tmp_path, port)
    try:
        _pipelined(midge, port)
    finally:
        midge.stop()


def test_a_stuck_subscriber_blocks_nobody_and_costs_the_prompt_one_nothing(tmp_path, port):
    # A subscriber that never reads nor acknowledges: the publisher still gets every
    # PUBACK (it is held at most once, briefly) and the prompt subscriber every message.
    midge = start_midge(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                        "log_type error\nlog_type warning\nlog_type notice\nlog_type subscribe\n",
                        tmp_path, port)
    stuck = socket.create_connection(("127.0.0.1", port))
    try:
        mark = midge.mark()
        stuck.sendall(p.gen_connect("stuck-sub") + p.gen_subscribe(1, "pipe/t", 1))
        midge.wait_for_log("stuck-sub 1 pipe/t", start=mark)
        _pipelined(midge, port)
        midge.wait_for_log("Client stuck-sub is not keeping up", start=mark)
    finally:
        stuck.close()
        midge.stop()


def _pipelined(midge, port):
    sub_exe, pub_exe = require_peer("mosquitto_sub"), require_peer("mosquitto_pub")
    # Both tools block-buffer stdout on a pipe; line-buffer it so lines count as they come.
    stdbuf = [shutil.which("stdbuf"), "-oL"] if shutil.which("stdbuf") else []
    common = ["-h", "127.0.0.1", "-p", str(port)]
    mark = midge.mark()
    sub = subprocess.Popen([*stdbuf, sub_exe, *common, "-t", "pipe/t", "-q", "1", "-C", str(COUNT), "-i", "prompt-sub"],
                           stdout=subprocess.PIPE)
    midge.wait_for_log("prompt-sub 1 pipe/t", start=mark)   # subscribed (log_type subscribe)
    delivered = LineCounter(sub.stdout)
    pub = subprocess.Popen([*stdbuf, pub_exe, *common, "-t", "pipe/t", "-q", "1", "-l", "-M", "200", "-d",
                            "-i", "pipelined-pub"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    acked = LineCounter(pub.stdout, b"received PUBACK")
    try:
        lines = b"".join(b"%09d" % i + b"x" * 55 + b"\n" for i in range(COUNT))
        pub.stdin.write(lines)
        pub.stdin.flush()   # kept open: at EOF mosquitto_pub -l stops waiting for PUBACKs
        deadline = time.monotonic() + 40 * TIMEOUT_SCALE
        while acked.wait(COUNT, 1.0) < COUNT:
            assert time.monotonic() < deadline, f"only {acked.count} of {COUNT} PUBACKs"
        # Every message is routed; what the subscriber has not got by now is lost.
        got = delivered.wait(COUNT, SILENCE)
        assert got == COUNT, (f"the prompt subscriber got {got} of {COUNT} acknowledged messages; broker: "
                              + " / ".join(line for line in midge.output.splitlines() if "keeping up" in line))
        assert sub.wait(10 * TIMEOUT_SCALE) == 0
    finally:
        for proc in (pub, sub):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
