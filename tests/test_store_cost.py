"""What issue #12's cuts in the SQLite writer must keep: the unique key decides a duplicate (no lookup before the
insert), and the per-client cap's count still has its index after migration 13 dropped the unused one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bouncemilter.store import sql as Q
from bouncemilter.store.core import MIGRATIONS, PG_MIGRATIONS
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
