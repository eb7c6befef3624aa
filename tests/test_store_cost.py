"""What issue #12's cuts in the SQLite writer must keep: the unique key decides a duplicate (no lookup before the
insert), and the per-client cap's count still has its index after migration 13 dropped the unused one."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bouncemilter.store import sql as Q
from bouncemilter.store.core import MIGRATIONS, PG_MIGRATIONS, fmt_time, migrate
from bouncemilter.suppressions import open_store

from .conftest import make_meta, query_rows
from .test_store import hard_bounce


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return tmp_path / "bounces.db"


def test_a_duplicate_in_a_batch_and_a_retry_are_stored_once_with_one_suppression(db: Path | str) -> None:
    with open_store(str(db)) as store:
        items = [
            (make_meta(1), hard_bounce("alice@example.org"), "accept"),
            (make_meta(2), hard_bounce("bob@example.org"), "accept"),
            (make_meta(1), hard_bounce("alice@example.org"), "accept"),  # the same message again in the batch
        ]
        out = store.record_many(items)
        assert [inserted for _, inserted in out] == [True, True, False]
        assert out[2][0] == out[0][0]
        assert store.record(make_meta(2), hard_bounce("bob@example.org"), "accept") == (out[1][0], False)
    assert query_rows(db, "SELECT COUNT(*) FROM messages")[0][0] == 2
    assert query_rows(db, "SELECT COUNT(*) FROM recipients")[0][0] == 2
    # the policy ran once per stored message: one suppression and one log line per address
    log = query_rows(db, "SELECT address, action FROM suppression_log ORDER BY address")
    assert [tuple(r) for r in log] == [("alice@example.org", "suppress"), ("bob@example.org", "suppress")]


def test_migration_13_drops_only_the_unused_client_index(tmp_path: Path) -> None:
    db = tmp_path / "bounces.db"
    open_store(str(db)).close()
    conn = sqlite3.connect(db)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "idx_suppression_log_client" not in indexes
    assert {"idx_suppression_log_client_policy", "idx_suppression_log_address"} <= indexes
    plan = " ".join(str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + Q.CLIENT_SUPPRESSIONS_SINCE, ("a", "b")))
    assert "COVERING INDEX idx_suppression_log_client_policy" in plan  # the count never reads a table row
    conn.close()
    # PostgreSQL's list has the version too (a no-op there), so both engines report the same schema version
    assert MIGRATIONS[-1][0] == PG_MIGRATIONS[-1][0] >= 13


def _check_sql(conn: sqlite3.Connection, table: str) -> str:
    return conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()[0]


def test_migration_14_checks_as_comparisons_accept_and_refuse_the_same(tmp_path: Path) -> None:
    db = tmp_path / "bounces.db"
    open_store(str(db)).close()
    conn = sqlite3.connect(db, isolation_level=None)
    assert "source = 'opt-out'" in _check_sql(conn, "suppressions")
    assert "op = 'update'" in _check_sql(conn, "suppression_changes")
    row = "INSERT INTO suppressions (address, state, source, created_at, updated_at) VALUES (?, ?, ?, 'x', 'x')"
    for source in ("policy", "manual", "opt-out"):
        conn.execute(row, (f"{source}@example.org", "suppressed", source))
    for state, source in (("suppressed", "import"), ("suppressed", "Policy"), ("gone", "manual")):
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute(row, ("bad@example.org", state, source))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        conn.execute("INSERT INTO suppression_changes (at, address, op) VALUES ('x', 'a@example.org', 'delete')")
    # the feed's triggers still write: three additions
    assert [r[0] for r in conn.execute("SELECT op FROM suppression_changes")] == ["add"] * 3
    conn.close()


def test_migration_14_keeps_rows_indexes_triggers_views_and_the_feed_cursor(tmp_path: Path) -> None:
    db = tmp_path / "bounces.db"
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn, [m for m in MIGRATIONS if m[0] < 14])
    row = """INSERT INTO suppressions (address, state, source, created_at, updated_at)
        VALUES (?, 'suppressed', ?, 'x', 'x')"""
    for i in range(5):
        conn.execute(row, (f"u{i}@example.org", "policy"))
    conn.execute("DELETE FROM suppression_changes WHERE id = 5")  # pruned: the cursor 5 was given all the same
    before = {
        t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in ("suppressions", "suppression_changes")
    }
    schema = sorted(conn.execute("SELECT type, name FROM sqlite_master WHERE type IN ('index', 'trigger', 'view')"))
    assert "IN ('policy', 'manual', 'opt-out')" in _check_sql(conn, "suppressions")
    assert migrate(conn) == MIGRATIONS[-1][0]
    assert {t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in before} == before
    assert (
        sorted(conn.execute("SELECT type, name FROM sqlite_master WHERE type IN ('index', 'trigger', 'view')"))
        == schema
    )
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.execute(row, ("new@example.org", "manual"))
    assert conn.execute("SELECT MAX(id) FROM suppression_changes").fetchone()[0] == 6  # never 5 again
    assert conn.execute("SELECT COUNT(*) FROM suppression_list").fetchone()[0] == 6  # the views work
    conn.close()


@given(st.datetimes(timezones=st.none() | st.just(UTC) | st.timezones()))
@settings(max_examples=500, deadline=None)
def test_fmt_time_is_isoformat_in_milliseconds_utc(dt: datetime) -> None:
    """fmt_time builds its text from tables (issue #12); it must be what isoformat gives, to the letter: the store
    compares these texts as times."""
    try:
        utc = dt.astimezone(UTC).replace(tzinfo=None) if dt.tzinfo is not None else dt
    except OverflowError:
        return  # out of datetime's range in UTC: fmt_time raises as isoformat's way there did
    expected = utc.isoformat(timespec="milliseconds") + "Z"
    assert fmt_time(dt) == expected
