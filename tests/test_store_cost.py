"""What issue #12's cuts in the SQLite writer must keep: the unique key decides a duplicate (no lookup before the
insert), and the per-client cap's count still has its index after migration 13 dropped the unused one."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
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
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn, [m for m in MIGRATIONS if m[0] <= 13])
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "idx_suppression_log_client" not in indexes
    assert {"idx_suppression_log_client_policy", "idx_suppression_log_address"} <= indexes
    conn.close()
    # version 15 counts per minute bucket, and drops the partial index that no query uses then
    open_store(str(db)).close()
    conn = sqlite3.connect(db)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "idx_suppression_log_client_policy" not in indexes and "idx_suppression_log_address" in indexes
    plan = " ".join(str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + Q.CLIENT_SUPPRESSIONS_SINCE, ("a", "b")))
    assert "client_suppressions USING PRIMARY KEY (client_addr=? AND minute>?)" in plan
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
    assert migrate(conn, [m for m in MIGRATIONS if m[0] <= 14]) == 14
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


# ------------------------------------------------------------------ migration 15: the per-client cap per minute


def _log_row(conn: sqlite3.Connection, at: str, action: str, source: str, client: str) -> None:
    conn.execute(
        "INSERT INTO suppression_log (address, at, action, source, client_addr) VALUES ('a@example.org', ?, ?, ?, ?)",
        (at, action, source, client),
    )


LOG_ROWS = [  # (at, action, source, client): what the count counts, and what it never did
    ("2026-05-09T06:34:59.999Z", "suppress", "policy", "192.0.2.1"),  # before the window
    ("2026-05-09T06:35:00.000Z", "suppress", "policy", "192.0.2.1"),  # its first minute
    ("2026-05-09T06:35:59.000Z", "suppress", "policy", "192.0.2.1"),
    ("2026-05-09T07:10:00.000Z", "suppress", "policy", "192.0.2.1"),
    ("2026-05-09T07:10:00.500Z", "suppress", "policy", "192.0.2.1"),
    ("2026-05-09T07:35:25.000Z", "suppress", "policy", "192.0.2.1"),
    ("2026-05-09T07:20:00.000Z", "suppress", "policy", "198.51.100.7"),  # another client
    ("2026-05-09T07:20:00.000Z", "hold", "policy", "192.0.2.1"),  # held: not a suppression
    ("2026-05-09T07:20:00.000Z", "approve", "manual", "192.0.2.1"),  # approved by hand
    ("2026-05-09T07:20:00.000Z", "suppress", "manual", "192.0.2.1"),
    ("2026-05-09T07:20:00.000Z", "suppress", "rebuild", "192.0.2.1"),
    ("2026-05-09T07:20:00.000Z", "suppress", "policy", ""),  # Postfix's own path, imports: no client
]


def _log_count(conn: sqlite3.Connection, client: str, start: str) -> int:
    return conn.execute(Q.PG_CLIENT_SUPPRESSIONS_SINCE, (client, start)).fetchone()[0]


def test_the_minute_buckets_count_what_the_log_rows_count(tmp_path: Path) -> None:
    """The trigger adds exactly the rows the count of the log counted (policy suppressions with a client), so the
    sum of the buckets is the log's count over the same window, for any window start and client."""
    db = tmp_path / "bounces.db"
    open_store(str(db)).close()
    conn = sqlite3.connect(db, isolation_level=None)
    for row in LOG_ROWS:
        _log_row(conn, *row)
    assert conn.execute("SELECT SUM(n) FROM client_suppressions").fetchone()[0] == 7
    for client in ("192.0.2.1", "198.51.100.7", "", "203.0.113.9"):
        for start in ("2026-05-09T06:34", "2026-05-09T06:35", "2026-05-09T06:36", "2026-05-09T07:10", "2026-05-09T08"):
            buckets = conn.execute(Q.CLIENT_SUPPRESSIONS_SINCE, (client, start)).fetchone()[0]
            assert buckets == (_log_count(conn, client, start) if client else 0), (client, start)
    assert conn.execute(Q.CLIENT_SUPPRESSIONS_SINCE, ("192.0.2.1", "2026-05-09T06:35")).fetchone()[0] == 5
    conn.close()


def test_migration_15_seeds_the_buckets_from_the_log_of_the_last_two_hours(tmp_path: Path) -> None:
    db = tmp_path / "bounces.db"
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn, [m for m in MIGRATIONS if m[0] < 15])
    now = datetime.now(UTC)
    recent = [fmt_time(now - timedelta(minutes=m)) for m in (1, 1, 30, 59)]
    for at in recent:
        _log_row(conn, at, "suppress", "policy", "192.0.2.1")
    _log_row(conn, fmt_time(now - timedelta(minutes=5)), "hold", "policy", "192.0.2.1")
    _log_row(conn, fmt_time(now - timedelta(hours=5)), "suppress", "policy", "192.0.2.1")  # long past: not seeded
    assert migrate(conn) == MIGRATIONS[-1][0]
    start = fmt_time(now - timedelta(hours=1))[:16]
    assert conn.execute(Q.CLIENT_SUPPRESSIONS_SINCE, ("192.0.2.1", start)).fetchone()[0] == 4
    assert conn.execute("SELECT COUNT(*) FROM client_suppressions").fetchone()[0] == 3  # 1 minute ago: one bucket
    # the trigger counts from now on
    _log_row(conn, fmt_time(now), "suppress", "policy", "192.0.2.1")
    assert conn.execute(Q.CLIENT_SUPPRESSIONS_SINCE, ("192.0.2.1", start)).fetchone()[0] == 5
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_prune_drops_the_buckets_past_two_hours(tmp_path: Path) -> None:
    from bouncemilter.maintenance import prune

    db = tmp_path / "bounces.db"
    open_store(str(db)).close()
    conn = sqlite3.connect(db, isolation_level=None)
    now = datetime.now(UTC)
    for minutes in (1, 61, 119, 121, 600):
        _log_row(conn, fmt_time(now - timedelta(minutes=minutes)), "suppress", "policy", "192.0.2.1")
    prune(str(db), 30, dry_run=True)
    assert conn.execute("SELECT COUNT(*) FROM client_suppressions").fetchone()[0] == 5  # a dry run deletes nothing
    prune(str(db), 30)
    assert conn.execute("SELECT COUNT(*) FROM client_suppressions").fetchone()[0] == 3
    assert conn.execute("SELECT COUNT(*) FROM suppression_log").fetchone()[0] == 5  # the log is not touched
    conn.close()


def test_the_cap_window_starts_at_the_minute_an_hour_before(db: Path | str) -> None:
    """Both engines count a client's suppressions from the start of the minute an hour before the policy's clock:
    two at 10:00:30 still count at 11:00:59, and no longer at 11:01:00 (documented in README, Limits)."""
    from bouncemilter.policy import Policy

    now = ["2026-05-09T10:00:30.000Z"]
    with open_store(str(db), policy=Policy(max_new_per_client_hour=2)) as store:
        store.suppressions.clock = lambda: now[0]
        meta = [make_meta(n, client_addr="203.0.113.9") for n in range(1, 5)]
        store.record(meta[0], hard_bounce("a@example.org"), "accept")
        store.record(meta[1], hard_bounce("b@example.org"), "accept")
        now[0] = "2026-05-09T11:00:59.999Z"  # more than an hour later, but the minute an hour before is 10:00
        store.record(meta[2], hard_bounce("c@example.org"), "accept")
        now[0] = "2026-05-09T11:01:00.000Z"
        store.record(meta[3], hard_bounce("d@example.org"), "accept")
    held = [r[0] for r in query_rows(db, "SELECT address FROM pending_suppressions")]
    done = sorted(r[0] for r in query_rows(db, "SELECT address FROM suppressions WHERE state = 'suppressed'"))
    assert held == ["c@example.org"]
    assert done == ["a@example.org", "b@example.org", "d@example.org"]


# ------------------------------------------------------------------ the policy hook's Python (issue #12)


@given(st.datetimes(min_value=datetime(100, 1, 1), timezones=st.just(UTC)), st.integers(0, 400))
@settings(max_examples=300, deadline=None)
def test_days_before_is_the_text_of_the_time_that_many_days_before(dt: datetime, days: int) -> None:
    from bouncemilter.policy import parse_time
    from bouncemilter.suppressions import days_before

    text = fmt_time(dt)
    assert days_before(text, days) == fmt_time(parse_time(text) - timedelta(days=days))


def test_a_time_read_from_the_store_is_written_back_as_its_text_and_nothing_else() -> None:
    from bouncemilter.policy import parse_time, time_text

    read = parse_time("2026-05-09T07:35:25.123Z")
    assert time_text(read) == "2026-05-09T07:35:25.123Z" == fmt_time(read)
    equal = datetime(2026, 5, 9, 7, 35, 25, 123000, tzinfo=UTC)
    assert equal == read and time_text(equal) is None  # only the object read from that text
    other = parse_time("2026-05-09T07:35:25Z")  # not the store's form: parsed, not remembered
    assert other == datetime(2026, 5, 9, 7, 35, 25, tzinfo=UTC) and time_text(other) is None
    for n in range(8):  # a few more reads later it is forgotten (and formatted when asked)
        parse_time(f"2026-05-09T07:35:2{n}.000Z")
    assert time_text(read) is None


def test_the_hook_decides_as_the_policy_does_with_its_verdicts(tmp_path: Path) -> None:
    """decide(explain=False), which the hook calls, gives the same decision as with the verdicts, on every kind of
    history the policy tests use (soft runs, resets, a manual unsuppression, complaints, sender reasons)."""
    from bouncemilter.policy import Event, Policy, decide

    t0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
    histories = [
        [Event(1, t0, "bounce", "userunknown", True)],
        [Event(i, t0 + timedelta(days=d), "bounce", "mailboxfull") for i, d in enumerate((0, 0.2, 2, 3, 12, 13, 14))],
        [Event(1, t0, "bounce", "blocked", True), Event(2, t0, "complaint", feedback_type="not-spam")],
        [Event(1, t0, "complaint", feedback_type="abuse"), Event(2, t0 + timedelta(days=1), "bounce", "x", True)],
        [Event(1, t0, "bounce", "userunknown", True, verified=False), Event(2, t0, "opt_out")],
        [Event(1, t0, "delay"), Event(2, t0 + timedelta(days=40), "bounce", "mailboxfull")],
        # one event alone (the hook's short way when nothing was unsuppressed by hand)
        [Event(7, t0, "complaint", feedback_type="abuse")],
        [Event(7, t0, "complaint", feedback_type="not-spam")],
        [Event(7, t0, "opt_out", reason="list-unsubscribe")],
        [Event(7, t0, "bounce", "userunknown", True, verified=False)],
        [Event(7, t0, "bounce", "blocked", True)],
        [Event(7, t0, "bounce", "mailboxfull")],
        [Event(7, t0, "delivered")],
    ]
    for events in histories:
        for after in (None, t0 + timedelta(hours=1), t0 - timedelta(hours=1)):
            for policy in (Policy(), Policy(complaints=False, soft_threshold=1)):
                full = decide(events, policy, t0 + timedelta(days=20), after)
                quick = decide(events, policy, t0 + timedelta(days=20), after, explain=False)
                assert quick.verdicts == [] and full.verdicts
                full.verdicts = []
                assert quick == full


def test_a_new_store_has_2048_byte_pages_and_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    from bouncemilter.store.core import PAGE_SIZE

    new = tmp_path / "new.db"
    with open_store(str(new)) as store:
        store.record(make_meta(1), hard_bounce("alice@example.org"), "accept")
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old, isolation_level=None)
    conn.execute("PRAGMA page_size=4096")
    migrate(conn, [m for m in MIGRATIONS if m[0] < 15])  # a store of the version before, 4 KiB pages
    conn.close()
    with open_store(str(old)) as store:
        store.record(make_meta(1), hard_bounce("alice@example.org"), "accept")
    for path, size in ((new, PAGE_SIZE), (old, 4096)):
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA page_size").fetchone()[0] == size
        assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == MIGRATIONS[-1][0]
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert not indexes & {"idx_suppression_changes_address", "idx_messages_kind_received_at"}
        assert "idx_suppression_log_client_policy" not in indexes
        assert conn.execute("SELECT SUM(n) FROM client_suppressions").fetchone()[0] == 1  # the upgraded one counts
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT COUNT(*) FROM suppression_list").fetchone()[0] == 1
        conn.close()
    assert PAGE_SIZE == 2048


def test_migration_16_drops_the_two_indexes_no_query_needs(db: Path | str) -> None:
    open_store(str(db)).close()
    if isinstance(db, str):
        names = {r[0] for r in query_rows(db, "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}
    else:
        names = {r[0] for r in query_rows(db, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "idx_suppression_changes_address" not in names and "idx_messages_kind_received_at" not in names
    assert {"idx_messages_received_at", "idx_messages_queue_id", "idx_messages_message_id"} <= names
    if not isinstance(db, str):  # a report by kind over a window reads the window by time
        plan = " ".join(str(r[-1]) for r in query_rows(db, "EXPLAIN QUERY PLAN " + Q.stats_by_message("m.kind", True),
                                                      ("a", "b", "a", "b")))  # fmt: skip
        assert "idx_messages_received_at" in plan


def test_a_row_is_capped_as_before_whichever_way_it_is_checked() -> None:
    """_capped_row takes a short cut when the row's texts together fit the cap; what it returns is _capped's."""
    from operator import itemgetter

    from bouncemilter.store.core import FIELD_CAP, _capped, _capped_row

    texts = itemgetter(0, 1, 3)
    rows = [
        ("a", "b", 5, "c"),  # short
        ("x" * (FIELD_CAP - 1), "y" * (FIELD_CAP - 1), 5, "z"),  # together over the cap, each under it
        ("x" * (FIELD_CAP + 1), "", 5, "z" * (FIELD_CAP * 3)),  # over it
        ("x" * (FIELD_CAP + 1), None, 5.0, ""),  # a text column holding None
        (None, None, None, None),
    ]
    for row in rows:
        assert _capped_row(row, texts) == _capped(*row)
    assert [len(v) for v in _capped_row(rows[2], texts)[::3]] == [FIELD_CAP, FIELD_CAP]


def _policy_read_steps(db: Path, address: str) -> tuple[int, list]:
    """SQLite VM instructions (in steps of 10, counted by a progress handler) of the policy's read for `address`."""
    conn = sqlite3.connect(str(db))
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    conn.set_progress_handler(tick, 10)
    try:
        stamp = fmt_time(datetime.now(UTC))
        start = fmt_time(datetime.now(UTC) - timedelta(days=8))
        rows = conn.execute(Q.POLICY_READS, ("192.0.2.10", stamp[:16], address, address, address, start)).fetchall()
    finally:
        conn.close()
    return steps[0], rows


def test_a_suppressed_address_bouncing_again_and_again_costs_the_same_each_time(tmp_path: Path) -> None:
    # A sender that keeps mailing a dead address: each bounce only adds evidence. The policy's read must not bring
    # back (or walk) the address's whole history each time: it did, and a record went 0.6 -> 6.4 ms over 4,000.
    db = tmp_path / "bounces.db"
    with open_store(str(db)) as store:
        for n in range(1, 21):
            store.record(make_meta(n), hard_bounce("dead@example.org"), "accept")
        few, rows = _policy_read_steps(db, "dead@example.org")
        assert rows == []  # suppressed: no history comes back
        for n in range(21, 321):
            store.record(make_meta(n), hard_bounce("dead@example.org"), "accept")
        many, rows = _policy_read_steps(db, "dead@example.org")
        assert rows == []
        assert query_rows(db, "SELECT state FROM suppressions")[0][0] == "suppressed"
    assert query_rows(db, "SELECT COUNT(*) FROM recipients WHERE address = 'dead@example.org'")[0][0] == 320
    assert many <= few + 2, (few, many)  # 300 more rows of history, the same work


def test_postgres_policy_reads_bring_no_history_of_a_suppressed_address(pg_url: str) -> None:
    with open_store(pg_url) as store:
        for n in range(1, 6):
            store.record(make_meta(n), hard_bounce("dead@example.org"), "accept")
    from bouncemilter.store import connect

    conn = connect(pg_url)
    try:
        since = fmt_time(datetime.now(UTC) - timedelta(days=8))
        found = conn.execute(Q.PG_POLICY_READS, (["dead@example.org"], since, "", since)).fetchone()[0]
    finally:
        conn.close()
    if isinstance(found, str):
        import json

        found = json.loads(found)
    state, _manual, held, events = found[1][0]
    assert (state, held, events) == ("suppressed", False, [])
