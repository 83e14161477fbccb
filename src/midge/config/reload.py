"""What SIGHUP may change: the option table's `reload` column, applied.

On SIGHUP the server reads the config anew, then `carry_over(running, new)` puts the
running value back into `new` for every option whose `reload` is `RELOAD_NO`, and says
which of them were changed in the file. So `Option.reload` is not documentation beside
the code: it is what a reload does (`tests/config/test_reload_table.py` checks it end to
end), and `docs/configuration.md`'s reload column, generated from the same table,
cannot drift from it.

Scopes: global options; each listener matched by its key (port, address, Unix path) and
the security options that apply to it; bridges, which a reload leaves as they are
(a changed bridge needs a restart, as in Mosquitto). A listener that was added, removed
or moved is the server's business (it cannot rebind); so is turning TLS on or off for a
listener, which keeps the running listener's options.
"""

from __future__ import annotations

from midge.config import options as opts
from midge.config.model import Config, ListenerConfig, SecurityConfig

# Options a reload cannot apply: RELOAD_NO in the table, by scope (specials have their
# own attributes: `listener`/`port` are the listener's key, handled by matching).
_FIXED = {scope: tuple(opt for opt in opts.OPTIONS if opt.scope == scope and opt.reload == opts.RELOAD_NO
                       and opt.kind != opts.SPECIAL)
          for scope in (opts.GLOBAL, opts.LISTENER, opts.SECURITY)}


def carry_over(running: Config, new: Config) -> list[str]:
    """Keep the running value of every option SIGHUP cannot change; return one line per
    such option that the new config changed ("file:line: option: ..."), for the log."""
    changed: list[str] = []
    _keep(running, new, _FIXED[opts.GLOBAL], changed)
    _keep(running.security, new.security, _FIXED[opts.SECURITY], changed)
    by_key = {listener.key: listener for listener in running.listeners}
    for index, listener in enumerate(new.listeners):
        old = by_key.get(listener.key)
        if old is None:
            continue
        if old.tls_enabled != listener.tls_enabled:
            changed.append(f"{_where(listener, 'listener')}listener {listener.name}: TLS turned "
                           f"{'on' if listener.tls_enabled else 'off'}; takes effect after a restart")
            security = listener.security
            new.listeners[index] = old
            if not new.per_listener_settings:
                old.security = security   # the global security object of the new config
            continue
        _keep(old, listener, _FIXED[opts.LISTENER], changed)
        if new.per_listener_settings and listener.security is not new.security:
            _keep(old.security, listener.security, _FIXED[opts.SECURITY], changed)
    if _bridges_differ(running, new):
        changed.append("bridges (connection ... lines) changed; bridges are restarted only "
                       "by a restart")
    new.bridges = running.bridges
    return changed


def _keep(old: Config | ListenerConfig | SecurityConfig, new: Config | ListenerConfig | SecurityConfig,
          fixed: tuple[opts.Option, ...], changed: list[str]) -> None:
    for opt in fixed:
        before, after = getattr(old, opt.attr), getattr(new, opt.attr)   # (option table names)
        if before != after:
            changed.append(f"{_where(new, opt.name)}{opt.name}: changed from {before!r} to "
                           f"{after!r}; takes effect after a restart")
            setattr(new, opt.attr, before)


def _where(scoped: Config | ListenerConfig | SecurityConfig, option: str) -> str:
    where = scoped.origins.get(option)
    return f"{where[0]}:{where[1]}: " if where else ""


def _bridges_differ(running: Config, new: Config) -> bool:
    return [repr(b) + repr(b.topic) + repr(b.address) for b in running.bridges] != \
           [repr(b) + repr(b.topic) + repr(b.address) for b in new.bridges]


__all__ = ["carry_over"]
