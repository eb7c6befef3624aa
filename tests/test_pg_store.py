"""PostgreSQL-only properties of the store: exactly once across hosts, no lost suppression update under real
concurrency, and faults (server down, restarting, connections reset, statement timeout, full pool).

Two `Store` objects on one URL are two MX hosts: each has its own connection pool, so their transactions run
concurrently in the server, whatever Python's GIL does.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter.classify import classify
from bouncemilter.cli import main
from bouncemilter.store import Store, StoreError
from bouncemilter.store import connect as store_connect
from bouncemilter.store.postgres import redact, translate
from bouncemilter.suppressions import open_store
from tests.e2e import messages as M
from tests.pg_rig import PASSWORD_ROLE, PgServer

from .conftest import make_meta, query_rows


def bounce(n: int, rcpt: str = "") -> tuple:
    raw = M.hard_bounce(f"pg{n}", recipient=rcpt or f"user{n}@example.org")
    return make_meta(n), classify(raw), "accept"


def run_threads(targets: list, timeout: float = 60) -> list[BaseException]:
    errors: list[BaseException] = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return errors


# ----------------------------------------------------------------------------------------- exactly once, fleet


def test_two_hosts_storing_the_same_bounces_at_once_give_one_row_each(pg_url: str) -> None:
    hosts = [open_store(pg_url, 10.0), open_store(pg_url, 10.0)]
    items = [bounce(n) for n in range(60)]
    start = threading.Barrier(8)
    results: list[tuple[int, bool]] = []
    lock = threading.Lock()

    def writer(host: Store, order: list) -> None:
        start.wait()
        for item in order:
            r = host.record(*item)
            with lock:
                results.append(r)

    try:
        # 4 writers per host; every bounce is recorded by every writer, in different orders
        targets = []
        for w in range(8):
            order = items[w % 3 :: 1] + items[: w % 3]
            targets.append(lambda h=hosts[w % 2], o=order: writer(h, o))
        assert run_threads(targets) == []
    finally:
        for h in hosts:
            h.close()
    assert len(results) == 8 * 60
    inserted = [r for r in results if r[1]]
    assert len(inserted) == 60  # each bounce inserted by exactly one writer
    assert len({r[0] for r in results}) == 60  # and every writer got that row's id back
    assert query_rows(pg_url, "SELECT COUNT(*) FROM messages")[0][0] == 60
    assert query_rows(pg_url, "SELECT COUNT(*) FROM recipients")[0][0] == 60
    assert query_rows(pg_url, "SELECT COUNT(*) FROM suppressions WHERE state = 'suppressed'")[0][0] == 60
    assert query_rows(pg_url, "SELECT COUNT(*) FROM suppression_log WHERE action = 'suppress'")[0][0] == 60


def test_concurrent_suppression_updates_of_one_address_lose_nothing(pg_url: str) -> None:
    """Twenty different bounces for one address from two hosts at once: one suppression, whose evidence names every
    one of them (a read-then-write without the per-address lock lets one host overwrite the other's evidence)."""
    hosts = [open_store(pg_url, 10.0), open_store(pg_url, 10.0)]
    start = threading.Barrier(10)

    def writer(host: Store, ns: range) -> None:
        start.wait()
        for n in ns:
            host.record(*bounce(n, "shared@example.org"))

    try:
        targets = [lambda h=hosts[w % 2], w=w: writer(h, range(w * 2, w * 2 + 2)) for w in range(10)]
        assert run_threads(targets) == []
    finally:
        for h in hosts:
            h.close()
    ids = {r[0] for r in query_rows(pg_url, "SELECT id FROM recipients WHERE address = 'shared@example.org'")}
    assert len(ids) == 20
    (row,) = query_rows(pg_url, "SELECT state, evidence FROM suppressions WHERE address = 'shared@example.org'")
    assert row["state"] == "suppressed"
    assert set(json.loads(row["evidence"])) == ids
    log = query_rows(pg_url, "SELECT action FROM suppression_log WHERE address = 'shared@example.org'")
    assert [r[0] for r in log] == ["suppress"]


def test_group_commit_of_a_batch_with_duplicates_and_a_key_another_host_has(pg_url: str) -> None:
    a, b = open_store(pg_url), open_store(pg_url)
    try:
        assert b.record(*bounce(3)) == (1, True)
        out = a.record_many([bounce(1), bounce(2), bounce(1), bounce(3)])
        assert [ins for _, ins in out] == [True, True, False, False]
        assert out[2][0] == out[0][0] and out[3][0] == 1
    finally:
        a.close()
        b.close()
    assert query_rows(pg_url, "SELECT COUNT(*) FROM messages")[0][0] == 3


def test_a_batch_sent_at_once_and_one_that_must_wait_give_the_same_rows(pg_url: str) -> None:
    """A batch of messages with no address and no key in common goes to the server at once (its reads before its
    writes); one whose messages share an address goes message by message. Both: every message once, a key
    another host stored is that host's row, and the second bounce for an address adds to its suppression."""
    a, b = open_store(pg_url), open_store(pg_url)
    try:
        mine = b.record(*bounce(5))
        out = a.record_many([bounce(4), bounce(5), bounce(6)])  # independent: sent at once
        assert [ins for _, ins in out] == [True, False, True] and out[1] == (mine[0], False)
        out = a.record_many([bounce(7, "same@example.org"), bounce(8, "same@example.org")])  # one address
        assert [ins for _, ins in out] == [True, True]
    finally:
        a.close()
        b.close()
    assert query_rows(pg_url, "SELECT COUNT(*) FROM messages")[0][0] == 5
    (row,) = query_rows(pg_url, "SELECT evidence FROM suppressions WHERE address = 'same@example.org'")
    ids = [r[0] for r in query_rows(pg_url, "SELECT id FROM recipients WHERE address = 'same@example.org'")]
    assert sorted(json.loads(row[0])) == sorted(ids) and len(ids) == 2
    log = query_rows(pg_url, "SELECT address FROM suppression_log WHERE action = 'suppress' ORDER BY address")
    assert [r[0] for r in log] == ["same@example.org"] + [f"user{n}@example.org" for n in (4, 5, 6)]


def test_the_feed_never_hands_out_a_cursor_past_a_change_still_in_flight(pg_url: str) -> None:
    """Hosts change the list side by side: A draws feed id N and has not committed when B commits N+1. B must not
    wait for A (the writers do not serialise), and a reader must not answer N+1 with cursor N+1 while N may
    still commit: it waits for A, then gets both, in order."""
    from bouncemilter import feed

    open_store(pg_url).close()
    insert = """INSERT INTO suppressions (address, domain, state, source, created_at, updated_at)
                VALUES (?, 'example.org', 'suppressed', 'manual', '2026-05-09T07:35:25Z', '2026-05-09T07:35:25Z')"""
    a, b, reader = (store_connect(pg_url, 10) for _ in range(3))
    got: list = []
    try:
        a.execute("BEGIN")  # as a milter's transaction: the shared side of the write lock
        a.execute(insert, ("first@example.org",))
        b.execute(insert, ("second@example.org",))  # commits at once (lock_timeout 10 s if it had to wait)
        t = threading.Thread(target=lambda: got.append(feed.changes(reader, 0)))
        t.start()
        t.join(0.5)  # time for a reader that does not wait to answer early (it would answer [second])
        a.execute("COMMIT")
        t.join(10)
        assert not t.is_alive()
    finally:
        for conn in (a, b, reader):
            conn.close()
    ((rows, cursor),) = got
    assert [r["address"] for r in rows] == ["first@example.org", "second@example.org"]
    assert cursor == rows[-1]["id"] > rows[0]["id"]


# ------------------------------------------------------------------------------------------------- the adapter


def test_statement_translation() -> None:
    assert (
        translate("SELECT a FROM t WHERE b = ? AND c LIKE '%?%'") == "SELECT a FROM t WHERE b = %s AND c LIKE '%%?%%'"
    )
    assert translate("BEGIN IMMEDIATE") == "BEGIN"
    assert translate("INSERT INTO sent (a) VALUES (?)").endswith("RETURNING id")
    assert not translate("INSERT INTO schema_version (version) VALUES (?)").endswith("RETURNING id")


def test_password_is_never_shown() -> None:
    assert redact("postgresql://milter:hunter2@db.example:5432/bm?sslmode=require") == (
        "postgresql://milter:***@db.example:5432/bm?sslmode=require"
    )
    assert redact("postgresql://milter@db.example/bm") == "postgresql://milter@db.example/bm"


def test_password_from_url_env_and_passfile(pg_server: PgServer, tmp_path: Path, monkeypatch) -> None:
    user, password = PASSWORD_ROLE
    base = f"postgresql://{user}@127.0.0.1:{pg_server.port}/bm"
    schema = f"pw{os.getpid()}"
    pg_server.sql(f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {user}", db="bm")
    opts = f"?options=-csearch_path%3D{schema}"
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    with pytest.raises(StoreError) as info:
        open_store(base + opts, 2.0)
    assert password not in str(info.value)
    open_store(f"postgresql://{user}:{password}@127.0.0.1:{pg_server.port}/bm{opts}", 2.0).close()
    monkeypatch.setenv("PGPASSWORD", password)
    open_store(base + opts, 2.0).close()
    monkeypatch.delenv("PGPASSWORD")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{pg_server.port}:bm:{user}:{password}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    s = open_store(base + opts, 2.0)
    try:
        assert s.record(*bounce(1)) == (1, True)
    finally:
        s.close()


# ------------------------------------------------------------------------------------------------------ faults


@pytest.fixture(scope="module")
def own_server():
    """A server of this module's own: these tests stop, restart and choke it."""
    server = PgServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def fault_url(own_server: PgServer) -> str:
    own_server.start() if not _up(own_server) else None
    return own_server.new_schema()


def _up(server: PgServer) -> bool:
    try:
        server.sql("SELECT 1")
        return True
    except Exception:
        return False


TIMEOUT = 1.0
SLACK = 3.0  # the bound under test is the store timeout; the slack absorbs a loaded machine


def _fails_within_timeout(store: Store, item: tuple) -> StoreError:
    t0 = time.monotonic()
    with pytest.raises(StoreError) as info:
        store.record(*item)
    assert time.monotonic() - t0 < TIMEOUT + SLACK
    return info.value


def test_server_down_then_back_stores_the_retry_exactly_once(own_server: PgServer, fault_url: str) -> None:
    store = open_store(fault_url, TIMEOUT)
    try:
        assert store.record(*bounce(1)) == (1, True)
        own_server.stop("fast")
        try:
            exc = _fails_within_timeout(store, bounce(2))
            assert "not stored" in str(exc) or "deadline" in str(exc)
            _fails_within_timeout(store, bounce(2))  # the MTA retries while the server is down
            # `check` tells the monitoring the store is unreachable
            res = CliRunner().invoke(main, ["check", "--db", fault_url, "--since", "1h", "--max-hard-rate", "50%"])
            assert res.exit_code == 2, res.output
            assert "CRITICAL" in res.output and "unreachable" in res.output
        finally:
            own_server.start()
        deadline = time.monotonic() + 20
        while True:  # reconnects by itself: no restart of the milter, the pool makes new connections
            try:
                result = store.record(*bounce(2))
                break
            except StoreError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert result[1] is True
        assert store.record(*bounce(2))[1] is False  # and a further retry is a duplicate
    finally:
        store.close()
    assert query_rows(fault_url, "SELECT COUNT(*) FROM messages")[0][0] == 2


def test_restart_and_connection_reset_are_survived(own_server: PgServer, fault_url: str) -> None:
    store = open_store(fault_url, 5.0)
    try:
        for n in range(4):  # several pooled connections
            store.record(*bounce(n))
        assert own_server.terminate_backends() >= 1  # a failover-like reset of every connection
        assert store.record(*bounce(10)) == (5, True)  # a broken connection is replaced within the deadline
        own_server.restart("immediate")  # a crash and recovery
        assert store.record(*bounce(11))[1] is True
        assert store.record(*bounce(11))[1] is False
    finally:
        store.close()
    assert query_rows(fault_url, "SELECT COUNT(*) FROM messages")[0][0] == 6


def test_statement_timeout_answers_within_the_store_timeout(own_server: PgServer, fault_url: str) -> None:
    store = open_store(fault_url, TIMEOUT)
    blocker = store_connect(fault_url, 30)
    try:
        store.record(*bounce(1))
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")  # e.g. a long migration or VACUUM FULL
        exc = _fails_within_timeout(store, bounce(2))
        assert "timeout" in str(exc).lower() or "cancel" in str(exc).lower()
        blocker.execute("ROLLBACK")
        assert store.record(*bounce(2))[1] is True
        assert store.record(*bounce(2))[1] is False
    finally:
        blocker.close()
        store.close()


def test_full_pool_answers_within_the_store_timeout(fault_url: str, monkeypatch) -> None:
    from bouncemilter.store.postgres import PgStore

    monkeypatch.setattr(PgStore, "POOL_SIZE", 1)
    store = open_store(fault_url, TIMEOUT)
    release = threading.Event()
    entered = threading.Event()

    def hold(*args) -> None:
        entered.set()
        release.wait(10)

    store.hooks.append(hold)
    t = threading.Thread(target=store.record, args=bounce(1))
    t.start()
    try:
        assert entered.wait(10)
        store.hooks.remove(hold)
        exc = _fails_within_timeout(store, bounce(2))
        assert "pool" in str(exc) or "deadline" in str(exc)
    finally:
        release.set()
        t.join(10)
    try:
        assert store.record(*bounce(2))[1] is True
    finally:
        store.close()
    assert query_rows(fault_url, "SELECT COUNT(*) FROM messages")[0][0] == 2
