"""server/auth_pool.py: password checks on worker threads, one address at a time,
addresses in turn (issue 14, defect 3). The end-to-end check is
tests/security/test_login_attack.py."""

import asyncio
import threading

from midge.security.passwords import decode_hash, hash_password
from midge.server.auth_pool import AuthPool, pool_size
from tests.inprocess import run


def test_pool_size_leaves_the_event_loop_a_cpu():
    assert [pool_size(n) for n in (1, 2, 3, 4, 8, 64)] == [1, 1, 2, 3, 4, 4]


class Recording:
    """A password entry whose check records where and in which order it ran."""

    log: list = []
    lock = threading.Lock()
    running: dict = {}
    most: dict = {}

    def __init__(self, address, index, release):
        self.address, self.index, self.release = address, index, release

    def verify(self, password):
        with self.lock:
            count = self.running[self.address] = self.running.get(self.address, 0) + 1
            self.most[self.address] = max(self.most.get(self.address, 0), count)
            self.log.append((self.address, self.index, threading.current_thread().name))
        self.release.wait(10)
        with self.lock:
            self.running[self.address] -= 1
        return password == b"right"


def test_addresses_take_turns_and_one_address_hashes_one_at_a_time():
    async def main():
        pool = AuthPool(asyncio.get_running_loop(), workers=2)
        attacker_release, user_release = threading.Event(), threading.Event()
        user_release.set()
        futures = [pool.verify("10.0.0.1", Recording("attacker", i, attacker_release), b"wrong")
                   for i in range(6)]
        user = pool.verify("10.0.0.2", Recording("user", 0, user_release), b"right")
        # The attacker's first check holds one worker; the user must not wait behind the
        # attacker's other five (a second worker is free).
        assert await asyncio.wait_for(user, 10) is True
        with Recording.lock:
            attackers_started = [i for address, i, _ in Recording.log if address == "attacker"]
        attacker_release.set()
        results = await asyncio.gather(*futures)
        pool.close()
        return attackers_started, results

    Recording.log.clear()
    Recording.running.clear()
    Recording.most.clear()
    attackers_started, results = run(main())
    assert attackers_started == [0]              # one check of one address at a time
    assert results == [False] * 6
    assert Recording.most["attacker"] == 1       # never two of one address at once
    assert [i for address, i, _ in Recording.log if address == "attacker"] == list(range(6))
    assert all(thread.startswith("midge-auth") for _, _, thread in Recording.log)


def test_a_check_nobody_waits_for_is_skipped_and_close_answers_the_rest():
    async def main():
        pool = AuthPool(asyncio.get_running_loop(), workers=1)
        release = threading.Event()
        first = pool.verify("a", Recording("a", 0, release), b"right")
        gone = pool.verify("a", Recording("a", 1, release), b"right", wanted=lambda: False)
        waiting = pool.verify("a", Recording("a", 2, release), b"right")
        release.set()
        assert await first is True and await gone is False and await waiting is True
        blocked = threading.Event()
        pool.verify("b", Recording("b", 0, blocked), b"right")
        late = pool.verify("b", Recording("b", 1, release), b"right")
        pool.close()
        blocked.set()
        return await late

    Recording.log.clear()
    assert run(main()) is False
    assert ("a", 1) not in [(address, index) for address, index, _ in Recording.log]


def test_a_real_pbkdf2_hash_is_checked():
    entry = decode_hash(hash_password(b"right", iterations=1000))

    async def main():
        pool = AuthPool(asyncio.get_running_loop())
        try:
            return await pool.verify("x", entry, b"right"), await pool.verify("x", entry, b"wrong")
        finally:
            pool.close()

    assert run(main()) == (True, False)


def test_the_server_hashes_on_the_pool(tmp_path):
    """In-process: a first login goes through the pool, a repeat takes the shortcut."""
    from tests.brokerproc import free_port
    from tests.conformance import packets as p
    from tests.inprocess import running_server

    passwords = tmp_path / "passwords"
    passwords.write_text(f"user:{hash_password(b'right', iterations=1000)}\n")
    port = free_port()

    async def login(password):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(p.gen_connect("c", username="user", password=password))
        connack = await reader.readexactly(4)
        writer.close()
        return connack[3]

    async def main():
        config = f"listener {port} 127.0.0.1\npassword_file {passwords}\nauth_fail_delay 0\n"
        async with running_server(config) as server:
            pool = server.auth_pool
            calls = []
            real = pool.verify

            def counting(*args, **kwargs):
                calls.append(args[0])
                return real(*args, **kwargs)

            server.security.hash_offload = counting
            codes = [await login("wrong"), await login("right"), await login("right")]
            return codes, calls

    codes, calls = run(main())
    assert codes == [5, 0, 0]
    assert calls == ["127.0.0.1", "127.0.0.1"]   # the repeat login was not hashed
