"""`Security`: the broker's one entry point for authentication and authorization.

It holds, for the global security settings and (with `per_listener_settings true`)
for each listener, the loaded password file, ACL file, PSK file and plugins, and
answers the broker's questions with Mosquitto 2.0's rules (reference section 5):

- `authenticate(client, username, password) -> int`: 0, or a v5 reason code
  (0x87 Not authorized, as Mosquitto sends for a failed login; the broker maps it to
  v3 code 5), or a `PendingAuth` when an async plugin hook must be awaited first.
- `acl_check(client, topic, access) -> bool` for READ / WRITE / SUBSCRIBE.
- `psk_key(listener, identity) -> bytes | None`.
- `reload(config)`, `still_allowed(client)`, `login_delay` / `record_failure`.

On a listener that takes usernames from TLS (`use_identity_as_username`,
`use_subject_as_username`, midge's `cert_identity_as_username`), the TLS identity
replaces the password check as in Mosquitto: `authenticate` answers 0 when
`identity.username_from_tls(listener, client.tls)` gives a username, else 0x86 (CONNACK
4 for v3); the broker sets `client.username` from that identity; ACLs apply to it.
"""

from __future__ import annotations

import hmac
import inspect
import itertools
import os
from dataclasses import dataclass, field

from midge.config.errors import ConfigError
from midge.config.model import SecurityConfig, uses_tls_username
from midge.protocol.topics import levels_match
from midge.security.acl import (READ, SUBSCRIBE, UNSUBSCRIBE, WRITE, AclFile, AclFileError, CompiledAcl,
                                compile_for, load_acl_file)
from midge.security.passwords import PasswordFileError, PasswordHash, load_password_file
from midge.security.plugins import Plugin, PluginError, load_plugin
from midge.security.psk import PskFileError, hex_to_key, load_psk_file
from midge.security.throttle import LoginThrottle, peer_host

SUCCESS = 0
BAD_USERNAME_OR_PASSWORD = 0x86
NOT_AUTHORIZED = 0x87

ACL_RESULT_CACHE_SIZE = 512
_generations = itertools.count(1)  # unique across Security objects, so no cache is mistaken
_SYS_STATE_FILTER = ("$SYS", "broker", "connection", "+", "state")


class SecurityError(ConfigError):
    """A password/ACL/PSK file or a plugin cannot be loaded; the message says which.

    A ConfigError, so `midge broker` prints it without a traceback and exits 3.
    `exit_code` is what Mosquitto uses: 13 when a file cannot be opened, else 3.
    """

    def __init__(self, message: str, exit_code: int = 3):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(slots=True)
class SecurityContext:
    """Everything loaded for one SecurityConfig (global, or one listener's)."""

    settings: SecurityConfig
    passwords: dict[str, PasswordHash] | None = None
    acl: AclFile | None = None
    psk: dict[str, bytes] | None = None
    plugins: list[Plugin] = field(default_factory=list)
    auth_plugins: list[Plugin] = field(default_factory=list)  # those with a basic_auth hook
    acl_plugins: list[Plugin] = field(default_factory=list)  # those with an acl_check hook

    @property
    def allow_anonymous(self) -> bool:
        return bool(self.settings.allow_anonymous)   # (None until the parser resolves it)



class ClientSecurity:
    """Per-client state kept on `client.acl_cache`: compiled ACL and recent results.

    Valid while the Security generation (bumped by reload), the client ID and the
    username are the ones it was built for.
    """

    __slots__ = ("generation", "client_id", "username", "compiled", "results", "password_line")

    def __init__(self, generation: int, client_id, username, compiled: CompiledAcl | None):
        self.generation = generation
        self.client_id = client_id
        self.username = username
        self.compiled = compiled
        self.results: dict[tuple[str, int], bool] = {}
        self.password_line: str | None = None


class PendingAuth:
    """An authentication decision that waits for an async `basic_auth` plugin hook.

    The broker registers `on_done(callback)`; the server awaits `run()` (Security
    hands it to `security.spawn`); when it completes, each callback gets the reason
    code (0 = allowed). An exception in the hook gives NOT_AUTHORIZED.
    """

    __slots__ = ("_awaitable", "_finish", "_callbacks", "result")

    def __init__(self, awaitable, finish):
        self._awaitable = awaitable
        self._finish = finish  # maps the hook's result (or exception) to a reason code
        self._callbacks: list = []
        self.result: int | None = None

    def on_done(self, callback) -> None:
        if self.result is not None:
            callback(self.result)
        else:
            self._callbacks.append(callback)

    async def run(self) -> int:
        try:
            outcome = await self._awaitable
        except Exception as exc:
            self.result = self._finish(None, exc)
        else:
            self.result = self._finish(outcome, None)
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self.result)
        return self.result


def _plugin_specs(settings: SecurityConfig) -> list[tuple[str, dict]]:
    return [(plugin.path, dict(plugin.options)) for plugin in settings.plugins]


class Security:
    """Authentication, ACLs and PSK keys for the whole broker."""

    def __init__(self, config, log):
        self.log = log
        self.spawn = None  # set by the server: spawn(coroutine) runs it on the event loop
        # Set by the server (server/auth_pool.py): hash_offload(address, entry, password,
        # wanted) returns an awaitable of entry.verify(password) run off the event loop,
        # `wanted()` saying whether the answer is still needed. None: verify inline.
        self.hash_offload = None
        self.generation = next(_generations)
        self._plugin_cache: dict[tuple, Plugin] = {}
        self._verify_key = os.urandom(32)
        self._verified: dict[str, tuple[str, bytes]] = {}  # username -> (hash line, HMAC of password)
        self._global, self._by_listener, self._per_listener = self._load(config)
        self.acl_open = self._no_acl_anywhere()
        self.throttle = LoginThrottle(*_throttle_settings(config), log=log)

    # -- Loading ---------------------------------------------------------------------

    def _load(self, config):
        """Build the contexts for `config`; SecurityError if anything cannot load."""
        per_listener = config.per_listener_settings
        global_settings = config.security
        loaded: dict[int, SecurityContext] = {}
        global_context = self._context(global_settings, loaded)
        by_listener: dict[tuple, SecurityContext] = {}
        if per_listener:
            for listener in config.listeners:
                settings = listener.security
                by_listener[listener.key] = self._context(settings, loaded)
        return global_context, by_listener, per_listener

    def _context(self, settings: SecurityConfig, loaded: dict[int, SecurityContext]) -> SecurityContext:
        if id(settings) in loaded:
            return loaded[id(settings)]
        context = SecurityContext(settings)
        try:
            password_file = settings.password_file
            if password_file:
                context.passwords = load_password_file(password_file, self.log)
            acl_file = settings.acl_file
            if acl_file:
                context.acl = load_acl_file(acl_file, self.log)
            psk_file = settings.psk_file
            if psk_file:
                context.psk = load_psk_file(psk_file)
            for path, options in _plugin_specs(settings):
                key = (path, tuple(sorted(options.items())))
                plugin = self._plugin_cache.get(key)
                if plugin is None:
                    plugin = self._plugin_cache[key] = load_plugin(path, options)
                context.plugins.append(plugin)
                if plugin.hook("basic_auth") is not None:
                    context.auth_plugins.append(plugin)
                if plugin.hook("acl_check") is not None:
                    context.acl_plugins.append(plugin)
        except (PasswordFileError, AclFileError, PskFileError, PluginError) as exc:
            cannot_open = isinstance(exc.__cause__, OSError)
            raise SecurityError(str(exc), 13 if cannot_open else 3) from exc
        loaded[id(settings)] = context
        return context

    def reload(self, config) -> None:
        """Re-read the files (SIGHUP). On any error keep everything as it was and raise
        SecurityError, whose message names the file (and line); the server logs it."""
        contexts = self._load(config)
        self._global, self._by_listener, self._per_listener = contexts
        self.acl_open = self._no_acl_anywhere()
        self.generation = next(_generations)  # invalidates every client's cached ACL
        self._verified.clear()
        self.throttle.configure(*_throttle_settings(config))

    def _no_acl_anywhere(self) -> bool:
        """True when no listener has an acl_file or an acl_check plugin.

        The broker reads it (`acl_open`) to skip `acl_check` where its answer is then
        known: READ is allowed to every client with an ID, and so is WRITE to a topic
        not starting with `$` (bench profile: acl_check was 4 % of QoS 0, 14 % of fan-out).
        """
        contexts = [self._global, *self._by_listener.values()]
        return all(context.acl is None and not context.acl_plugins for context in contexts)

    def shutdown(self) -> None:
        for plugin in self._plugin_cache.values():
            try:
                plugin.cleanup()
            except Exception as exc:
                self.log.error(f"Plugin {plugin.name}: plugin_cleanup failed: {exc!r}")

    def context_for_listener(self, listener) -> SecurityContext:
        if not self._per_listener or listener is None:
            return self._global
        return self._by_listener.get(listener.key, self._global)

    # -- Authentication --------------------------------------------------------------

    def authenticate(self, client, username: str | None, password: bytes | None):
        """0 when the client may connect, else a v5 reason code (or a PendingAuth)."""
        if client.bridge:
            # The local side of a bridge midge itself runs (bridge/link.py sets
            # `client.bridge`; no remote peer can). Mosquitto never authenticates it either.
            return SUCCESS
        listener = client.listener
        if uses_tls_username(listener):
            # Mosquitto: the TLS identity replaces the password check entirely.
            return SUCCESS if _tls_username(client) is not None else BAD_USERNAME_OR_PASSWORD
        context = self.context_for_listener(listener)
        if not username:
            username = None  # a zero-length username is anonymous
        if password is not None:
            password = password.split(b"\0", 1)[0] or None  # C string; empty = no password
        if username is None:
            # Plugins may refuse an anonymous client; allow_anonymous decides the rest.
            verdict = self._plugins_auth(context, client, username, password, anonymous=True)
            if verdict is not None:
                return verdict
            return SUCCESS if context.allow_anonymous else NOT_AUTHORIZED
        if context.passwords is not None:
            return self._password_check(context, client, username, password)
        if not context.auth_plugins:
            return SUCCESS if context.allow_anonymous else NOT_AUTHORIZED
        verdict = self._plugins_auth(context, client, username, password, anonymous=False)
        return NOT_AUTHORIZED if verdict is None else verdict

    def verify_password(self, listener, username: str, password: bytes, address: str = ""):
        """The metrics listener's HTTP basic auth: does the password_file that applies to
        `listener` have this user and password? False without a password_file.

        Answers a bool, or, when the check needs a full PBKDF2 run and the server has a
        hashing pool, an awaitable of the bool (hashed off the event loop, fairly by
        `address`, as MQTT logins are: a scraper guessing passwords must not stall the
        broker's clients)."""
        context = self.context_for_listener(listener)
        entry = context.passwords.get(username) if context.passwords is not None else None
        if entry is None or not password:
            return False
        if self._remembered(username, entry, password):
            return True
        if entry.kind == 7 and self.hash_offload is not None:
            return self._offloaded_verify(address, username, entry, password)
        return self._verify(username, entry, password)

    async def _offloaded_verify(self, address: str, username: str, entry: PasswordHash,
                                password: bytes) -> bool:
        if not await self.hash_offload(address, entry, password, lambda: True):
            return False
        self._remember(username, entry, password)
        return True

    def _password_check(self, context: SecurityContext, client, username: str, password: bytes | None):
        entry = context.passwords.get(username) if context.passwords is not None else None
        if entry is None or password is None:
            return NOT_AUTHORIZED
        if not self._remembered(username, entry, password) and entry.kind == 7 and self.hash_offload is not None:
            return self._offloaded_check(context, client, username, entry, password)
        if not self._verify(username, entry, password):
            return NOT_AUTHORIZED
        state = self._client_state(client, context)
        if state is not None:
            state.password_line = entry.line
        return SUCCESS

    def _offloaded_check(self, context, client, username: str, entry: PasswordHash, password: bytes):
        """A PBKDF2 check on the server's worker pool (issue 14: 100 parallel wrong logins
        hashed on the event loop stalled every client for 13 s): a PendingAuth, decided
        when the hash is done, exactly as an async plugin's answer."""
        def finish(outcome, exc):
            if exc is not None:
                self.log.error(f"Password check for {username} failed: {exc!r}; denying.")
                return NOT_AUTHORIZED
            if not outcome:
                return NOT_AUTHORIZED
            self._remember(username, entry, password)
            state = self._client_state(client, context)
            if state is not None:
                state.password_line = entry.line
            return SUCCESS

        address = peer_host(client.peer)
        awaitable = self.hash_offload(address, entry, password, lambda: not getattr(client, "closing", False))
        if self.spawn is None:
            _discard(awaitable)
            return NOT_AUTHORIZED
        pending = PendingAuth(awaitable, finish)
        self.spawn(pending.run())
        return pending

    def _remembered(self, username: str, entry: PasswordHash, password: bytes) -> bool:
        """This user logged in with this very password and hash line before (see _verify)."""
        remembered = self._verified.get(username)
        if remembered is None or remembered[0] != entry.line:
            return False
        return hmac.compare_digest(remembered[1], hmac.new(self._verify_key, password, "sha256").digest())

    def _remember(self, username: str, entry: PasswordHash, password: bytes) -> None:
        self._verified[username] = (entry.line, hmac.new(self._verify_key, password, "sha256").digest())

    def _verify(self, username: str, entry: PasswordHash, password: bytes) -> bool:
        """Check a password; a user's repeat logins skip the slow PBKDF2 run.

        A PBKDF2 check with 210000 iterations takes ~0.1 s of the event loop. After a
        success we keep HMAC-SHA256(process key, password) for that user's hash line,
        so the next login with the same password costs microseconds (reconnect storms).
        A changed hash line, or any other password, goes through the full check.
        Mosquitto keeps the plaintext password of every client in memory; this keeps
        less.
        """
        if self._remembered(username, entry, password):
            return True
        if not entry.verify(password):
            return False
        self._remember(username, entry, password)
        return True

    def _plugins_auth(self, context, client, username, password, anonymous: bool):
        """First plugin opinion as a reason code; None when every plugin deferred.

        For an anonymous client only a refusal counts: allow_anonymous alone decides to
        let it in (midge's rule; a plugin cannot open a broker that refuses anonymous
        clients).
        """
        for plugin in context.auth_plugins:
            hook = plugin.hook("basic_auth")
            try:
                outcome = hook(client, username, password)
            except Exception as exc:
                self._plugin_failed(plugin, "basic_auth", exc)
                return NOT_AUTHORIZED
            if inspect.isawaitable(outcome):
                return self._pending(plugin, outcome, context, anonymous)
            code = _auth_code(outcome)
            if code is None:
                continue
            if anonymous and code == SUCCESS:
                continue
            return code
        return None

    def _pending(self, plugin, awaitable, context, anonymous: bool):
        def finish(outcome, exc):
            if exc is not None:
                self._plugin_failed(plugin, "basic_auth", exc)
                return NOT_AUTHORIZED
            code = _auth_code(outcome)
            if code is None or (anonymous and code == SUCCESS):
                # Later plugins are not consulted after an async deferral; see docs.
                if anonymous:
                    return SUCCESS if context.allow_anonymous else NOT_AUTHORIZED
                return NOT_AUTHORIZED
            return code

        if self.spawn is None:
            _discard(awaitable)
            self.log.error(f"Plugin {plugin.name}: basic_auth is async but nothing can await it; denying.")
            return NOT_AUTHORIZED
        pending = PendingAuth(awaitable, finish)
        self.spawn(pending.run())
        return pending

    def _plugin_failed(self, plugin: Plugin, hook: str, exc: BaseException) -> None:
        self.log.error(f"Plugin {plugin.name}: {hook} raised {exc!r}; treating it as a denial.")

    def still_allowed(self, client) -> bool:
        """After a reload: may this connected client stay? (False -> DISCONNECT 0x98)

        Like Mosquitto: anonymous clients need allow_anonymous; with a password file a
        user must still be listed. midge keeps no passwords in memory, so a user whose
        hash line changed must reconnect with the (new) password.
        """
        if client.bridge:
            return True
        if uses_tls_username(client.listener):
            return _tls_username(client) is not None  # authenticated by its TLS identity
        context = self.context_for_listener(client.listener)
        username = client.username or None
        if username is None:
            return context.allow_anonymous
        if context.passwords is None:
            return context.allow_anonymous or bool(context.auth_plugins)
        entry = context.passwords.get(username)
        if entry is None:
            return False
        state = client.acl_cache
        previous = state.password_line if state is not None else None
        return previous is None or previous == entry.line

    # -- Authorization ---------------------------------------------------------------

    def _client_state(self, client, context: SecurityContext) -> ClientSecurity:
        client_id = client.client_id
        username = client.username or None
        state = client.acl_cache
        if (state.__class__ is ClientSecurity and state.generation == self.generation
                and state.client_id == client_id and state.username == username):
            return state
        compiled = compile_for(context.acl, client_id, username) if context.acl is not None else None
        fresh = ClientSecurity(self.generation, client_id, username, compiled)
        if state.__class__ is ClientSecurity:
            fresh.password_line = state.password_line
        client.acl_cache = fresh
        return fresh

    def acl_check(self, client, topic: str, access: int) -> bool:
        """May `client` READ (receive) / WRITE (publish) / SUBSCRIBE `topic`?"""
        # Hot path (every delivery): a cached answer for this client, topic and access.
        state = client.acl_cache
        if (state.__class__ is ClientSecurity and state.generation == self.generation
                and state.client_id == client.client_id and state.username == (client.username or None)):
            result = state.results.get((topic, access))
            if result is not None:
                return result
        return self._acl_decide(client, topic, access)

    def _acl_decide(self, client, topic: str, access: int) -> bool:
        if client.bridge:
            return True  # connections midge itself makes as a bridge are not checked
        if not client.client_id:
            return False
        context = self.context_for_listener(client.listener)
        if context.acl is None and context.acl_plugins:
            if topic.startswith("$") and not dollar_topic_allowed(topic, access):
                return False
            return self._plugins_acl(context, client, topic, access)  # not cached
        state = self._client_state(client, context)
        if topic.startswith("$") and not dollar_topic_allowed(topic, access):
            result = False
        elif context.acl is None or access & (SUBSCRIBE | UNSUBSCRIBE):
            result = True  # the file ACL grants subscriptions; READ is checked per message
        else:
            compiled = state.compiled
            result = compiled.check(topic, access) if compiled is not None else False
        if len(state.results) >= ACL_RESULT_CACHE_SIZE:
            state.results.clear()
        state.results[(topic, access)] = result
        return result

    def _plugins_acl(self, context, client, topic: str, access: int) -> bool:
        """Plugins decide when there is no acl_file; their answers are not cached."""
        for plugin in context.acl_plugins:
            hook = plugin.hook("acl_check")
            try:
                outcome = hook(client, topic, access)
            except Exception as exc:
                self._plugin_failed(plugin, "acl_check", exc)
                return False
            if inspect.isawaitable(outcome):
                _discard(outcome)
                self.log.error(f"Plugin {plugin.name}: acl_check returned an awaitable; "
                               "it must be synchronous. Denying.")
                return False
            if outcome is None:
                continue
            return bool(outcome)
        return False  # plugins loaded and none allowed: deny

    # -- TLS-PSK ---------------------------------------------------------------------

    def psk_key(self, listener, identity: str) -> bytes | None:
        """The key for a PSK identity: the psk_file first, then plugins."""
        context = self.context_for_listener(listener)
        if context.psk is not None:
            key = context.psk.get(identity)
            if key is not None:
                return key
        for plugin in context.plugins:
            hook = plugin.hook("psk_key")
            if hook is None:
                continue
            try:
                key = hook(listener, identity)
                if key is None:
                    continue
                if isinstance(key, str):
                    key = hex_to_key(key)
                if inspect.isawaitable(key) or not isinstance(key, (bytes, bytearray)):
                    raise TypeError(f"psk_key returned {type(key).__name__}, expected bytes or hex str")
                return bytes(key)
            except Exception as exc:
                self._plugin_failed(plugin, "psk_key", exc)
                return None
        return None

    # -- Notifications to plugins ----------------------------------------------------

    @property
    def has_plugins(self) -> bool:
        """Whether any plugin is loaded: the broker skips notify() calls when not."""
        return bool(self._plugin_cache)

    def notify(self, event: str, client, *args) -> None:
        """Tell plugins about on_connect / on_disconnect / on_message; never raises."""
        context = self.context_for_listener(client.listener)
        for plugin in context.plugins:
            hook = plugin.hook(event)
            if hook is None:
                continue
            try:
                outcome = hook(client, *args)
            except Exception as exc:
                self.log.error(f"Plugin {plugin.name}: {event} raised {exc!r}.")
                continue
            if inspect.isawaitable(outcome):
                if self.spawn is None:
                    _discard(outcome)
                else:
                    self.spawn(self._guard(plugin, event, outcome))

    async def _guard(self, plugin, event, awaitable):
        try:
            await awaitable
        except Exception as exc:
            self.log.error(f"Plugin {plugin.name}: {event} raised {exc!r}.")

    # -- Brute force -----------------------------------------------------------------

    @property
    def throttling(self) -> bool:
        """Whether any address has recent failed logins; while none has, a CONNECT skips
        `login_delay` and `record_success` (and working out its address for them)."""
        return bool(self.throttle)

    def login_delay(self, peer_ip: str, now: float) -> float:
        return self.throttle.login_delay(peer_ip, now)

    def record_failure(self, peer_ip: str, now: float) -> None:
        self.throttle.record_failure(peer_ip, now)

    def record_success(self, peer_ip: str) -> None:
        self.throttle.record_success(peer_ip)


def _throttle_settings(config) -> tuple[float, float]:
    return config.auth_fail_delay, config.auth_fail_delay_max


def _tls_username(client) -> str | None:
    from midge.security.identity import username_from_tls

    return username_from_tls(client.listener, client.tls)


def _auth_code(outcome) -> int | None:
    """A basic_auth hook's answer as a reason code; None = no opinion."""
    if outcome is None:
        return None
    if outcome is True:
        return SUCCESS
    if outcome is False:
        return NOT_AUTHORIZED
    if isinstance(outcome, int) and 0 <= outcome <= 0xFF:
        return outcome
    return NOT_AUTHORIZED


def dollar_topic_allowed(topic: str, access: int) -> bool:
    """Mosquitto's built-in rules for `$` topics (`acl__check_dollar`), their one home:
    nothing in `$SYS` is writable but a bridge's `$SYS/broker/connection/NAME/state`,
    and `$share/...` is never a topic to publish to."""
    if topic.startswith("$SYS"):
        if access == WRITE:
            return levels_match(_SYS_STATE_FILTER, topic.split("/"))
        return True
    if topic.startswith("$share"):
        return access != WRITE
    return True


def _discard(awaitable) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


__all__ = ["Security", "SecurityError", "PendingAuth", "dollar_topic_allowed", "READ", "WRITE", "SUBSCRIBE", "UNSUBSCRIBE",
           "SUCCESS", "NOT_AUTHORIZED", "BAD_USERNAME_OR_PASSWORD"]
