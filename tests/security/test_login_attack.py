"""Issue 14, defect 3: password hashing does not stall the broker.

Before: with a password file as `midge passwd` writes it (PBKDF2, 210,000 iterations,
~0.13 s per check), 100 parallel wrong logins from one address were hashed one after
another on the event loop and every client of the broker waited up to 13 s. Now hashes
run on a worker pool (server/auth_pool.py), one at a time per source address, addresses
in turn.

Nothing here is timed (bench/ measures latencies: `login-attack`). The tests check the
order of answers instead: while the attack's checks are still being hashed, a connected
client's PINGREQ, a returning user's login and a first login from other addresses are
all answered (a first login from another address: after at most one check). Inline hashing answered each of them only after every attack CONNECT
that arrived before it.
"""

from __future__ import annotations

import select
import socket

from midge.security.passwords import hash_password
from tests.brokerproc import TIMEOUT_SCALE, free_port, start_midge
from tests.conformance import packets as p

ATTACK = 12
TIMEOUT = 30 * TIMEOUT_SCALE


def _open(port: int, source: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise AssertionError(f"closed after {data!r}")
        data += chunk
    return data


def _login(port: int, source: str, client_id: str, password: str) -> socket.socket:
    sock = _open(port, source)
    sock.sendall(p.gen_connect(client_id, username="user", password=password))
    return sock


def _unanswered(socks) -> int:
    """How many of `socks` have not received anything yet (a CONNACK) right now."""
    readable, _, _ = select.select(socks, [], [], 0)
    return len(socks) - len(readable)


def _attack(port: int) -> list[socket.socket]:
    """ATTACK wrong logins in parallel from 127.0.0.1, as in the issue: one failure first
    arms the login throttle, so the parallel ones are held and released together (the
    throttle's delay); return once the broker has answered one of them."""
    armed = _login(port, "127.0.0.1", "armed", "wrong")
    assert _read_exactly(armed, 4) == b"\x20\x02\x00\x05"
    armed.close()
    attack = [_login(port, "127.0.0.1", f"attack{i}", "wrong") for i in range(ATTACK)]
    readable, _, _ = select.select(attack, [], [], TIMEOUT)
    assert readable, "no answer to the attack"
    return attack


def test_wrong_logins_in_parallel_do_not_stall_other_clients(tmp_path):
    passwords = tmp_path / "passwords"
    passwords.write_text(f"user:{hash_password(b'right')}\n")      # 210,000 iterations
    port = free_port()
    broker = start_midge(f"listener {port} 127.0.0.1\npassword_file {passwords}\n", tmp_path, port)
    try:
        # A connected client, and a user who logged in before (its next login with the
        # same password takes the HMAC shortcut, no hash).
        pinger = _login(port, "127.0.0.4", "pinger", "right")
        assert _read_exactly(pinger, 4) == b"\x20\x02\x00\x00"
        earlier = _login(port, "127.0.0.2", "returning", "right")
        assert _read_exactly(earlier, 4) == b"\x20\x02\x00\x00"
        earlier.close()

        attack = _attack(port)

        pinger.sendall(p.gen_pingreq())
        returning = _login(port, "127.0.0.2", "returning", "right")
        assert _read_exactly(pinger, 2) == b"\xd0\x00"
        pending_at_ping = _unanswered(attack)
        assert _read_exactly(returning, 4) == b"\x20\x02\x00\x00"
        pending_at_return = _unanswered(attack)
        assert pending_at_ping > ATTACK // 2, (
            f"a PINGREQ waited for {ATTACK - pending_at_ping} of {ATTACK} password checks")
        assert pending_at_return > ATTACK // 2, (
            f"a returning user's login waited for {ATTACK - pending_at_return} of {ATTACK} checks")
        for sock in attack:
            assert _read_exactly(sock, 4) == b"\x20\x02\x00\x05"   # all refused in the end
    finally:
        for sock in locals().get("attack", []):
            sock.close()
        broker.stop()


def test_a_first_login_from_another_address_waits_for_one_check_not_the_queue(tmp_path):
    passwords = tmp_path / "passwords"
    passwords.write_text(f"user:{hash_password(b'right')}\nother:{hash_password(b'secret')}\n")
    port = free_port()
    broker = start_midge(f"listener {port} 127.0.0.1\npassword_file {passwords}\n", tmp_path, port)
    try:
        attack = _attack(port)
        sock = _open(port, "127.0.0.3")
        sock.sendall(p.gen_connect("first", username="other", password="secret"))  # never seen: hashed
        assert _read_exactly(sock, 4) == b"\x20\x02\x00\x00"
        pending = _unanswered(attack)
        assert pending > ATTACK // 2, (
            f"a first login from another address waited for {ATTACK - pending} of {ATTACK} checks")
        for s in attack:
            assert _read_exactly(s, 4) == b"\x20\x02\x00\x05"
    finally:
        for s in locals().get("attack", []):
            s.close()
        broker.stop()
