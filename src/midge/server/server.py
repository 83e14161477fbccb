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
from midge.broker import Broker, flow
from midge.broker.cleanup import attempt
from midge.config.reload import carry_over
from midge.config import ConfigError, load_config
from midge.log import Log, LogType
from midge.protocol.constants import ReasonCode
from midge.security import Security
from midge.server.auth_pool import AuthPool
from midge.server.connection import Connection
from midge.server.tasks import spawn
from midge.server.listeners import BACKLOG, ListenerError, open_listener
from midge.server.sdnotify import DISABLED as NOTIFY_DISABLED


@dataclass(slots=True)
class ListenerState:
    """A listener's live state: its config, sockets, TLS context and connection count."""

    listener: object  # midge.config ListenerConfig
    tls: object | None = None  # midge.server.tls_context.TlsListenerContext
    servers: list = field(default_factory=list)
    connection_count: int = 0
    websockets: bool = False  # `protocol websockets`: a WebSocket stage on every connection
    metrics: bool = False  # `protocol metrics`: an HTTP /metrics stage (server/metrics.py)
    tls_results: dict = field(default_factory=dict)  # "success" or failure kind -> handshakes

    def __post_init__(self):
        protocol = self.listener.protocol
        self.websockets = protocol == "websockets"
        self.metrics = protocol == "metrics"


SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR2, signal.SIGUSR1)


class StartupError(Exception):
    """The broker cannot start; the message says which option or listener and why."""


class Server:
    # SIGINT/SIGTERM stop, SIGHUP reloads, SIGUSR1 saves, SIGUSR2 dumps subscriptions: the
    # broker process's signals. A broker embedded in another program (midge.Broker) leaves
    # the host's signals alone unless asked.
    install_signal_handlers = True

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
        self.auth_pool: AuthPool | None = None
        self.bridges: list = []  # midge.server.bridge.Bridge
        self.persistence = None   # midge.persist.service.Persistence with `persistence true`
        self.autosave_timer: asyncio.TimerHandle | None = None
        # Process hooks the command line sets (run()); an embedded server has neither.
        self.notify = NOTIFY_DISABLED  # midge.server.sdnotify.SdNotify: READY/RELOADING/STOPPING
        self.after_bind = None  # called once with the server when every listener is bound
        self.running = False  # start() finished
        self.reload_pending = False  # a SIGHUP arrived during start()
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
        # Before any socket listens: a SIGHUP or SIGTERM sent as soon as the port answers
        # must not find the default action (death) in place. A reload waits for start().
        # (An embedded broker leaves the host's signals alone unless asked.)
        if self.install_signal_handlers:
            self._install_signals()
        # Password hashes run on worker threads, fairly by address (auth_pool.py).
        self.auth_pool = AuthPool(self.loop)
        self.security.hash_offload = self.auth_pool.verify
        for listener in self.config.listeners:
            state = ListenerState(listener, tls=self._tls_context(listener))
            self.listeners.append(state)
        bound_sockets = []
        for state in self.listeners:
            bound = self.open_sockets(state)
            for b in bound:
                log.notice(f"Opening {b.description}.")
            bound_sockets.append((state, bound))
        if self.after_bind is not None:
            self.after_bind(self)  # e.g. switch to `user`; files written from here on are its
        self._open_persistence()
        # In a cluster: connected to NATS, retained messages loaded, before any client
        # can connect (server/cluster.py).
        await self._join_cluster()
        for state, bound in bound_sockets:
            for b in bound:
                factory = lambda state=state: Connection(self, state)  # noqa: E731
                try:
                    if b.family == socket.AF_UNIX:
                        srv = await self.loop.create_unix_server(factory, sock=b.sock, backlog=BACKLOG)
                    else:
                        srv = await self.loop.create_server(factory, sock=b.sock, backlog=BACKLOG)
                except OSError as exc:  # listen() itself: the port was taken since bind()
                    raise StartupError(f"{b.description}: could not listen "
                                       f"({exc.strerror or exc})") from exc
                state.servers.append(srv)
        if not any(s.servers for s in self.listeners):
            raise StartupError("Unable to start any listening sockets, exiting.")
        self._start_tls_watcher()
        if self.config.bridges:
            from midge.server.bridge import BridgeSetupError, start_bridges

            try:
                self.bridges = start_bridges(self)
            except BridgeSetupError as exc:
                raise StartupError(str(exc)) from exc
        self.rearm_timer()
        log.notice(f"midge version {__version__} running")
        self.notify.ready(self.status_line())
        self.running = True
        if self.reload_pending:
            self.reload()

    def open_sockets(self, state: ListenerState) -> list:
        """Bind one listener's sockets (listeners.BoundSocket); StartupError names it on failure."""
        try:
            return open_listener(state.listener, local_only=self.config.local_only)
        except ListenerError as exc:
            raise StartupError(str(exc)) from exc

    async def run_until_stopped(self) -> None:
        await self.stopped.wait()

    def request_stop(self) -> None:
        if self.stopped is not None:
            self.stopped.set()

    async def shutdown(self) -> None:
        self.notify.stopping()
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
        # Each step runs even when one before it raised (issue 14): the rest of the
        # shutdown, persistence above all, must still happen; what failed is logged.
        log = self.log
        attempt(log, "at shutdown (closing clients)", self.broker.shutdown, self.loop.time())
        attempt(log, "at shutdown (writing to clients)", self.drain)
        if self.cluster is not None:
            await self.cluster.stop()
        if self.persistence is not None:
            if self.autosave_timer is not None:
                self.autosave_timer.cancel()
            attempt(log, "at shutdown (closing the persistence file)", self.persistence.close,
                    self.loop.time())
        for task in list(self.tasks):
            task.cancel()
        attempt(log, "at shutdown (plugin cleanup)", self.security.shutdown)
        if self.auth_pool is not None:
            attempt(log, "at shutdown (password workers)", self.auth_pool.close)
        for conn in list(self.connections):
            attempt(log, f"at shutdown (closing the connection from {conn.peer})", conn.close)
        for state in self.listeners:
            for srv in state.servers:
                await srv.wait_closed()
            if state.listener.port == 0 and state.listener.path:
                try:
                    os.unlink(state.listener.path)
                except OSError:
                    pass
        if self.install_signal_handlers:
            for signum in SIGNALS:  # a second Ctrl-C during shutdown was still ours
                self.loop.remove_signal_handler(signum)
        self.log.close()

    # -- The broker's output and clock ---------------------------------------------

    def _spawn(self, coroutine) -> None:
        """Run an async plugin hook; its result re-enters the broker, so drain after it."""
        spawn(self.loop, self.tasks, coroutine, self.log, "Plugin", after=self.drain)

    def drain(self) -> None:
        """Write every client's queued output; called after each call into the broker.
        Durable changes are stored first, so no acknowledgement precedes its state."""
        persistence = self.persistence
        if persistence is not None and (persistence.changes.sessions or persistence.changes.retained):
            persistence.write_changes(self.loop.time())
        broker = self.broker
        for client in broker.take_pending():
            conn = client.io
            if conn is not None:
                conn.flush()
        if broker.read_changes:
            # Flow control (broker/flow.py): stop or resume reading held publishers.
            for client in broker.take_read_changes():
                conn = client.io
                if conn is not None:
                    conn.set_reading(flow.reading_allowed(client))
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

    def reload(self, config=None) -> None:
        """SIGHUP: reload (see _reload), telling the service manager before and after.
        (The embedding API passes the new `config` itself.)"""
        if not self.running:
            self.reload_pending = True
            return
        self.reload_pending = False
        self.notify.reloading()
        try:
            self._reload(config)
        finally:
            self.notify.ready(self.status_line())

    def status_line(self) -> str:
        """One line for `systemctl status`: listeners, clients, bridges."""
        listeners = ", ".join(state.listener.name + (" (TLS)" if state.tls is not None else "")
                              for state in self.listeners)
        clients = len(self.broker.clients) if self.broker is not None else 0
        line = f"Listening on {listeners or 'nothing'}; {clients} client{'s' if clients != 1 else ''} connected"
        if self.bridges:
            up = sum(1 for bridge in self.bridges if getattr(bridge, "connected", False))
            line += f"; {up}/{len(self.bridges)} bridges connected"
        return line

    def _reload(self, config=None) -> None:
        """SIGHUP: re-read the config and apply what can change without a restart.
        (The embedding API passes the new `config` itself.)

        Unlike Mosquitto, listener limits are kept (not reset to defaults) and the
        global limits Mosquitto parses but forgets (max_inflight_*, max_queued_*,
        max_keepalive, max_packet_size, retain_available) are applied.
        """
        log = self.log
        log.notice("Reloading config.")
        if config is None:
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
        from midge.server.tls_context import TlsListenerContext, TlsSetupError

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
            task = self.loop.create_task(state.tls.revocation.sweep(live))
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


def run(config, log: Log, config_path: str | None, ports=(), verbose=False,
        notify=None, after_bind=None) -> int:
    """Run the broker until SIGINT/SIGTERM; return the process exit code.

    notify: an SdNotify (the command line passes one read from $NOTIFY_SOCKET);
    after_bind: called once with the server when its listeners are bound (the
    command line's privilege switch)."""
    server = Server(config, log, config_path, ports, verbose)
    if notify is not None:
        server.notify = notify
    server.after_bind = after_bind

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
