"""midge plugins: Python modules named by `plugin` / `auth_plugin` in mosquitto.conf.

`plugin mypkg.auth` imports the module `mypkg.auth`; `plugin /etc/midge/auth.py`
loads that file. A C plugin (`.so`) cannot be loaded and stops the broker at start
with a message saying so. The `plugin_opt_*` / `auth_opt_*` options that follow the
`plugin` line reach the plugin as a dict (`{"db_host": "..."}` for `plugin_opt_db_host`).

A plugin module may define `plugin_init(options) -> object | None`. When it returns
an object, the hooks are that object's methods; otherwise they are the module's
functions. Every hook is optional:

- `basic_auth(client, username, password) -> True | False | int | None`
- `acl_check(client, topic, access) -> True | False | None`  (synchronous only)
- `psk_key(listener, identity) -> bytes | str (hex) | None`  (synchronous only)
- `on_connect(client)`, `on_disconnect(client)`,
  `on_message(client, topic, payload, qos, retain)`: notifications, result ignored.
- `plugin_cleanup()`: called at shutdown.

None means "no opinion" (the next plugin decides). `basic_auth` and the notifications
may be `async def`; see docs/security.md for how the server awaits them. A hook that
raises is logged and counts as a denial, never as an allow.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys

HOOKS = ("basic_auth", "acl_check", "psk_key", "on_connect", "on_disconnect", "on_message")
NATIVE_SUFFIXES = (".so", ".dylib", ".dll")


class PluginError(Exception):
    """A plugin cannot be loaded (message names the plugin and why)."""


class Plugin:
    """A loaded plugin: its hooks by name and the options it was given."""

    __slots__ = ("path", "options", "hooks", "target", "name")

    def __init__(self, path: str, options: dict[str, str], target: object):
        self.path = path
        self.options = options
        self.target = target
        self.name = os.path.basename(path) if path.endswith(".py") else path
        self.hooks = {name: getattr(target, name) for name in HOOKS if callable(getattr(target, name, None))}

    def hook(self, name: str):
        return self.hooks.get(name)

    def cleanup(self) -> None:
        cleanup = getattr(self.target, "plugin_cleanup", None)
        if callable(cleanup):
            cleanup()


def _import(path: str):
    if path.endswith(NATIVE_SUFFIXES):
        raise PluginError(
            f"plugin {path}: this is a C plugin (shared library) for mosquitto; midge loads "
            "Python plugins only (a module name such as `mypkg.auth` or a .py file, see docs/security.md)")
    if path.endswith(".py"):
        if not os.path.isfile(path):
            raise PluginError(f"plugin {path}: file not found")
        name = "midge_plugin_" + hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise PluginError(f"plugin {path}: cannot be loaded as a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise PluginError(f"plugin {path}: error while loading: {exc!r}") from exc
        return module
    if not all(part.isidentifier() for part in path.split(".")):
        raise PluginError(f"plugin {path}: not a Python module name nor a .py file")
    try:
        return importlib.import_module(path)
    except ImportError as exc:
        raise PluginError(f"plugin {path}: cannot import module: {exc}") from exc
    except Exception as exc:
        raise PluginError(f"plugin {path}: error while importing: {exc!r}") from exc


def load_plugin(path: str, options: dict[str, str] | None = None) -> Plugin:
    """Import a plugin and run its `plugin_init(options)`; PluginError on failure."""
    options = dict(options or {})
    module = _import(path)
    target = module
    init = getattr(module, "plugin_init", None)
    if callable(init):
        try:
            result = init(options)
        except Exception as exc:
            raise PluginError(f"plugin {path}: plugin_init failed: {exc!r}") from exc
        if inspect.isawaitable(result):
            _discard(result)
            raise PluginError(f"plugin {path}: plugin_init must not be async")
        if result is not None:
            target = result
    plugin = Plugin(path, options, target)
    for name in ("acl_check", "psk_key"):
        hook = plugin.hook(name)
        if hook is not None and inspect.iscoroutinefunction(hook):
            raise PluginError(f"plugin {path}: {name} must be synchronous (it runs for every "
                              "delivery / inside the TLS handshake)")
    return plugin


def _discard(awaitable) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()
