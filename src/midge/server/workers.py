"""`workers N`: one supervisor, N worker processes sharing every listener (SO_REUSEPORT).

The supervisor opens no MQTT socket itself. Each worker is an ordinary `midge broker`
process with MIDGE_WORKER=K in its environment (its listeners set SO_REUSEPORT and its
cluster node id gets `-wK`); the workers are one broker through NATS like any cluster
nodes (docs/cluster.md). Without `cluster_url`, the supervisor starts nats-server on
127.0.0.1 (a free port, JetStream under the persistence location or a temporary
folder) and hands its URL to the workers in MIDGE_CLUSTER_URL.

Signals: SIGHUP is passed to every worker (each reloads); SIGTERM/SIGINT stop every
worker, then nats-server; a worker (or nats-server) that dies otherwise is restarted
and the log says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

from midge.server.natsproc import NatsServer, NatsServerError

_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
RESTART_DELAY_MAX = 5.0


def _unblock() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)


class Supervisor:
    def __init__(self, config, log, argv: list[str]):
        self.config = config
        self.log = log
        self.argv = argv          # `midge broker` arguments for each worker
        self.count = config.workers
        self.workers: dict[int, subprocess.Popen] = {}
        self.restarts: dict[int, int] = {}
        self.nats: NatsServer | None = None
        self.tmp: tempfile.TemporaryDirectory | None = None
        self.env = dict(os.environ)

    def run(self) -> int:
        if not self.config.cluster_url:
            if not self._start_nats():
                return 1
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            for index in range(1, self.count + 1):
                self._spawn(index)
            self.log.notice(f"midge supervisor: {self.count} workers running.")
            return self._supervise()
        finally:
            self._stop_all()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)

    def _start_nats(self) -> bool:
        location = self.config.persistence_location
        if location:
            store = os.path.join(location, "midge-nats")
        else:
            self.tmp = tempfile.TemporaryDirectory(prefix="midge-nats-")
            store = self.tmp.name
        self.nats = NatsServer(store, name=f"midge-{os.getpid()}")
        try:
            url = self.nats.start()
        except NatsServerError as exc:
            self.log.error(f"Error: {exc}")
            return False
        self.env["MIDGE_CLUSTER_URL"] = url
        self.log.notice(f"midge supervisor: nats-server started on {url} (JetStream store {store}).")
        return True

    def _spawn(self, index: int) -> None:
        env = dict(self.env, MIDGE_WORKER=str(index))
        process = subprocess.Popen([sys.executable, "-m", "midge", "broker", *self.argv], env=env,
                                   preexec_fn=_unblock)
        self.workers[index] = process
        self.log.notice(f"midge supervisor: worker {index} started (pid {process.pid}).")

    def _supervise(self) -> int:
        while True:
            info = signal.sigtimedwait(_SIGNALS, 1.0)
            if info is None or info.si_signo == signal.SIGCHLD:
                self._reap()
                continue
            if info.si_signo == signal.SIGHUP:
                self.log.notice("midge supervisor: reloading every worker.")
                for process in self.workers.values():
                    if process.poll() is None:
                        process.send_signal(signal.SIGHUP)
                continue
            self.log.notice("midge supervisor: stopping every worker.")
            return 0

    def _reap(self) -> None:
        for index, process in list(self.workers.items()):
            code = process.poll()
            if code is None:
                continue
            count = self.restarts.get(index, 0) + 1
            self.restarts[index] = count
            self.log.warning(f"midge supervisor: worker {index} (pid {process.pid}) exited with code "
                             f"{code}; restarting it.")
            if count > 3:
                # A worker that keeps dying (bad config after an edit): back off.
                time.sleep(min(RESTART_DELAY_MAX, 0.2 * count))
            self._spawn(index)
        if self.nats is not None and not self.nats.running():
            self.log.warning("midge supervisor: nats-server exited; restarting it on the same port.")
            try:
                self.nats.start()
            except NatsServerError as exc:
                self.log.error(f"midge supervisor: {exc}")

    def _stop_all(self) -> None:
        for process in self.workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.workers.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.nats is not None:
            self.nats.stop()
        if self.tmp is not None:
            self.tmp.cleanup()
        self.log.notice("midge supervisor: stopped.")


def supervise(config, log, argv: list[str]) -> int:
    return Supervisor(config, log, argv).run()
