"""The broker process's event loop side: listeners, the one timer, signals, reload.

Everything MQTT happens in the sans-I/O `midge.broker.Broker`; this module owns the
sockets and the clock. After every call into the broker, `drain()` writes whatever the
broker queued for any client (a PUBLISH fans out to many connections at once).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from dataclasses import dataclass, field

from midge import __version__
from midge.broker import Broker
from midge.config.reload import carry_over
from midge.config import ConfigError, load_config
from midge.log import Log, LogType
from midge.protocol.constants import ReasonCode
from midge.security import Security
from midge.server.connection import Connection
from midge.server.listeners import ListenerError, open_listener


@dataclass(slots=True)
class ListenerState:
    """A listener's live state: its config, sockets, TLS context and connection count."""

    listener: object  # midge.config ListenerConfig
    tls: object | None = None  # midge.server.tls.TlsListenerContext
    servers: list = field(default_factory=list)
    connection_count: int = 0
    websockets: bool = False  # `protocol websockets`: a WebSocket stage on every connection

    def __post_init__(self):
        self.websockets = self.listener.protocol == "websockets"


class StartupError(Exception):
    """The broker cannot start; the message says which option or listener and why."""


class Server:
    def __init__(self, config, log: Log, config_path: str | None = None, ports=(), verbose=False):
        self.config = config
        self.log = log
        self.config_path = config_path
        self.ports = list(ports)
        self.verbose = verbose
        self.loop: asyncio.AbstractEventLoop | None = None
        self.security = Security(config, log)
        self.broker: Broker | None = None
        self.listeners: list[ListenerState] = []
        self.connections: set[Connection] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_deadline: float | None = None
        self.stopped: asyncio.Event | None = None
        self.tls_watcher = None
        self.tasks: set[asyncio.Task] = set()
        self.bridges: list = []  # midge.server.bridge.Bridge
        self.persistence = None   # midge.persist.service.Persistence with `persistence true`
        self.autosave_timer: asyncio.TimerHandle | None = None
        self.cluster = None   # midge.server.cluster.Cluster with cluster_url or workers

    # -- Start and stop -----------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stopped = asyncio.Event()
        log = self.log
        log.notice(f"midge version {__version__} starting")
        if self.config_path:
            log.notice(f"Config loaded from {self.config_path}.")
        else:
            log.notice("Using default config.")
        if self.config.local_only:
            log.notice("Starting in local only mode. Connections will only be possible from "
                       "clients running on this machine.")
            log.notice("Create a configuration file which defines a listener to allow remote access.")
        self.broker = Broker(self.config, log, security=self.security, now=self.loop.time())
        self.security.spawn = self._spawn
        self._open_persistence()
        await self._join_cluster()
        for listener in self.config.listeners:
            state = ListenerState(listener, tls=self._tls_context(listener))
            self.listeners.append(state)
        for state in self.listeners:
            try:
                bound = open_listener(state.listener, local_only=self.config.local_only)
            except ListenerError as exc:
                raise StartupError(str(exc)) from exc
            for b in bound:
                log.notice(f"Opening {b.description}.")
                factory = lambda state=state: Connection(self, state)  # noqa: E731
                if b.family == socket.AF_UNIX:
                    srv = await self.loop.create_unix_server(factory, sock=b.sock)
                else:
                    srv = await self.loop.create_server(factory, sock=b.sock)
                state.servers.append(srv)
        if not any(s.servers for s in self.listeners):
            raise StartupError("Unable to start any listening sockets, exiting.")
        self._install_signals()
        self._start_tls_watcher()
        if self.config.bridges:
            from midge.server.bridge import BridgeSetupError, start_bridges

            try:
                self.bridges = start_bridges(self)
            except BridgeSetupError as exc:
                raise StartupError(str(exc)) from exc
        self.rearm_timer()
        log.notice(f"midge version {__version__} running")

    async def run_until_stopped(self) -> None:
        await self.stopped.wait()

    def request_stop(self) -> None:
        if self.stopped is not None:
            self.stopped.set()

    async def shutdown(self) -> None:
        self.log.notice(f"midge version {__version__} terminating")
        for state in self.listeners:
            for srv in state.servers:
                srv.close()
        if self.timer is not None:
            self.timer.cancel()
        if self.tls_watcher is not None:
            self.tls_watcher.cancel()
        if self.bridges:
            from midge.server.bridge import stop_bridges

            stop_bridges(self.bridges)
        self.broker.shutdown(self.loop.time())
        self.drain()
        if self.cluster is not None:
            await self.cluster.stop()
        if self.persistence is not None:
            if self.autosave_timer is not None:
                self.autosave_timer.cancel()
            self.persistence.close(self.loop.time())
        for task in list(self.tasks):
            task.cancel()
        self.security.shutdown()
        for conn in list(self.connections):
            conn.close()
        for state in self.listeners:
            for srv in state.servers:
                await srv.wait_closed()
            if state.listener.port == 0 and state.listener.path:
                try:
                    os.unlink(state.listener.path)
                except OSError:
                    pass
        self.log.close()

    # -- The broker's output and clock ---------------------------------------------

    def _spawn(self, coroutine) -> None:
        """Run an async plugin hook; its result re-enters the broker, so drain after it."""
        task = self.loop.create_task(coroutine)
        self.tasks.add(task)

        def done(task):
            self.tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                self.log.error(f"Plugin task failed: {task.exception()!r}")
            self.drain()

        task.add_done_callback(done)

    def drain(self) -> None:
        """Write every client's queued output; called after each call into the broker.
        Durable changes are stored first, so no acknowledgement precedes its state."""
        persistence = self.persistence
        if persistence is not None and (persistence.changes.sessions or persistence.changes.retained):
            persistence.write_changes(self.loop.time())
        for client in self.broker.take_pending():
            conn = client.io
            if conn is not None:
                conn.flush()
        self.rearm_timer()

    def rearm_timer(self) -> None:
        """Keep one timer for the broker's next deadline (re-armed only when it moves)."""
        deadline = self.broker.next_deadline()
        if deadline == self.timer_deadline:
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.timer_deadline = deadline
        if deadline is not None:
            self.timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        self.timer_deadline = None
        try:
            self.broker.handle_timer(self.loop.time())
        except Exception as exc:  # a timer bug must not stop the broker
            self.log.error(f"Internal error in broker timer: {exc!r}")
        self.drain()

    # -- Signals and reload ------------------------------------------------------

    def _install_signals(self) -> None:
        loop = self.loop
        loop.add_signal_handler(signal.SIGINT, self.request_stop)
        loop.add_signal_handler(signal.SIGTERM, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        loop.add_signal_handler(signal.SIGUSR2, self._dump_subscriptions)
        loop.add_signal_handler(signal.SIGUSR1, self._save_persistence)

    def reload(self) -> None:
        """SIGHUP: re-read the config and apply what can change without a restart.

        Unlike Mosquitto, listener limits are kept (not reset to defaults) and the
        global limits Mosquitto parses but forgets (max_inflight_*, max_queued_*,
        max_keepalive, max_packet_size, retain_available) are applied.
        """
        log = self.log
        log.notice("Reloading config.")
        try:
            config = load_config(self.config_path, ports=self.ports, verbose=self.verbose)
        except ConfigError as exc:
            log.error(f"Reload failed, keeping the running configuration: {exc}")
            return
        # What SIGHUP cannot change keeps its running value (the option table's reload
        # column, config/reload.py); say which lines wait for a restart.
        for message in carry_over(self.config, config):
            log.warning(f"Reload: {message}")
        old_keys = [s.listener.key for s in self.listeners]
        new_keys = [listener.key for listener in config.listeners]
        if old_keys != new_keys:
            log.warning("Reload: listeners were added, removed or moved; restart midge to apply that. "
                        "Other changes are applied.")
        by_key = {listener.key: listener for listener in config.listeners}
        log.reconfigure(config)
        try:
            self.security.reload(config)
        except Exception as exc:
            log.error(f"Reload of password/ACL/PSK files failed, keeping the old ones: {exc}")
        for state in self.listeners:
            new_listener = by_key.get(state.listener.key)
            if new_listener is None:
                continue
            state.listener = new_listener
            if state.tls is not None:
                try:
                    state.tls = self._tls_context(new_listener)
                except StartupError as exc:
                    log.error(f"Reload: keeping the old TLS context of listener {new_listener.port}: {exc}")
        self._reload_persistence(config)
        self.config = config
        if self.tls_watcher is None:
            self._start_tls_watcher()   # tls_watch_interval may have been 0 until now
        self.broker.reload(config, self.loop.time())
        self.drain()
        log.notice("Reload complete.")

    # -- Cluster ---------------------------------------------------------------------

    async def _join_cluster(self) -> None:
        """With cluster_url (or a NATS URL from the `workers` supervisor): join before any
        listener opens, so the first client already sees the whole cluster."""
        urls = list(getattr(self.config, "cluster_url", None) or [])
        embedded = os.environ.get("MIDGE_CLUSTER_URL")
        if not urls and embedded:
            urls = [embedded]
        if not urls:
            return
        from midge.server.cluster import Cluster, ClusterError, node_id_for

        self.cluster = Cluster(self, urls, node_id_for(self.config))
        try:
            await self.cluster.start()
        except ClusterError as exc:
            self.cluster = None
            raise StartupError(f"Cluster: {exc}") from exc

    # -- Persistence -----------------------------------------------------------------

    def _open_persistence(self) -> None:
        from midge.persist.service import PersistError, open_persistence
        try:
            self.persistence = open_persistence(self.config, self.log, self.broker, self.loop.time())
        except PersistError as exc:
            raise StartupError(str(exc)) from exc
        self._arm_autosave()

    def _arm_autosave(self) -> None:
        if self.autosave_timer is not None:
            self.autosave_timer.cancel()
            self.autosave_timer = None
        persistence = self.persistence
        if persistence is not None and persistence.autosave_interval > 0:
            def tick():
                persistence.autosave()
                self.autosave_timer = self.loop.call_later(persistence.autosave_interval, tick)
            self.autosave_timer = self.loop.call_later(persistence.autosave_interval, tick)

    def _save_persistence(self) -> None:
        """SIGUSR1: save the persistence file now (Mosquitto's behaviour)."""
        if self.persistence is not None:
            self.persistence.save_now(self.loop.time())

    def _reload_persistence(self, config) -> None:
        """SIGHUP: autosave settings apply (persistence and its file are RELOAD_NO: the
        state lives in one open file)."""
        if self.persistence is not None:
            self.persistence.configure(config)
            self._arm_autosave()

    def _dump_subscriptions(self) -> None:
        for line in self.broker.dump_subscriptions():
            self.log.notice(line)

    # -- TLS ------------------------------------------------------------------------

    def _tls_context(self, listener):
        if not listener.tls_enabled:
            return None
        from midge.server.tls import TlsListenerContext, TlsSetupError

        security = self.security

        def psk_lookup(identity: str, listener=listener):
            return security.psk_key(listener, identity)

        try:
            return TlsListenerContext.from_listener(listener, psk_lookup, self.log)
        except TlsSetupError as exc:
            raise StartupError(str(exc)) from exc

    def _psk_file_changed(self, listener) -> None:
        """The watcher saw a psk_file change: reload the keys (the security layer owns them)."""
        self.security.reload(self.config)
        self.log.notice(f"Reloaded psk_file {listener.security.psk_file} for listener {listener.port}.")

    def _sweep_revoked(self) -> None:
        """disconnect_on_revocation: drop live connections whose certificate went bad."""
        for state in self.listeners:
            if state.tls is None or not state.listener.disconnect_on_revocation:
                continue
            live = [(c, c.tls_info) for c in self.connections
                    if c.listener_state is state and c.client is not None and c.tls_info is not None]
            if not live:
                continue
            task = self.loop.create_task(state.tls.sweep(live))
            self.tasks.add(task)
            task.add_done_callback(self._revoked_swept)

    def _revoked_swept(self, task) -> None:
        self.tasks.discard(task)
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled():
                self.log.error(f"Revocation sweep failed: {task.exception()!r}")
            return
        for conn, failure in task.result():
            if conn.client is None or conn.closed:
                continue
            self.log.notice(f"Disconnecting client {conn.client.client_id} from {conn.peer}: {failure}")
            conn.client.close(self.loop.time(), "administrative", reason_code=ReasonCode.ADMINISTRATIVE_ACTION)
        self.drain()

    def _start_tls_watcher(self) -> None:
        interval = self.config.tls_watch_interval
        if interval <= 0 or not any(s.tls is not None for s in self.listeners):
            return
        from midge.server.tls_reload import TlsFileWatcher

        watcher = TlsFileWatcher(self.listeners, self._tls_context, self.log,
                                 on_psk_file_change=self._psk_file_changed)

        def tick():
            try:
                watcher.check()
            except Exception as exc:
                self.log.error(f"TLS file watcher: {exc!r}")
            self._sweep_revoked()
            # Re-read: SIGHUP may change tls_watch_interval (0 stops the watcher).
            interval = self.config.tls_watch_interval
            self.tls_watcher = self.loop.call_later(interval, tick) if interval > 0 else None

        self.tls_watcher = self.loop.call_later(interval, tick)


def run(config, log: Log, config_path: str | None, ports=(), verbose=False) -> int:
    """Run the broker until SIGINT/SIGTERM; return the process exit code."""
    server = Server(config, log, config_path, ports, verbose)

    async def main() -> int:
        # Log lines go out once per loop turn (log.py `defer_writes`), and all of them
        # before the process exits, whatever happens.
        log.defer_writes(asyncio.get_running_loop().call_soon)
        try:
            try:
                await server.start()
            except StartupError as exc:
                log.error(f"Error: {exc}")
                return 1
            await server.run_until_stopped()
            await server.shutdown()
            return 0
        finally:
            log.defer_writes(None)

    return asyncio.run(main(), loop_factory=_loop_factory())


def _loop_factory():
    if os.environ.get("MIDGE_NO_UVLOOP"):
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
