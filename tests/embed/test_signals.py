"""Issue 12: a program that embeds a broker keeps its own Ctrl-C (a real SIGINT to a real process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.brokerproc import TIMEOUT_SCALE

HOST = Path(__file__).with_name("sigint_host.py")


def run_and_interrupt(mode: str) -> tuple[int, list[str]]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(HOST), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = []
        for line in proc.stdout:  # the broker is up once "ready" is printed
            lines.append(line.rstrip("\n"))
            if line.startswith("ready"):
                break
        assert lines and lines[-1].startswith("ready"), lines
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=20 * TIMEOUT_SCALE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, lines + rest.splitlines()


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_ctrl_c_is_the_programs_keyboard_interrupt(mode):
    code, lines = run_and_interrupt(mode)
    assert code == 130, lines
    assert "KeyboardInterrupt in the program" in lines


def test_the_programs_own_sigint_handler_runs_and_the_broker_keeps_serving():
    code, lines = run_and_interrupt("own")
    assert code == 0, lines
    assert "own handler ran; broker still serving: True" in lines


def test_handle_signals_true_lets_sigint_stop_the_broker():
    code, lines = run_and_interrupt("handled")
    assert code == 0, lines
    assert "broker stopped by SIGINT; program goes on" in lines
