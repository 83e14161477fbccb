"""Live reload: changed TLS files rebuild the context; broken ones keep the old one."""

import os
import shutil
from types import SimpleNamespace

from midge.server.tls_context import TlsListenerContext
from midge.server.tls_reload import TlsFileWatcher
from tests.tls.memory import Pair, client_context, listener


class Log:
    def __init__(self):
        self.lines = []

    def error(self, line):
        self.lines.append(("error", line))

    def notice(self, line):
        self.lines.append(("notice", line))


def setup(pki, tmp_path, **options):
    shutil.copy(pki.server_cert, tmp_path / "server.crt")
    shutil.copy(pki.server_key, tmp_path / "server.key")
    shutil.copy(pki.crl(), tmp_path / "crl.pem")
    lst = listener(pki, certfile=str(tmp_path / "server.crt"), keyfile=str(tmp_path / "server.key"),
                   require_certificate=True, crlfile=str(tmp_path / "crl.pem"), **options)
    state = SimpleNamespace(listener=lst, tls=TlsListenerContext.from_listener(lst, None, None))
    log = Log()
    watcher = TlsFileWatcher([state], lambda l: TlsListenerContext.from_listener(l, None, None), log)
    return state, watcher, log


def replace(path, data: bytes):
    """Write like certbot/kubernetes do: a new file renamed over the old one."""
    tmp = str(path) + ".new"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def test_unchanged_files_do_nothing(pki, tmp_path):
    state, watcher, log = setup(pki, tmp_path)
    assert watcher.check() == [] and log.lines == []


def test_new_crl_applies_to_new_connections_only(pki, tmp_path):
    client = pki.client("soon-revoked")
    state, watcher, log = setup(pki, tmp_path)
    open_pair = Pair(state.tls.new_stage(), client_context(pki, client))
    assert open_pair.handshake()
    old = state.tls
    replace(tmp_path / "crl.pem", pki.crl(revoked=[client]).read_bytes())
    assert watcher.check() == [state]
    assert state.tls is not old
    assert "crl.pem" in log.lines[-1][1] and log.lines[-1][0] == "notice"
    assert not Pair(state.tls.new_stage(), client_context(pki, client)).handshake()
    # the open connection still works on its old context
    assert open_pair.client_send(b"ping") == b"ping"


def test_new_server_certificate(pki, tmp_path):
    state, watcher, log = setup(pki, tmp_path)
    cert, key = pki.server("renewed.example", key_type="ec")
    replace(tmp_path / "server.key", key.read_bytes())
    replace(tmp_path / "server.crt", cert.read_bytes())
    assert watcher.check() == [state]
    p = Pair(state.tls.new_stage(), client_context(pki, pki.client("alice")))
    assert p.handshake()
    assert "renewed.example" in str(p.client.getpeercert()["subject"])


def test_half_written_renewal_keeps_old_then_recovers(pki, tmp_path):
    state, watcher, log = setup(pki, tmp_path)
    old = state.tls
    cert, key = pki.server("renewed.example", key_type="ec")
    replace(tmp_path / "server.crt", cert.read_bytes())  # key not yet renewed: mismatch
    assert watcher.check() == []
    assert state.tls is old
    level, line = log.lines[-1]
    assert level == "error" and "keyfile" in line and "keeping the old certificates" in line
    assert watcher.check() == []  # no repeated errors while nothing changes
    assert len(log.lines) == 1
    replace(tmp_path / "server.key", key.read_bytes())
    assert watcher.check() == [state]


def test_expired_crl_keeps_old(pki, tmp_path):
    state, watcher, log = setup(pki, tmp_path)
    old = state.tls
    replace(tmp_path / "crl.pem", pki.crl(expired=True).read_bytes())
    assert watcher.check() == [] and state.tls is old
    assert "expired on" in log.lines[-1][1]


def test_deleted_file_keeps_old(pki, tmp_path):
    state, watcher, log = setup(pki, tmp_path)
    old = state.tls
    os.unlink(tmp_path / "crl.pem")
    assert watcher.check() == [] and state.tls is old
    assert "crlfile" in log.lines[-1][1]


def test_sweep_finds_live_connections_revoked_after_reload(pki, tmp_path):
    import asyncio
    alice, bob = pki.client("sweep-alice"), pki.client("sweep-bob")
    state, watcher, log = setup(pki, tmp_path, disconnect_on_revocation=True)
    pairs = {}
    for name, cert in (("alice", alice), ("bob", bob)):
        pairs[name] = Pair(state.tls.new_stage(), client_context(pki, cert))
        assert pairs[name].handshake()
    live = [(name, p.stage.info) for name, p in pairs.items()]
    assert asyncio.run(state.tls.revocation.sweep(live)) == []
    replace(tmp_path / "crl.pem", pki.crl(revoked=[alice]).read_bytes())
    assert watcher.check() == [state]
    doomed = asyncio.run(state.tls.revocation.sweep(live))
    assert [name for name, _ in doomed] == ["alice"]
    assert doomed[0][1].kind == "revoked"


def test_sweep_finds_expired_and_is_off_by_default(pki, tmp_path):
    import asyncio
    from datetime import datetime, timedelta, timezone
    state, watcher, log = setup(pki, tmp_path)
    p = Pair(state.tls.new_stage(), client_context(pki, pki.client("sweep-carol")))
    assert p.handshake()
    assert asyncio.run(state.tls.revocation.sweep([("carol", p.stage.info)])) == []  # option off
    later = datetime.now(timezone.utc) + timedelta(days=400)
    failure = asyncio.run(state.tls.revocation.recheck(p.stage.info, later))
    assert failure.kind == "expired"


def test_crl_expiry_is_announced_once_ahead_and_once_when_it_happens(pki, tmp_path):
    from datetime import datetime, timedelta, timezone
    state, watcher, log = setup(pki, tmp_path)
    log.warning = lambda line: log.lines.append(("warning", line))
    next_update = state.tls.crls[0].next_update_utc
    watcher.check(now=datetime.now(timezone.utc))
    assert log.lines == []
    soon = next_update - timedelta(hours=2)
    watcher.check(now=soon)
    watcher.check(now=soon)
    assert [level for level, _ in log.lines] == ["warning"]
    assert "expires on" in log.lines[0][1] and "publish a fresh CRL" in log.lines[0][1]
    late = next_update + timedelta(minutes=1)
    watcher.check(now=late)
    watcher.check(now=late)
    assert [level for level, _ in log.lines] == ["warning", "error"]
    assert "every client certificate is now refused" in log.lines[1][1]
