"""The SQLite store against the in-memory broker harness: what is written, what a
restart gets back, what is refused. A "restart" is a new Broker loading the same file."""

from __future__ import annotations

import sqlite3

import pytest

from midge.security import Security
from midge.persist import Changes, PersistError, Store
from midge.protocol.constants import Property
from midge.protocol.packets import Puback, Pubcomp, Publish, Pubrec, Pubrel
from tests.broker.harness import Harness


class PersistHarness(Harness):
    """The harness with the server's rule: changes are stored before output is read."""

    def __init__(self, path, wall=None, **options):
        super().__init__(**options)
        self.wall = wall or [1_700_000_000.0]
        self.store = Store(str(path), wall_clock=lambda: self.wall[0])
        self.loaded = self.store.load(self.broker, self.now, self.config.listeners)
        self.changes = Changes()
        self.broker.persist = self.changes
        self.broker.retained.changes = self.changes

    def drain(self) -> None:
        if self.changes:
            self.store.write(self.broker, self.changes, self.now)
        super().drain()

    def restart(self, path, seconds_later=1.0, **options) -> "PersistHarness":
        """Close this broker's file (as a clean shutdown) and start a new one on it."""
        self.broker.shutdown(self.now)
        self.drain()
        self.store.close()
        self.wall[0] += seconds_later
        return PersistHarness(path, self.wall, **options)


@pytest.fixture
def db(tmp_path):
    return tmp_path / "midge.db"


def rows(h, sql):
    """Read through the store's own connection (the file is locked to its broker)."""
    return h.store.db.execute(sql).fetchall()


class TestRetained:
    def test_retained_message_survives_a_restart(self, db):
        h = PersistHarness(db)
        pub = h.connect("pub", version=5)
        pub.publish("a/b", b"kept", qos=1, retain=True, packet_id=3,
                    properties={Property.USER_PROPERTY: [("k", "v")]})
        pub.take_one(Puback)
        h2 = h.restart(db)
        assert h2.loaded == (1, 0)
        message = h2.broker.retained.get("a/b")
        assert message.payload == b"kept" and message.qos == 1
        assert message.properties[Property.USER_PROPERTY] == [("k", "v")]

    def test_cleared_retained_message_is_deleted(self, db):
        h = PersistHarness(db)
        pub = h.connect("pub")
        pub.publish("a/b", b"kept", retain=True)
        assert rows(h, "SELECT topic FROM retained") == [("a/b",)]
        pub.publish("a/b", b"", retain=True)
        assert rows(h, "SELECT topic FROM retained") == []

    def test_sys_topics_are_not_stored(self, db):
        h = PersistHarness(db)
        h.broker.retained.store(__import__("midge.broker.message", fromlist=["Message"]).Message(
            "$SYS/broker/uptime", b"1", 0, True, {}))
        h.drain()
        assert rows(h, "SELECT topic FROM retained") == []

    def test_message_expiry_counts_down_across_restarts(self, db):
        h = PersistHarness(db)
        pub = h.connect("pub", version=5)
        pub.publish("t", b"soon", retain=True, properties={Property.MESSAGE_EXPIRY_INTERVAL: 10})
        h2 = h.restart(db, seconds_later=4)
        assert h2.broker.retained.get("t").expiry_at == pytest.approx(h2.now + 6)
        h3 = h2.restart(db, seconds_later=7)
        assert h3.broker.retained.get("t") is None


class TestSessions:
    def test_queued_qos1_and_qos2_are_delivered_after_restart(self, db):
        h = PersistHarness(db)
        sub = h.connect("sub", version=5, clean_start=False,
                        properties={Property.SESSION_EXPIRY_INTERVAL: 3600})
        sub.subscribe("q/#", qos=2, properties={Property.SUBSCRIPTION_IDENTIFIER: 7})
        sub.disconnect()
        pub = h.connect("pub")
        pub.publish("q/1", b"one", qos=1)
        pub.publish("q/2", b"two", qos=2, packet_id=2)
        pub.send(Pubrel(2))
        h2 = h.restart(db)
        assert h2.loaded == (0, 1)
        sub = h2.connect("sub", version=5, clean_start=False,
                         properties={Property.SESSION_EXPIRY_INTERVAL: 3600})
        assert sub.connack.session_present
        got = sub.publishes()
        assert [(p.topic, p.payload, p.qos) for p in got] == [("q/1", b"one", 1), ("q/2", b"two", 2)]
        assert all(p.properties[Property.SUBSCRIPTION_IDENTIFIER] == [7] for p in got)
        # The subscription itself came back too.
        h2.connect("pub").publish("q/3", b"three", qos=1)
        assert [p.payload for p in sub.publishes()] == [b"three"]

    def test_inflight_qos2_waiting_for_pubcomp_resumes_with_pubrel(self, db):
        h = PersistHarness(db)
        sub = h.connect("sub", clean_start=False)
        sub.subscribe("t", qos=2)
        pub = h.connect("pub")
        pub.publish("t", b"x", qos=2, packet_id=1)
        pub.send(Pubrel(1))
        [publish] = sub.publishes()
        sub.send(Pubrec(publish.packet_id))
        sub.take_one(Pubrel)
        h2 = h.restart(db)
        sub = h2.connect("sub", clean_start=False)
        pubrel = sub.take_one(Pubrel)
        assert pubrel.packet_id == publish.packet_id
        sub.send(Pubcomp(publish.packet_id))
        assert rows(h2, "SELECT count(*) FROM deliveries WHERE client_id='sub'") == [(0,)]

    def test_unacknowledged_qos1_is_resent_with_dup(self, db):
        h = PersistHarness(db)
        sub = h.connect("sub", clean_start=False)
        sub.subscribe("t", qos=1)
        h.connect("pub").publish("t", b"x", qos=1)
        [first] = sub.publishes()
        h2 = h.restart(db)
        sub = h2.connect("sub", clean_start=False)
        [again] = sub.publishes()
        assert again.dup and again.packet_id == first.packet_id and again.payload == b"x"

    def test_incoming_qos2_awaiting_pubrel_is_delivered_on_release(self, db):
        h = PersistHarness(db)
        sub = h.connect("sub", clean_start=False)
        sub.subscribe("t", qos=1)
        sub.lose()
        pub = h.connect("pub", clean_start=False)
        pub.publish("t", b"held", qos=2, packet_id=9)
        pub.take_one(Pubrec)
        h2 = h.restart(db)
        pub = h2.connect("pub", clean_start=False)
        pub.send(Pubrel(9))
        assert pub.take_one(Pubcomp).packet_id == 9
        sub = h2.connect("sub", clean_start=False)
        assert [p.payload for p in sub.publishes()] == [b"held"]

    def test_clean_sessions_are_not_stored(self, db):
        h = PersistHarness(db)
        sub = h.connect("sub")
        sub.subscribe("t", qos=1)
        h.connect("pub").publish("t", b"x", qos=1)
        assert rows(h, "SELECT count(*) FROM sessions") == [(0,)]
        assert rows(h, "SELECT count(*) FROM messages") == [(0,)]

    def test_ended_session_and_its_messages_are_deleted(self, db):
        h = PersistHarness(db)
        sub = h.connect("sub", clean_start=False)
        sub.subscribe("t", qos=1)
        sub.lose()
        h.connect("pub").publish("t", b"x", qos=1)
        assert rows(h, "SELECT count(*) FROM messages") == [(1,)]
        h.connect("sub", clean_start=True).disconnect()
        assert rows(h, "SELECT count(*) FROM sessions") == [(0,)]
        assert rows(h, "SELECT count(*) FROM messages") == [(0,)]

    def test_message_held_by_two_sessions_is_stored_once(self, db):
        h = PersistHarness(db)
        for name in ("s1", "s2"):
            conn = h.connect(name, clean_start=False)
            conn.subscribe("t", qos=1)
            conn.lose()
        h.connect("pub").publish("t", b"x", qos=1)
        assert rows(h, "SELECT count(*) FROM messages") == [(1,)]
        s1 = h.connect("s1", clean_start=False)
        [p] = s1.publishes()
        s1.send(Puback(p.packet_id))
        assert rows(h, "SELECT count(*) FROM messages") == [(1,)]   # s2 still holds it
        s2 = h.connect("s2", clean_start=False)
        [p] = s2.publishes()
        s2.send(Puback(p.packet_id))
        assert rows(h, "SELECT count(*) FROM messages") == [(0,)]

    def test_session_expiry_counts_offline_time_across_restarts(self, db):
        h = PersistHarness(db)
        sub = h.connect("sub", version=5, clean_start=False,
                        properties={Property.SESSION_EXPIRY_INTERVAL: 100})
        sub.subscribe("t", qos=1)
        sub.disconnect()
        h2 = h.restart(db, seconds_later=60)
        assert h2.loaded == (0, 1)
        h2.advance(41)
        assert "sub" not in h2.broker.sessions
        h3 = h2.restart(db, seconds_later=1)
        assert h3.loaded == (0, 0)

    def test_session_expired_while_down_is_not_loaded(self, db):
        h = PersistHarness(db)
        h.connect("sub", version=5, clean_start=False,
                  properties={Property.SESSION_EXPIRY_INTERVAL: 10}).disconnect()
        h2 = h.restart(db, seconds_later=11)
        assert h2.loaded == (0, 0)
        assert rows(h2, "SELECT count(*) FROM sessions") == [(0,)]

    def test_persistent_client_expiration_applies_to_never_expiring_sessions(self, db):
        h = PersistHarness(db, persistent_client_expiration="1h")
        h.connect("sub", clean_start=False).disconnect()
        h2 = h.restart(db, seconds_later=3599, persistent_client_expiration="1h")
        assert h2.loaded == (0, 1)
        h2.store.close()
        h = PersistHarness(db, persistent_client_expiration="1h")
        h.connect("sub", clean_start=False).disconnect()
        assert h.restart(db, seconds_later=3601, persistent_client_expiration="1h").loaded == (0, 0)


class TestCost:
    def test_qos0_traffic_without_persistent_sessions_changes_nothing(self, db):
        h = PersistHarness(db)
        sub = h.connect("sub")
        sub.subscribe("t")
        pub = h.connect("pub")
        writes = h.store.writes
        for _ in range(100):
            pub.client.receive_data(
                __import__("midge.protocol.codec", fromlist=["encode"]).encode(
                    Publish("t", b"x", 0, False, False, None, {}), 4), h.now)
            assert not h.changes
        h.drain()
        assert h.store.writes == writes
        assert len(sub.publishes()) == 100

    def test_qos1_to_a_persistent_session_is_one_write_per_batch(self, db):
        h = PersistHarness(db)
        h.connect("sub", clean_start=False).subscribe("t", qos=1)
        pub = h.connect("pub")
        writes = h.store.writes
        pub.send(*[Publish("t", b"x", 1, False, False, i, {}) for i in range(1, 51)])
        assert h.store.writes == writes + 1


class TestRefused:
    def test_mosquitto_database_is_refused_with_file_name_and_advice(self, tmp_path):
        path = tmp_path / "mosquitto.db"
        path.write_bytes(b"\x00\xb5\x00mosquitto db\x00\x00\x00\x06" + b"\x00" * 64)
        with pytest.raises(PersistError) as info:
            Store(str(path))
        message = str(info.value)
        assert str(path) in message and "Mosquitto database" in message and "persistence_file" in message
        assert path.read_bytes().startswith(b"\x00\xb5\x00mosquitto db")   # untouched

    def test_other_file_is_refused(self, tmp_path):
        path = tmp_path / "notes.txt"
        path.write_text("hello")
        with pytest.raises(PersistError, match="not a midge"):
            Store(str(path))

    def test_someone_elses_sqlite_database_is_refused(self, tmp_path):
        path = tmp_path / "other.db"
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE t (x)")
        with pytest.raises(PersistError, match="not midge's"):
            Store(str(path))

    def test_second_broker_on_the_same_file_is_refused(self, db):
        h = PersistHarness(db)
        h.connect("pub").publish("a", b"x", retain=True)
        with pytest.raises(PersistError, match="locked"):
            Store(str(db))

    def test_empty_file_is_used(self, tmp_path):
        path = tmp_path / "empty.db"
        path.write_bytes(b"")
        Store(str(path)).close()


def test_broker_core_does_not_import_sqlite():
    """The store sits behind `Changes`: broker/ stays free of sqlite3 (docs/persistence.md)."""
    from tests.test_layering import SRC, imported_modules
    offenders = [str(path) for path in (SRC / "broker").rglob("*.py") if "sqlite3" in imported_modules(path)]
    assert offenders == []


def test_damaged_file_is_refused_naming_it(tmp_path):
    from tests.broker.harness import MemoryLog, make_config
    from midge.broker import Broker
    from midge.persist.service import Persistence
    path = tmp_path / "midge.db"
    store = Store(str(path))
    store.db.execute("INSERT INTO sessions VALUES ('c', 4294967295, 4, 1, NULL, NULL, NULL, 'not json', '[]')")
    store.close()
    config = make_config(persistence=True, persistence_file="midge.db", persistence_location=str(tmp_path))
    broker = Broker(config, MemoryLog(), Security(config, MemoryLog()))
    with pytest.raises(PersistError, match="is damaged"):
        Persistence(config, MemoryLog(), broker, 0.0)


def session_state(broker):
    """Per session: in-flight (packet id, payload, state) in order, queued payloads in
    order, subscriptions, incoming QoS 2 held until PUBREL."""
    return {cid: ([(pid, d.message.payload, d.state) for pid, d in s.inflight.items()],
                  [d.message.payload for d in s.queue], sorted(s.subscriptions),
                  {pid: m and m.payload for pid, m in s.incoming_qos2.items()})
            for cid, s in broker.sessions.items()}


class TestIncrementalWrites:
    """The queue and in-flight rows are written as deltas: after any mix of operations
    a restart must give back exactly the state in memory."""

    @pytest.mark.parametrize("seed", range(8))
    def test_random_traffic_then_restart_gives_back_the_same_state(self, tmp_path, seed):
        import random
        rng = random.Random(seed)
        path = tmp_path / "midge.db"
        h = PersistHarness(path, max_inflight_messages=3, max_queued_messages=0)
        names = ["s1", "s2", "s3"]
        for name in names:
            conn = h.connect(name, clean_start=False)
            conn.subscribe("t/#", qos=rng.choice((1, 2)))
            conn.lose()
        online = {}
        pub = h.connect("pub")
        counter = 0
        for step in range(300):
            action = rng.random()
            if action < 0.45:
                counter += 1
                qos = rng.choice((1, 2))
                packet_id = counter % 60000 + 1
                pub.publish(f"t/{counter}", str(counter).encode(), qos=qos, packet_id=packet_id)
                if qos == 2 and rng.random() < 0.8:
                    pub.send(Pubrel(packet_id))   # else it stays held until PUBREL
                pub.take()
            elif action < 0.6:
                name = rng.choice(names)
                if name in online:
                    online.pop(name).lose()
                else:
                    online[name] = h.connect(name, clean_start=False)
            elif action < 0.9 and online:
                name = rng.choice(sorted(online))
                conn = online[name]
                session = conn.client.session
                if session.inflight:
                    packet_id = rng.choice(list(session.inflight))
                    delivery = session.inflight[packet_id]
                    if delivery.qos == 1:
                        conn.send(Puback(packet_id))
                    elif delivery.state == 1:
                        conn.send(Pubrec(packet_id))
                    else:
                        conn.send(Pubcomp(packet_id))
                conn.take()
            elif action < 0.93:
                h.connect(rng.choice(names) + "x", clean_start=False).lose()   # more sessions
            elif action < 0.96:
                h = self._restart(h, path)
                online = {}
                pub = h.connect("pub")
        self._restart(h, path)

    def _restart(self, h, path):
        h.broker.shutdown(h.now)
        h.drain()
        before = session_state(h.broker)
        h2 = h.restart(path, max_inflight_messages=3, max_queued_messages=0)
        assert session_state(h2.broker) == before
        return h2

    def test_queue_changed_in_the_middle_is_rewritten(self, db):
        h = PersistHarness(db)
        sub = h.connect("sub", clean_start=False)
        sub.subscribe("t", qos=1)
        sub.lose()
        pub = h.connect("pub")
        for i in range(5):
            pub.publish("t", str(i).encode(), qos=1)
        session = h.broker.sessions["sub"]
        del session.queue[2]                      # not something the broker does today
        h.changes.sessions.add(session)
        h.drain()
        h2 = h.restart(db)
        assert [d.message.payload for d in h2.broker.sessions["sub"].queue] == [b"0", b"1", b"3", b"4"]


class TestRecovery:
    def test_failed_write_is_rolled_back_and_the_next_write_rewrites_everything(self, db):
        h = PersistHarness(db)
        sub = h.connect("sub", clean_start=False)
        sub.subscribe("t", qos=1)
        sub.lose()
        pub = h.connect("pub")
        pub.publish("t", b"1", qos=1)
        real = h.store.db

        class Failing:
            """The connection, except that inserting a delivery fails (disk full)."""
            def execute(self, sql, *args):
                if sql.startswith("INSERT INTO deliveries"):
                    raise sqlite3.OperationalError("database or disk is full")
                return real.execute(sql, *args)

        h.store.db = Failing()
        with pytest.raises(sqlite3.OperationalError):
            pub.publish("t", b"2", qos=1)
        h.store.db = real
        pub.publish("t", b"3", qos=1, retain=True)
        h2 = h.restart(db)
        assert [d.message.payload for d in h2.broker.sessions["sub"].queue] == [b"1", b"2", b"3"]
        assert h2.broker.retained.get("t").payload == b"3"

    def test_save_all_rewrites_the_same_state(self, db):
        h = PersistHarness(db)
        sub = h.connect("sub", clean_start=False)
        sub.subscribe("t", qos=1)
        sub.lose()
        pub = h.connect("pub")
        for i in range(3):
            pub.publish("t", str(i).encode(), qos=1, retain=True)
        assert h.store.save_all(h.broker, h.changes, h.now) == 2
        h2 = h.restart(db)
        assert [d.message.payload for d in h2.broker.sessions["sub"].queue] == [b"0", b"1", b"2"]
        assert rows(h2, "SELECT count(*) FROM messages") == [(3,)]


class TestService:
    def make(self, tmp_path, **options):
        from midge.broker import Broker
        from midge.persist.service import Persistence
        from tests.broker.harness import MemoryLog, make_config
        config = make_config(persistence=True, persistence_file="midge.db",
                             persistence_location=str(tmp_path), **options)
        log = MemoryLog()
        broker = Broker(config, log, Security(config, log))
        return Persistence(config, log, broker, 0.0), broker, log

    def test_autosave_interval_is_seconds_between_checkpoints(self, tmp_path):
        service, _, _ = self.make(tmp_path, autosave_interval=60, autosave_on_changes=False)
        assert (service.autosave_interval, service.checkpoint_every) == (60, 0)

    def test_autosave_on_changes_checkpoints_after_that_many_changes(self, tmp_path, monkeypatch):
        from midge.broker.message import Message
        service, broker, log = self.make(tmp_path, autosave_interval=3, autosave_on_changes=True)
        assert (service.autosave_interval, service.checkpoint_every) == (0, 3)
        checkpoints = []
        monkeypatch.setattr(service.store, "checkpoint", lambda: checkpoints.append(1))
        for i in range(7):
            broker.retained.store(Message(f"t/{i}", b"x", 0, True, {}))
            service.write_changes(0.0)
        assert len(checkpoints) == 2
        assert log.has("Persisted 1 changes to")

    def test_close_writes_the_last_changes(self, tmp_path):
        from midge.broker.message import Message
        service, broker, log = self.make(tmp_path)
        broker.retained.store(Message("t", b"x", 0, True, {}))
        service.close(0.0)
        service2, broker2, log2 = self.make(tmp_path)
        assert broker2.retained.get("t").payload == b"x"
        assert log2.has("Loaded 1 retained messages and 0 persistent sessions")


def test_new_file_is_private_to_its_owner(tmp_path):
    import stat
    path = tmp_path / "midge.db"
    Store(str(path)).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_missing_directory_is_reported_with_the_path(tmp_path):
    path = tmp_path / "missing" / "midge.db"
    with pytest.raises(PersistError, match=str(path)):
        Store(str(path))


def test_file_of_another_format_version_is_refused(tmp_path):
    path = tmp_path / "midge.db"
    store = Store(str(path))
    store.db.execute("UPDATE meta SET value=99 WHERE key='schema'")
    store.close()
    with pytest.raises(PersistError, match="format version 99"):
        Store(str(path))
