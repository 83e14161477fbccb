"""midge inside a Python program: the public embedding API (`midge.Broker`).

    async with midge.Broker(port=0) as broker:        # on the caller's event loop
        ...broker.port...
    with midge.Broker(port=0) as broker:              # its own loop, in a thread
        ...

A Broker installs no signal handlers unless asked (`handle_signals=True`), never calls
`sys.exit`, and logs through Python's `logging` (logger `midge`) unless asked to use the
config's `log_dest`. `port=0`, and `listener auto [ADDRESS]` in config text given to a
Broker, bind a free TCP port; `listener 0 PATH` keeps Mosquitto's meaning (a Unix socket).

Python code publishes into the broker and watches its messages without a network
client: both go through one in-process MQTT 5 client of the broker (`_InProcessClient`),
which the security layer trusts like the local side of midge's own bridges (no password,
no ACL), so it sees and may publish everything.

Everything else in the package is internal; `docs/embedding.md` is the user's guide.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import ipaddress
import itertools
import logging
import os
import secrets
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from midge.config import Config, ConfigError, ListenerConfig, load_config, load_config_string
from midge.log import Log, LoggingLog
from midge.protocol.codec import Decoder, encode
from midge.protocol.constants import PacketType, Property
from midge.protocol.packets import (
    Connect, Pingreq, Puback, Pubcomp, Publish, Pubrec, Pubrel, Subscribe, Unsubscribe,
)
from midge.protocol.packets import Subscription as SubscriptionRequest
from midge.protocol.topics import valid_topic_filter, valid_topic_name
from midge.server.listeners import ListenerError, open_listener
from midge.server.server import Server, StartupError, _loop_factory

__all__ = ["Broker", "BrokerError", "Listener", "Message", "Messages", "Subscription"]

_logger = logging.getLogger("midge")
_LOOPBACK_NAMES = ("localhost", "ip6-localhost")


class BrokerError(Exception):
    """The broker could not start (a port in use, unreadable TLS files, ...) or is not running."""


@dataclass(frozen=True, slots=True)
class Listener:
    """One bound socket of a running broker.

    `kind` is "mqtt", "mqtts" (TLS), "ws", "wss" (WebSocket, without and with TLS) or
    "unix"; for a Unix socket `host` is its path and `port` is 0.
    """

    host: str
    port: int
    kind: str

    @property
    def url(self) -> str:
        """`mqtts://127.0.0.1:8883`, `ws://[::1]:9001`, `unix:///run/midge.sock`."""
        if self.kind == "unix":
            return f"unix://{self.host}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.kind}://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Message:
    """An application message as the broker routes it.

    `retain` is the flag as published (the in-process subscription keeps it), and true
    for a retained message delivered when a subscription starts.
    """

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    message_expiry_interval: int | None = None

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8."""
        return self.payload.decode()


class Subscription:
    """A callback subscription made by `Broker.subscribe`; `cancel()` ends it."""

    def __init__(self, broker: "Broker", topic_filter: str, callback: Callable[[Message], object]):
        self.topic_filter = topic_filter
        self._broker = broker
        self._callback = callback
        self.active = False

    def _deliver(self, message: Message) -> None:
        # Called while the broker writes its output: the callback runs right after, on
        # the same loop, so it may publish into the broker itself.
        loop = self._broker._loop
        assert loop is not None  # delivered by a running broker
        loop.call_soon(self._run, message)

    def _run(self, message: Message) -> None:
        if not self.active:
            return
        try:
            self._callback(message)
        except Exception:  # a failing callback must not stop the broker or the others
            _logger.exception("midge.Broker.subscribe(%r): the callback raised", self.topic_filter)

    def _end(self) -> None:
        self.active = False

    def cancel(self) -> None:
        """Stop the callback; safe to call twice, or after the broker stopped."""
        if self.active:
            self._broker._unobserve(self)

    def __repr__(self) -> str:
        return f"<midge Subscription {self.topic_filter!r}{'' if self.active else ' (cancelled)'}>"


class Messages:
    """The messages matching one topic filter, for `for`, `async for` or `get()`.

    Made by `Broker.messages()`, already subscribed: a message published after that call
    returned is in it. Iteration ends when it is closed (leaving the `with` block) or the
    broker stops. Messages wait in memory until taken.
    """

    def __init__(self, broker: "Broker", topic_filter: str):
        self.topic_filter = topic_filter
        self._broker = broker
        self._queue: collections.deque[Message] = collections.deque()
        self._condition = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self.active = False

    # -- Fed by the broker's loop --------------------------------------------------------

    def _deliver(self, message: Message) -> None:
        with self._condition:
            self._queue.append(message)
            self._wake()

    def _end(self) -> None:
        with self._condition:
            self.active = False
            self._wake()

    def _wake(self) -> None:
        self._condition.notify_all()
        waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            if loop is _running_loop():
                if not future.done():
                    future.set_result(None)
            else:
                loop.call_soon_threadsafe(_set_if_pending, future)

    # -- Consumer side -------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> Message:
        """The next message; blocks (not on the broker's own thread). TimeoutError after
        `timeout` seconds, EOFError once closed and empty."""
        if threading.get_ident() == self._broker._loop_thread:
            message = self.get_nowait()
            if message is not None:
                return message
            raise BrokerError("get() would block the broker's own event loop: use `await messages.aget()` "
                              "or `async for`")
        with self._condition:
            if not self._condition.wait_for(lambda: self._queue or not self.active, timeout):
                raise TimeoutError(f"no message on {self.topic_filter!r} within {timeout} s")
            if self._queue:
                return self._queue.popleft()
            raise EOFError(f"messages({self.topic_filter!r}) is closed")

    def get_nowait(self) -> Message | None:
        """The next message if one is waiting, else None."""
        with self._condition:
            return self._queue.popleft() if self._queue else None

    async def aget(self) -> Message:
        """The next message (await it); EOFError once closed and empty."""
        loop = asyncio.get_running_loop()
        while True:
            with self._condition:
                if self._queue:
                    return self._queue.popleft()
                if not self.active:
                    raise EOFError(f"messages({self.topic_filter!r}) is closed")
                future = loop.create_future()
                self._waiters.append((loop, future))
            await future

    def __iter__(self) -> Iterator[Message]:
        while True:
            try:
                yield self.get()
            except EOFError:
                return

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.aget()
        except EOFError:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Unsubscribe; waiting consumers get what is queued, then the end."""
        if self.active:
            self._broker._unobserve(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.close()


def _set_if_pending(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Broker:
    """An MQTT broker in this process.

    `config` is mosquitto.conf text (a `str`) or a file (`pathlib.Path`); without it the
    keywords describe one listener: `host` (default 127.0.0.1, None for every
    interface) and `port` (0: a free port), TLS with Mosquitto's `cafile`, `certfile`,
    `keyfile`, `require_certificate`, and `allow_anonymous` (default: true when the
    listener is on the loopback interface and there is no `password_file`, as in
    Mosquitto's local-only mode), `password_file`, `acl_file`, and `persistence` (a
    directory for the persistence file). In config text, `listener auto [ADDRESS]`
    binds a free port.

    `python_logging=False` logs to the config's `log_dest` (stderr by default) instead of
    the `midge` logger; `handle_signals=True` makes SIGINT/SIGTERM stop and SIGHUP reload
    this broker (only with `async with` / `astart()` on the main thread's loop).

    A bad config raises `midge.ConfigError` here, at construction.
    """

    def __init__(
        self,
        config: str | os.PathLike[str] | None = None,
        *,
        host: str | None = "127.0.0.1",
        port: int = 0,
        cafile: str | os.PathLike[str] | None = None,
        certfile: str | os.PathLike[str] | None = None,
        keyfile: str | os.PathLike[str] | None = None,
        require_certificate: bool = False,
        allow_anonymous: bool | None = None,
        password_file: str | os.PathLike[str] | None = None,
        acl_file: str | os.PathLike[str] | None = None,
        persistence: str | os.PathLike[str] | None = None,
        python_logging: bool = True,
        handle_signals: bool = False,
    ) -> None:
        self._source_name = "<midge.Broker keywords>"
        keywords = dict(host=host, port=port, cafile=cafile, certfile=certfile, keyfile=keyfile,
                        require_certificate=require_certificate, allow_anonymous=allow_anonymous,
                        password_file=password_file, acl_file=acl_file, persistence=persistence)
        defaults = dict(host="127.0.0.1", port=0, cafile=None, certfile=None, keyfile=None,
                        require_certificate=False, allow_anonymous=None, password_file=None,
                        acl_file=None, persistence=None)
        if config is not None:
            given = sorted(k for k, v in keywords.items() if v != defaults[k])
            if given:
                raise TypeError(f"midge.Broker: give either config or listener keywords, not both "
                                f"(got config and {', '.join(given)})")
            if isinstance(config, os.PathLike):
                self._source: tuple[str, str] = ("path", os.fspath(config))
            elif isinstance(config, str):
                self._source = ("text", config)
                self._source_name = "<midge.Broker config>"
            else:
                raise TypeError("midge.Broker: config is mosquitto.conf text (str) or a file "
                                f"(pathlib.Path), not {type(config).__name__}")
        else:
            self._source = ("text", _keyword_config(**keywords))
            self._source_name = "<midge.Broker keywords>"
        self._python_logging = python_logging
        self._handle_signals = handle_signals
        self._config = self._read_config(self._source)  # ConfigError now, not at start
        self._state = "new"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._thread: threading.Thread | None = None
        self._server: _EmbeddedServer | None = None
        self._client: _InProcessClient | None = None
        self._listeners: tuple[Listener, ...] = ()
        self._stop_requested: asyncio.Event | None = None
        self._closed_async: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        self._started = threading.Event()
        self._signal_watch: asyncio.Task | None = None
        #: Set once every listener accepts connections (`start()`/`astart()` returned).
        self.ready = threading.Event()
        #: Set once the broker stopped and everything is closed (or it failed to start).
        self.closed = threading.Event()

    # -- Configuration -----------------------------------------------------------------

    def _read_config(self, source: tuple[str, str]) -> Config:
        kind, value = source
        if kind == "path":
            return load_config(value, auto_ports=True)
        try:
            return load_config_string(value, name=self._source_name, auto_ports=True)
        except ConfigError as exc:
            if "\n" not in value.strip() and os.path.isfile(value.strip()):
                raise ConfigError(f"{exc} (a str is config text; pass pathlib.Path({value.strip()!r}) "
                                  "to read that file)") from exc
            raise

    # -- Async form: on the caller's event loop ------------------------------------------

    async def astart(self) -> None:
        """Start on the running event loop; returns once every listener accepts.
        BrokerError if it cannot start."""
        if self._state != "new":
            raise BrokerError(f"this Broker was already started (it is {self._state}); make a new one")
        self._state = "starting"
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._closed_async = asyncio.Event()
        config = self._config
        log: Log = LoggingLog(config) if self._python_logging else Log(config)
        server = None
        prebound: dict[int, list] = {}
        try:
            # `listener auto` is bound first: the security layer keys per-listener settings
            # by port, so the port must be known before the Server is made.
            for listener in config.listeners:
                if listener.auto_port:
                    prebound[id(listener)] = open_listener(listener, local_only=config.local_only)
            server = _EmbeddedServer(config, log, self._source_label(), prebound, self._reread)
            server.install_signal_handlers = self._handle_signals
            if not self._python_logging:
                log.defer_writes(self._loop.call_soon)
            await server.start()
        except BaseException as exc:
            for bound in prebound.values():
                for b in bound:
                    b.sock.close()
            if server is not None and server.broker is not None:
                try:
                    await server.shutdown()
                except Exception:
                    pass
            log.close()
            self._state = "failed"
            self.closed.set()
            self._closed_async.set()
            if isinstance(exc, (StartupError, ListenerError, ConfigError, OSError)):
                raise BrokerError(f"midge broker could not start: {exc}") from exc
            raise
        self._server = server
        self._listeners = tuple(_bound_listeners(server))
        self._state = "running"
        if self._handle_signals:
            self._signal_watch = self._loop.create_task(self._stop_on_signal())
        self.ready.set()

    async def astop(self) -> None:
        """Stop: close every connection and listener; returns once all is closed.
        Nothing happens if it is not running."""
        if self._state != "running":
            if self._state == "stopping" and self._closed_async is not None:
                await self._closed_async.wait()
            return
        self._state = "stopping"
        server = self._server
        assert server is not None and self._closed_async is not None
        if self._signal_watch is not None and self._signal_watch is not asyncio.current_task():
            self._signal_watch.cancel()
        if self._client is not None:
            self._client.stop()
        try:
            await server.shutdown()
        finally:
            server.log.defer_writes(None)
            self._state = "stopped"
            self.ready.clear()
            self.closed.set()
            self._closed_async.set()

    async def wait_closed(self) -> None:
        """Wait until the broker has stopped (stop() or astop() elsewhere, or a signal
        with handle_signals=True)."""
        if self._closed_async is None:
            raise BrokerError("the broker was never started")
        if self._loop is asyncio.get_running_loop():
            await self._closed_async.wait()
        else:
            await asyncio.get_running_loop().run_in_executor(None, self.closed.wait)

    async def _stop_on_signal(self) -> None:
        assert self._server is not None
        await self._server.run_until_stopped()
        await self.astop()

    async def __aenter__(self) -> Self:
        await self.astart()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.astop()

    # -- Sync form: its own event loop in a thread -------------------------------------

    def start(self, timeout: float | None = 30.0) -> Self:
        """Run the broker on its own event loop in a new thread; returns once every
        listener accepts. BrokerError if it cannot start."""
        if self._handle_signals:
            raise BrokerError("handle_signals=True needs the main thread's event loop: use "
                              "`async with midge.Broker(...)` or `await broker.astart()`")
        if self._state != "new":
            raise BrokerError(f"this Broker was already started (it is {self._state}); make a new one")
        self._thread = threading.Thread(target=self._run_thread, name="midge-broker", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise BrokerError(f"midge broker did not start within {timeout} s")
        if self._start_error is not None:
            self._thread.join()
            raise self._start_error
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop the broker and its thread; returns once everything is closed."""
        if self._thread is None:
            if self._state == "running" and self._loop is not None:
                # Started with astart(): stop on its loop, from another thread.
                if threading.get_ident() == self._loop_thread:
                    raise BrokerError("stop() would block the broker's own event loop: use `await broker.astop()`")
                asyncio.run_coroutine_threadsafe(self.astop(), self._loop).result(timeout)
            return
        if threading.get_ident() == self._loop_thread:
            raise BrokerError("stop() called from the broker's own thread (in a callback?); call it elsewhere")
        loop, requested = self._loop, self._stop_requested
        if loop is not None and requested is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(requested.set)
            except RuntimeError:
                pass  # the loop already finished
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise BrokerError(f"midge broker did not stop within {timeout} s")

    def _run_thread(self) -> None:
        factory = _loop_factory()
        loop = factory() if factory is not None else asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._thread_main())
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _thread_main(self) -> None:
        self._stop_requested = asyncio.Event()
        try:
            await self.astart()
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            return
        self._started.set()
        await self._stop_requested.wait()
        await self.astop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- What is running -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._state == "running"

    @property
    def listeners(self) -> tuple[Listener, ...]:
        """Every bound socket, in config order (IPv4 before IPv6 for one listener)."""
        return self._listeners

    @property
    def port(self) -> int:
        """The TCP port of the first listener (the one `port=0` picked)."""
        for listener in self._listeners:
            if listener.kind != "unix":
                return listener.port
        raise BrokerError("the broker is not running, or has no TCP listener")

    @property
    def host(self) -> str:
        """An address a client on this machine connects to for the first listener
        (127.0.0.1 or ::1 when it listens on every interface)."""
        for listener in self._listeners:
            if listener.kind != "unix":
                if listener.host in ("0.0.0.0", ""):
                    return "127.0.0.1"
                if listener.host == "::":
                    return "::1"
                return listener.host
        raise BrokerError("the broker is not running, or has no TCP listener")

    def __repr__(self) -> str:
        where = ", ".join(listener.url for listener in self._listeners)
        return f"<midge.Broker {self._state}{' ' + where if where else ''}>"

    # -- Reload --------------------------------------------------------------------------

    def reload(self, config: str | os.PathLike[str] | None = None) -> None:
        """Apply a new config (text or file; None: read the same source again) the way
        SIGHUP does: security files, TLS files, limits and logging change; listeners stay.
        Raises midge.ConfigError for a bad config (the running one is kept)."""
        if config is not None:
            if isinstance(config, os.PathLike):
                self._source = ("path", os.fspath(config))
            elif isinstance(config, str):
                self._source = ("text", config)
                self._source_name = "<midge.Broker config>"
            else:
                raise TypeError("reload(config): config text (str) or a file (pathlib.Path)")
        new = self._read_config(self._source)
        self._call(self._reload_now, new)

    def _reread(self) -> Config:
        return self._read_config(self._source)

    def _reload_now(self, config: Config) -> None:
        assert self._server is not None
        self._server.reload(config)

    def _source_label(self) -> str:
        kind, value = self._source
        return value if kind == "path" else self._source_name

    # -- Publishing and observing from Python ---------------------------------------------

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 0, retain: bool = False, *,
                content_type: str | None = None, response_topic: str | None = None,
                correlation_data: bytes | None = None,
                user_properties: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
                message_expiry_interval: int | None = None) -> None:
        """Publish into the broker as if a client had, without a network connection.
        Every matching subscriber has it queued when this returns."""
        if isinstance(payload, str):
            payload = payload.encode()
        if not valid_topic_name(topic):
            raise ValueError(f"invalid topic name {topic!r} (empty, a wildcard, a NUL or too long)")
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, not {qos!r}")
        properties: dict = {}
        if content_type is not None:
            properties[Property.CONTENT_TYPE] = content_type
        if response_topic is not None:
            properties[Property.RESPONSE_TOPIC] = response_topic
        if correlation_data is not None:
            properties[Property.CORRELATION_DATA] = bytes(correlation_data)
        if user_properties:
            properties[Property.USER_PROPERTY] = [(str(k), str(v)) for k, v in user_properties]
        if message_expiry_interval is not None:
            properties[Property.MESSAGE_EXPIRY_INTERVAL] = int(message_expiry_interval)
        self._call(self._publish_now, topic, bytes(payload), qos, bool(retain), properties)

    def _publish_now(self, topic, payload, qos, retain, properties) -> None:
        self._in_process().publish(topic, payload, qos, retain, properties)

    def subscribe(self, topic_filter: str, callback: Callable[[Message], object]) -> Subscription:
        """Call `callback(message)` for every message matching `topic_filter`, on the
        broker's event loop (its thread in the sync form) right after the broker routed
        it: keep it short; it may publish. Retained messages come first, as for any new
        subscription."""
        _check_filter(topic_filter)
        subscription = Subscription(self, topic_filter, callback)
        self._call(self._observe_now, subscription)
        return subscription

    def messages(self, topic_filter: str) -> Messages:
        """The messages matching `topic_filter` from now on, to iterate over (sync or
        async) or `get()`; subscribed when this returns. Use it as a context manager."""
        _check_filter(topic_filter)
        messages = Messages(self, topic_filter)
        self._call(self._observe_now, messages)
        return messages

    def _observe_now(self, observer) -> None:
        self._in_process().observe(observer)
        observer.active = True

    def _unobserve(self, observer) -> None:
        if self._state != "running":
            observer._end()
            return
        self._call(self._unobserve_now, observer)

    def _unobserve_now(self, observer) -> None:
        if self._client is not None:
            self._client.unobserve(observer)
        observer._end()

    def _in_process(self) -> "_InProcessClient":
        client = self._client
        assert self._server is not None
        if client is None or client.closed:
            # First use, or the broker closed the session (a packet over a limit, ...):
            # a new session takes over the observers of the old one.
            self._client = _InProcessClient(self._server)
            if client is not None:
                for _identifier, observers in list(client.filters.values()):
                    for observer in observers:
                        self._client.observe(observer)
        return self._client  # type: ignore[return-value]  # set just above

    def _call(self, function, *args):
        """Run `function(*args)` on the broker's loop and return its result; at once when
        already there, else through call_soon_threadsafe (waiting for it)."""
        if self._state != "running":
            raise BrokerError(f"the broker is not running (it is {self._state})")
        if threading.get_ident() == self._loop_thread:
            return function(*args)
        done: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(function(*args))
            except BaseException as exc:
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result()


class _EmbeddedServer(Server):
    """The broker process's Server, minus what belongs to a process: signals (unless
    asked), and with `listener auto` sockets bound beforehand and reload from the
    Broker's own config source."""

    install_signal_handlers = False

    def __init__(self, config, log, source_label: str, prebound: dict[int, list], reread):
        super().__init__(config, log, config_path=source_label)
        self.prebound = prebound
        self.reread = reread

    def open_sockets(self, state):
        bound = self.prebound.pop(id(state.listener), None)
        return bound if bound is not None else super().open_sockets(state)

    def reload(self, config=None) -> None:
        if config is None:  # SIGHUP with handle_signals=True
            try:
                config = self.reread()
            except (ConfigError, OSError) as exc:
                self.log.error(f"Reload failed, keeping the running configuration: {exc}")
                return
        # `listener auto` keeps the port it got: the nth auto listener takes the nth port.
        running: list[ListenerConfig] = [s.listener for s in self.listeners]  # type: ignore[misc]
        ports = iter([listener.port for listener in running if listener.auto_port])
        for listener in config.listeners:
            if listener.auto_port:
                listener.port = next(ports, 0)
        super().reload(config)


def _bound_listeners(server: Server) -> Iterator[Listener]:
    for state in server.listeners:
        listener: ListenerConfig = state.listener  # type: ignore[assignment]
        tls = state.tls is not None
        kind = ("wss" if tls else "ws") if state.websockets else ("mqtts" if tls else "mqtt")
        for srv in state.servers:
            for sock in srv.sockets:
                if sock.family == socket.AF_UNIX:
                    yield Listener(str(listener.path), 0, "unix")
                else:
                    address = sock.getsockname()
                    yield Listener(address[0], address[1], kind)


def _check_filter(topic_filter: str) -> None:
    if not valid_topic_filter(topic_filter):
        raise ValueError(f"invalid topic filter {topic_filter!r}")


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _keyword_config(*, host, port, cafile, certfile, keyfile, require_certificate, allow_anonymous,
                    password_file, acl_file, persistence) -> str:
    """The mosquitto.conf text of the keyword form."""
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be 0 (a free port) to 65535, not {port!r}")
    if allow_anonymous is None:
        allow_anonymous = _is_loopback(host) and password_file is None
    lines = [f"listener {port or 'auto'}{' ' + host if host else ''}",
             f"allow_anonymous {'true' if allow_anonymous else 'false'}"]
    for option, value in (("cafile", cafile), ("certfile", certfile), ("keyfile", keyfile),
                          ("password_file", password_file), ("acl_file", acl_file)):
        if value is not None:
            lines.append(f"{option} {_path_value(option, value)}")
    if require_certificate:
        lines.append("require_certificate true")
    if persistence is not None:
        lines += ["persistence true", f"persistence_location {_path_value('persistence', persistence)}"]
    return "\n".join(lines) + "\n"


def _path_value(option: str, value) -> str:
    text = os.fspath(value)
    if "\n" in text or "\r" in text or text != text.strip():
        raise ValueError(f"{option}: a path with a line break or surrounding spaces cannot be "
                         f"written to mosquitto.conf: {text!r}")
    return str(Path(text).absolute())


# -- The in-process client --------------------------------------------------------------

# Security trusts a broker client whose `bridge` is set (the local side of midge's own
# bridges): no authentication, no ACL. The in-process client is midge's own in the same way.
_TRUSTED = object()
_FIRST_SUBSCRIPTION_ID = 1


class _InProcessClient:
    """One MQTT 5 session of the broker that Python code drives: the `io` of a broker
    Client, fed encoded packets; `flush()` (called by the server's drain) decodes what the
    broker sent it and hands PUBLISHes to observers by subscription identifier."""

    def __init__(self, server: Server):
        assert server.loop is not None and server.broker is not None  # a started server
        self.server = server
        self.loop: asyncio.AbstractEventLoop = server.loop
        self.decoder = Decoder(version=5, role="client")
        self.packet_ids = itertools.cycle(range(1, 65536))
        self.subscription_ids = itertools.count(_FIRST_SUBSCRIPTION_ID)
        self.filters: dict[str, tuple[int, set]] = {}   # topic filter -> (subscription id, observers)
        self.by_id: dict[int, set] = {}                 # subscription id -> observers
        self.refused: dict[int, int] = {}               # SUBACK packet id -> failure code
        self.ping_timer: asyncio.TimerHandle | None = None
        self.closed = False
        now = self.loop.time()
        # No listener: the broker's internal one, as for a bridge's local end.
        self.client = server.broker.new_client(None, "python", None, self, now)
        self.client.bridge = _TRUSTED
        client_id = f"midge-python-{secrets.token_hex(4)}"
        self._send(Connect(5, client_id, True, 0, None, None, None, {}))

    def _send(self, packet) -> None:
        if self.closed:
            raise BrokerError("the broker is stopping")
        self.client.receive_data(encode(packet, 5), self.loop.time())
        self.server.drain()

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool, properties: dict) -> None:
        packet_id = next(self.packet_ids) if qos else None
        self._send(Publish(topic, payload, qos, retain, False, packet_id, properties))
        if self.closed:
            raise BrokerError(f"the broker refused the message on {topic!r} and closed the in-process "
                              "session (over max_packet_size?); see the broker's log")

    def observe(self, observer) -> None:
        topic_filter = observer.topic_filter
        entry = self.filters.get(topic_filter)
        if entry is not None:
            entry[1].add(observer)
            return
        identifier = next(self.subscription_ids)
        observers = {observer}
        self.filters[topic_filter] = (identifier, observers)
        self.by_id[identifier] = observers
        packet_id = next(self.packet_ids)
        self._send(Subscribe(packet_id, [SubscriptionRequest(topic_filter, 2, retain_as_published=True)],
                             {Property.SUBSCRIPTION_IDENTIFIER: identifier}))
        failure = self.refused.pop(packet_id, None)
        if failure is not None:
            del self.filters[topic_filter]
            del self.by_id[identifier]
            raise ValueError(f"the broker refused the subscription {topic_filter!r} "
                             f"(reason code {failure:#x})")

    def unobserve(self, observer) -> None:
        entry = self.filters.get(observer.topic_filter)
        if entry is None or observer not in entry[1]:
            return
        identifier, observers = entry
        observers.discard(observer)
        if not observers:
            del self.filters[observer.topic_filter]
            del self.by_id[identifier]
            if not self.closed:
                self._send(Unsubscribe(next(self.packet_ids), [observer.topic_filter]))

    def stop(self) -> None:
        """The broker is stopping: end every observer (their iterators finish)."""
        self.closed = True
        if self.ping_timer is not None:
            self.ping_timer.cancel()
            self.ping_timer = None
        for _identifier, observers in list(self.filters.values()):
            for observer in list(observers):
                observer._end()
        self.filters.clear()
        self.by_id.clear()

    # -- Called by Server.drain ------------------------------------------------------------

    def flush(self) -> None:
        client = self.client
        output = client.output
        data = b"".join(output) if output else b""
        output.clear()
        replies: list = []
        for packet in self.decoder.feed(data) if data else ():
            kind = packet.type
            if kind == PacketType.PUBLISH:
                self._deliver(packet)
                if packet.qos == 1:
                    replies.append(Puback(packet.packet_id))
                elif packet.qos == 2:
                    replies.append(Pubrec(packet.packet_id))
            elif kind == PacketType.PUBREL:
                replies.append(Pubcomp(packet.packet_id))
            elif kind == PacketType.PUBREC:  # our QoS 2 publish arrived
                replies.append(Pubrel(packet.packet_id))
            elif kind == PacketType.SUBACK:
                failed = [code for code in packet.reason_codes if code >= 0x80]
                if failed:
                    self.refused[packet.packet_id] = failed[0]
            elif kind == PacketType.CONNACK:
                keepalive = packet.properties.get(Property.SERVER_KEEP_ALIVE)
                if keepalive:  # max_keepalive forced one on us: keep the session alive
                    self._ping_every(keepalive / 2)
        if client.closing:
            self.closed = True
            return
        if replies:
            # Not from inside drain(): answer once this drain is over.
            self.loop.call_soon(self._reply, replies)

    def _reply(self, packets) -> None:
        if self.closed:
            return
        data = b"".join(encode(packet, 5) for packet in packets)
        self.client.receive_data(data, self.loop.time())
        self.server.drain()

    def _deliver(self, packet) -> None:
        props = packet.properties
        ids = props.get(Property.SUBSCRIPTION_IDENTIFIER) or ()
        if not ids:
            return
        message = Message(
            packet.topic, bytes(packet.payload), packet.qos, packet.retain,
            content_type=props.get(Property.CONTENT_TYPE),
            response_topic=props.get(Property.RESPONSE_TOPIC),
            correlation_data=props.get(Property.CORRELATION_DATA),
            user_properties=tuple(tuple(p) for p in props.get(Property.USER_PROPERTY, ())),
            message_expiry_interval=props.get(Property.MESSAGE_EXPIRY_INTERVAL),
        )
        for identifier in ids:
            for observer in list(self.by_id.get(identifier, ())):
                observer._deliver(message)

    def _ping_every(self, interval: float) -> None:
        def ping() -> None:
            if self.closed:
                return
            self._reply([Pingreq()])
            self.ping_timer = self.loop.call_later(interval, ping)

        self.ping_timer = self.loop.call_later(interval, ping)
