"""SIGHUP applies exactly what the option table's `reload` column says.

`config.reload.carry_over` keeps the running value of every RELOAD_NO option; the
server calls it on every reload. Each option of the table is changed here one at a time
(sans-I/O), and once end to end against a running midge.
"""

from __future__ import annotations

import signal

import pytest

from midge.config import load_config_string
from midge.config import options as opts
from midge.config.reload import carry_over
from tests.brokerproc import free_port, start_midge
from tests.clients import mosquitto_pub

# Values a config can hold for options whose kind alone does not give one.
_VALUES = {
    "clientid_prefixes": "ok-", "mount_point": "tenant/", "auto_id_prefix": "gen-",
    "ocsp_responder": "http://127.0.0.1:9/", "ciphers": "HIGH", "ciphers_tls1.3": "TLS_AES_128_GCM_SHA256",
    "psk_hint": "hint", "log_timestamp_format": "%H:%M:%S", "user": "nobody",
    "bind_interface": "lo", "socket_domain": "ipv4",
}
# A listener on which every listener option is allowed: TLS with a certificate.
_BASE = {"certfile": "{d}/server.pem", "keyfile": "{d}/server.key"}


def _value(opt: opts.Option, directory) -> str:
    if opt.name in _VALUES:
        return _VALUES[opt.name]
    if opt.kind == opts.BOOL:
        return "false" if opt.default else "true"
    if opt.kind == opts.CHOICE:
        return next(choice for choice in opt.choices
                    if choice != opt.default and (opt.name, choice) not in opts.NOT_IMPLEMENTED_VALUES)
    if opt.kind == opts.INT:
        value = (opt.default or 0) + 1
        if opt.maximum is not None and value > opt.maximum:
            value = int(opt.maximum) - 1
        if opt.minimum is not None and value < opt.minimum:
            value = int(opt.minimum)
        return str(value)
    if opt.kind == opts.FLOAT:
        return str((opt.default or 0) + 1.5)
    if opt.kind == opts.PATH:
        path = directory / f"{opt.name}.file"
        path.write_text("")
        return str(path)
    return "x"


def _options():
    for opt in opts.OPTIONS:
        if opt.kind == opts.SPECIAL or not opt.implemented or opt.scope not in (
                opts.GLOBAL, opts.LISTENER, opts.SECURITY):
            continue
        if (opt.name, "true") in opts.NOT_IMPLEMENTED_VALUES:
            continue
        if opt.kind == opts.CHOICE and all(choice == opt.default or (opt.name, choice) in
                                           opts.NOT_IMPLEMENTED_VALUES for choice in opt.choices):
            continue   # no other value midge accepts (tls_keyform)
        if opt.name == "bind_address":
            continue   # part of the listener's key: a changed one is a moved listener
        yield pytest.param(opt, id=opt.name)


@pytest.mark.parametrize("opt", list(_options()))
def test_reload_keeps_or_applies_each_option_as_the_table_says(tmp_path, opt):
    (tmp_path / "server.pem").write_text("")
    (tmp_path / "server.key").write_text("")
    value = _value(opt, tmp_path)
    running_lines = {"listener": "8883", **{k: v.format(d=tmp_path) for k, v in _BASE.items()}}
    new_lines = dict(running_lines)
    if opt.scope == opts.LISTENER:
        new_lines[opt.name] = value
    running_text = "".join(f"{k} {v}\n" for k, v in running_lines.items())
    new_text = "".join(f"{k} {v}\n" for k, v in new_lines.items())
    if opt.scope != opts.LISTENER:
        new_text = f"{opt.name} {value}\n" + new_text
    running = load_config_string(running_text, "running.conf")
    new = load_config_string(new_text, "new.conf")
    target = {opts.GLOBAL: lambda c: c, opts.LISTENER: lambda c: c.listeners[0],
              opts.SECURITY: lambda c: c.security}[opt.scope]
    changed_to = getattr(target(new), opt.attr)
    assert changed_to != getattr(target(running), opt.attr), "the test did not change the option"
    messages = carry_over(running, new)
    if opt.reload == opts.RELOAD_NO:
        assert getattr(target(new), opt.attr) == getattr(target(running), opt.attr)
        assert any(f"{opt.name}: changed" in m and "after a restart" in m for m in messages), messages
        assert messages[0].startswith("new.conf:"), messages   # names file and line
    else:
        assert getattr(target(new), opt.attr) == changed_to
        assert messages == []


def test_sighup_keeps_a_fixed_option_and_says_so_and_applies_the_rest(tmp_path):
    """End to end: `socket_domain` cannot change (the socket is bound), `max_queued_messages`
    does; the log names the line that could not be applied."""
    port = free_port()
    conf = "listener {port} 127.0.0.1\nallow_anonymous {anon}\n{extra}"
    broker = start_midge(conf.format(port=port, anon="true", extra=""), tmp_path, port)
    try:
        (tmp_path / "midge.conf").write_text(conf.format(port=port, anon="false",
                                                         extra="socket_domain ipv4\n"))
        mark = broker.mark()
        broker.signal(signal.SIGHUP)
        line = broker.wait_for_log("socket_domain: changed", start=mark)
        assert "midge.conf:3: socket_domain: changed from None to 'ipv4'; takes effect after a restart" in line
        broker.wait_for_log("Reload complete.", start=mark)
        # allow_anonymous false applies at once: an anonymous client is refused now.
        assert mosquitto_pub(port, "-t", "t", "-m", "x").returncode != 0
    finally:
        assert broker.stop() == 0
