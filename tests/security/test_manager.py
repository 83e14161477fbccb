"""`Security`: Mosquitto's authentication outcomes, ACL built-ins, plugins, reload."""

from __future__ import annotations

import asyncio

import pytest

from midge.security import READ, SUBSCRIBE, WRITE, PendingAuth, Security, SecurityError
from midge.security.passwords import hash_password
from tests.security import plugin_sample
from tests.security.conftest import Client, Config, ListenerConfig, PluginSpec, SecurityConfig

NOT_AUTHORIZED = 0x87


@pytest.fixture
def pwfile(tmp_path):
    path = tmp_path / "pw"
    path.write_text(f"alice:{hash_password(b'secret', iterations=2)}\n"
                    f"empty:{hash_password(b'', iterations=2)}\n")
    return str(path)


def make(log, **settings) -> Security:
    return Security(Config(security=SecurityConfig(**settings)), log)


class TestAuthenticate:
    @pytest.mark.parametrize("anonymous", [True, False])
    def test_no_password_file_allow_anonymous_decides_for_everyone(self, log, anonymous):
        security = make(log, allow_anonymous=anonymous)
        expected = 0 if anonymous else NOT_AUTHORIZED
        assert security.authenticate(Client(), None, None) == expected
        assert security.authenticate(Client(), "someone", b"anything") == expected

    @pytest.mark.parametrize("username, password, anonymous, expected", [
        ("alice", b"secret", False, 0),
        ("alice", b"wrong", True, NOT_AUTHORIZED),
        ("alice", None, True, NOT_AUTHORIZED),
        ("alice", b"secret\0ignored", False, 0),  # a C string: the NUL ends it
        ("nobody", b"secret", True, NOT_AUTHORIZED),  # not in the file: denied even if anonymous allowed
        ("empty", b"", True, NOT_AUTHORIZED),  # zero-length password = no password
        (None, None, True, 0),
        (None, None, False, NOT_AUTHORIZED),
        ("", b"x", True, 0),  # zero-length username = anonymous
        ("", b"x", False, NOT_AUTHORIZED),
    ])
    def test_with_password_file(self, log, pwfile, username, password, anonymous, expected):
        security = make(log, allow_anonymous=anonymous, password_file=pwfile)
        assert security.authenticate(Client(), username, password) == expected

    def test_unreadable_password_file_is_fatal(self, log, tmp_path):
        with pytest.raises(SecurityError, match="Unable to open pwfile") as caught:
            make(log, password_file=str(tmp_path / "missing"))
        assert caught.value.exit_code == 13  # mosquitto's exit code for it

    def test_per_listener_settings(self, log, pwfile):
        open_l = ListenerConfig(port=1, security=SecurityConfig(allow_anonymous=True))
        locked = ListenerConfig(port=2, security=SecurityConfig(password_file=pwfile))
        config = Config(listeners=[open_l, locked], per_listener_settings=True)
        security = Security(config, log)
        assert security.authenticate(Client(listener=open_l), None, None) == 0
        assert security.authenticate(Client(listener=locked), None, None) == NOT_AUTHORIZED
        assert security.authenticate(Client(listener=locked), "alice", b"secret") == 0
        # Without per_listener_settings the global settings apply to every listener.
        config.per_listener_settings = False
        assert Security(config, log).authenticate(Client(listener=open_l), None, None) == NOT_AUTHORIZED


def plugin(mode="defer", **options):
    return PluginSpec("tests.security.plugin_sample", {"mode": mode, "user": "pl", "password": "pw", **options})


class TestPlugins:
    def test_plugin_allows_and_defers(self, log):
        security = make(log, plugins=[plugin()])
        assert security.authenticate(Client(), "pl", b"pw") == 0
        assert security.authenticate(Client(), "pl", b"bad") == NOT_AUTHORIZED  # all deferred: deny

    def test_plugin_codes(self, log):
        assert make(log, plugins=[plugin("deny")]).authenticate(Client(), "x", b"y") == NOT_AUTHORIZED
        assert make(log, plugins=[plugin("code")]).authenticate(Client(), "x", b"y") == 0x8C

    def test_password_file_decides_before_plugins(self, log, pwfile):
        security = make(log, password_file=pwfile, plugins=[plugin()])
        assert security.authenticate(Client(), "alice", b"secret") == 0
        assert security.authenticate(Client(), "pl", b"pw") == NOT_AUTHORIZED

    def test_plugin_cannot_let_anonymous_in_but_can_refuse(self, log):
        assert make(log, plugins=[plugin()]).authenticate(Client(), None, None) == NOT_AUTHORIZED
        assert make(log, allow_anonymous=True, plugins=[plugin()]).authenticate(Client(), None, None) == 0
        assert make(log, allow_anonymous=True, plugins=[plugin("deny")]).authenticate(Client(), None, None) \
            == NOT_AUTHORIZED

    def test_exception_is_a_logged_denial(self, log):
        security = make(log, allow_anonymous=True, plugins=[plugin()])
        assert security.authenticate(Client(), "boom", b"x") == NOT_AUTHORIZED
        assert "basic_auth raised RuntimeError('plugin bug')" in log.text()
        assert security.acl_check(Client(), "boom", WRITE) is False

    def test_plugin_from_a_py_file_gets_its_options(self, log, tmp_path):
        path = tmp_path / "myplug.py"
        path.write_text("seen = {}\n"
                        "def plugin_init(options):\n    seen.update(options)\n"
                        "def basic_auth(client, username, password):\n"
                        "    return username == seen['who']\n")
        security = make(log, plugins=[PluginSpec(str(path), {"who": "me"})])
        assert security.authenticate(Client(), "me", None) == 0
        assert security.authenticate(Client(), "you", None) == NOT_AUTHORIZED

    @pytest.mark.parametrize("path, message", [
        ("/usr/lib/mosquitto_dynamic_security.so", "C plugin"),
        ("no_such_module_xyz", "cannot import module"),
        ("/nonexistent/plugin.py", "file not found"),
        ("not a module", "not a Python module name"),
    ])
    def test_plugins_that_cannot_load_stop_the_start(self, log, path, message):
        with pytest.raises(SecurityError, match=message):
            make(log, plugins=[PluginSpec(path)])

    def test_acl_hooks(self, log):
        security = make(log, plugins=[plugin()])
        assert security.acl_check(Client(), "allowed/x", WRITE)
        assert not security.acl_check(Client(), "denied/x", WRITE)
        assert not security.acl_check(Client(), "other", WRITE)  # every plugin deferred
        assert security.acl_check(Client(), "anything", WRITE) is False

    def test_async_basic_auth_is_awaited_by_the_server(self, log, tmp_path):
        path = tmp_path / "asyncplug.py"
        path.write_text("import asyncio\n"
                        "async def basic_auth(client, username, password):\n"
                        "    await asyncio.sleep(0)\n"
                        "    if username == 'boom':\n        raise ValueError('x')\n"
                        "    return password == b'ok'\n")
        security = make(log, plugins=[PluginSpec(str(path))])
        # Nothing to await it (no server): denied, never allowed.
        assert security.authenticate(Client(), "u", b"ok") == NOT_AUTHORIZED

        async def scenario():
            tasks = []
            security.spawn = lambda coro: tasks.append(asyncio.ensure_future(coro))
            results = {}
            for user, password in [("u", b"ok"), ("u", b"no"), ("boom", b"ok")]:
                pending = security.authenticate(Client(), user, password)
                assert isinstance(pending, PendingAuth)
                pending.on_done(lambda code, key=(user, password): results.__setitem__(key, code))
            await asyncio.gather(*tasks)
            return results

        results = asyncio.run(scenario())
        assert results == {("u", b"ok"): 0, ("u", b"no"): NOT_AUTHORIZED, ("boom", b"ok"): NOT_AUTHORIZED}

    def test_notifications(self, log):
        security = make(log, plugins=[plugin()])
        security.notify("on_connect", Client(client_id="c42"))
        assert ("on_connect", "c42") in plugin_sample.calls


class TestAclCheck:
    def test_no_acl_file_allows(self, log):
        assert make(log).acl_check(Client(), "a/b", WRITE)

    @pytest.mark.parametrize("topic, access, expected", [
        ("$SYS/broker/uptime", WRITE, False),
        ("$SYS/broker/uptime", READ, True),
        ("$SYS/broker/connection/br1/state", WRITE, True),
        ("$share/g/t", WRITE, False),
        ("$share/g/t", SUBSCRIBE, True),
        ("$other/x", WRITE, True),
    ])
    def test_dollar_rules_without_acl_file(self, log, topic, access, expected):
        assert make(log).acl_check(Client(), topic, access) is expected

    def test_client_without_id_is_denied_and_bridges_pass(self, log):
        assert not make(log).acl_check(Client(client_id=""), "a", WRITE)
        assert make(log).acl_check(Client(bridge=object()), "$SYS/x", WRITE)

    def test_acl_file_and_subscribe_always_granted(self, log, tmp_path):
        acl = tmp_path / "acl"
        acl.write_text("user u\ntopic read a/#\npattern write out/%c\n")
        security = make(log, acl_file=str(acl))
        client = Client(client_id="dev", username="u")
        assert security.acl_check(client, "a/b", READ)
        assert not security.acl_check(client, "a/b", WRITE)
        assert security.acl_check(client, "out/dev", WRITE)
        assert security.acl_check(client, "zzz/#", SUBSCRIBE)
        assert client.acl_cache is not None

    def test_reload_invalidates_the_cache_and_keeps_old_files_on_error(self, log, tmp_path):
        acl = tmp_path / "acl"
        acl.write_text("topic a\n")
        config = Config(security=SecurityConfig(allow_anonymous=True, acl_file=str(acl)))
        security = Security(config, log)
        client = Client()
        assert security.acl_check(client, "a", READ) and not security.acl_check(client, "b", READ)
        acl.write_text("topic b\n")
        security.reload(config)
        assert not security.acl_check(client, "a", READ) and security.acl_check(client, "b", READ)
        acl.write_text("nonsense line\n")
        with pytest.raises(SecurityError, match="acl:1"):
            security.reload(config)
        assert security.acl_check(client, "b", READ)


class TestStillAllowed:
    def test_after_reload(self, log, pwfile, tmp_path):
        config = Config(security=SecurityConfig(allow_anonymous=True, password_file=pwfile))
        security = Security(config, log)
        alice, anon = Client(username="alice"), Client(client_id="anon")
        assert security.authenticate(alice, "alice", b"secret") == 0
        assert security.still_allowed(alice) and security.still_allowed(anon)
        config.security.allow_anonymous = False
        security.reload(config)
        assert security.still_allowed(alice) and not security.still_allowed(anon)
        with open(pwfile, "a") as f:  # another user changes: alice stays
            f.write(f"bob:{hash_password(b'b', iterations=2)}\n")
        security.reload(config)
        assert security.still_allowed(alice)
        with open(pwfile, "w") as f:  # alice's password changes: she must log in again
            f.write(f"alice:{hash_password(b'new', iterations=2)}\n")
        security.reload(config)
        assert not security.still_allowed(alice)
        with open(pwfile, "w") as f:
            f.write("")
        security.reload(config)
        assert not security.still_allowed(alice)


class TestPsk:
    def test_file_then_plugin(self, log, tmp_path):
        psk = tmp_path / "psk"
        psk.write_text("id:0102\n")
        security = make(log, psk_file=str(psk), plugins=[plugin()])
        assert security.psk_key(None, "id") == b"\x01\x02"
        assert security.psk_key(None, "plugin-id") == b"\x0a\x0b"
        assert security.psk_key(None, "unknown") is None
        assert security.psk_key(None, "boom") is None and "psk_key raised" in log.text()

    def test_bad_psk_file_is_fatal(self, log, tmp_path):
        psk = tmp_path / "psk"
        psk.write_text("id:zz\n")
        with pytest.raises(SecurityError, match="psk:1"):
            make(log, psk_file=str(psk))


class TestLoginThrottle:
    def test_doubling_capped_forgotten_and_logged_once(self, log):
        security = make(log)
        ip = "192.0.2.1"
        assert security.login_delay(ip, 0.0) == 0.0
        delays = []
        for attempt in range(8):
            security.record_failure(ip, float(attempt))
            delays.append(security.login_delay(ip, float(attempt)))
        assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
        assert sum("Repeated failed logins from 192.0.2.1" in m for _, m in log.lines) == 1
        assert security.login_delay("192.0.2.2", 8.0) == 0.0
        assert security.login_delay(ip, 8.0 + 3600) == 0.0  # forgotten after a quiet period
        security.record_failure(ip, 9.0 + 3600)
        security.record_success(ip)
        assert security.login_delay(ip, 10.0 + 3600) == 0.0

    def test_peer_host(self):
        from midge.security.throttle import peer_host
        assert peer_host("1.2.3.4:5") == "1.2.3.4"
        assert peer_host("[::1]:5") == "::1"
        assert peer_host("::1:5000") == "::1"  # how the server formats IPv6 peers
        assert peer_host("2001:db8::7:443") == "2001:db8::7"
        assert peer_host("unix-socket") == "unix-socket"


class TestTlsIdentity:
    def test_identity_replaces_the_password_check(self, log, pwfile):
        from midge.security.identity import TlsInfo

        listener = ListenerConfig(port=8883)
        listener.use_identity_as_username = True
        security = Security(Config(security=SecurityConfig(password_file=pwfile), listeners=[listener]), log)
        psk_client = Client(listener=listener, tls=TlsInfo("TLSv1.2", "PSK", psk_identity="dev1"))
        assert security.authenticate(psk_client, "ignored", b"ignored") == 0  # not in the password file
        assert security.still_allowed(psk_client)
        plain = Client(listener=listener)
        assert security.authenticate(plain, "alice", b"secret") == 0x86  # CONNACK 4 for v3
        assert not security.still_allowed(plain)


class TestRepeatLogins:
    def test_only_new_or_wrong_passwords_pay_for_pbkdf2(self, log, pwfile, monkeypatch):
        from midge.security.passwords import PasswordHash

        calls = []
        real_verify = PasswordHash.verify
        monkeypatch.setattr(PasswordHash, "verify", lambda self, pw: calls.append(pw) or real_verify(self, pw))
        config = Config(security=SecurityConfig(password_file=pwfile))
        security = Security(config, log)
        assert security.authenticate(Client(), "alice", b"secret") == 0
        assert security.authenticate(Client(), "alice", b"secret") == 0
        assert calls == [b"secret"]  # the second login used the remembered HMAC
        assert security.authenticate(Client(), "alice", b"guess") == NOT_AUTHORIZED
        assert calls == [b"secret", b"guess"]  # a wrong password always gets the full check
        with open(pwfile, "w") as f:
            f.write(f"alice:{hash_password(b'rotated', iterations=2)}\n")
        security.reload(config)
        assert security.authenticate(Client(), "alice", b"secret") == NOT_AUTHORIZED
        assert security.authenticate(Client(), "alice", b"rotated") == 0

    def test_reload_changes_the_throttle(self, log):
        config = Config(security=SecurityConfig(allow_anonymous=True))
        security = Security(config, log)
        security.record_failure("192.0.2.9", 0.0)
        assert security.login_delay("192.0.2.9", 0.0) == 0.5
        config.auth_fail_delay = 0
        security.reload(config)
        assert security.login_delay("192.0.2.9", 0.0) == 0.0


def test_a_plain_listener_never_imports_cryptography():
    # cryptography (~10 MiB of RSS) is for TLS identities only: a broker without TLS
    # listeners must not load it on the first connect (it was counted in idle-10k's
    # memory per connection: 3.35 -> 2.34 KiB without it).
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import sys
        from midge.config import load_config_string
        from midge.log import MemoryLog
        from midge.security import Security
        from midge.broker import Broker
        config = load_config_string("listener 1883\\nallow_anonymous true\\n", "m.conf")
        log = MemoryLog()
        broker = Broker(config, log, security=Security(config, log))
        client = broker.new_client(config.listeners[0], "127.0.0.1:5000", None, None, 0.0)
        client.receive_data(b"\\x10\\x0d\\x00\\x04MQTT\\x04\\x02\\x00\\x3c\\x00\\x01c", 0.0)
        assert client.output == [b"\\x20\\x02\\x00\\x00"], client.output
        print("cryptography" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr
