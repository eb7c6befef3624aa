"""The SQLite store against real database files: durability, idempotency, faults, concurrency, migrations."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bouncemilter.classify.model import Classification, Feedback, OriginalMessage, RecipientResult
from bouncemilter.store import MIGRATIONS, Store, StoreError, current_version, dedup_key, migrate
from bouncemilter.store import connect as store_connect
from bouncemilter.suppressions import open_store

from .conftest import make_meta, query_rows

IS_ROOT = os.geteuid() == 0


meta = make_meta


def hard_bounce(addr: str = "alice@example.org") -> Classification:
    return Classification(
        kind="bounce",
        recipients=[
            RecipientResult(
                recipient=addr,
                action="failed",
                status="5.1.1",
                reply_code="550",
                diagnostic="550 5.1.1 <alice@example.org>: User unknown",
                remote_mta="mx.example.org",
                reason="userunknown",
                hard=True,
            )
        ],
        detector="rfc3464",
        evidence="Content-Type: multipart/report; report-type=delivery-status",
        original=OriginalMessage(message_id="<news-1@example.com>", subject="November news"),
    )


rows = query_rows


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Each test runs on a SQLite file and on PostgreSQL, except those marked sqlite_only (files, locks, WAL)."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return tmp_path / "data" / "bounces.db"


def _mkdir(db: Path | str) -> None:
    if isinstance(db, Path):
        db.parent.mkdir()


@pytest.fixture
def store(db: Path | str):
    _mkdir(db)
    s = open_store(str(db), timeout=0.5)
    yield s
    s.close()


def chattr(flag: str, path: Path) -> None:
    subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True)


@pytest.mark.sqlite_only
def test_schema_created_in_wal_mode(store: Store, db: Path) -> None:
    assert rows(db, "PRAGMA journal_mode")[0][0] == "wal"
    tables = {r[0] for r in rows(db, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"messages", "recipients", "schema_version"} <= tables
    indexes = {r[0] for r in rows(db, "SELECT name FROM sqlite_master WHERE type='index'")}
    for wanted in (
        "idx_recipients_address",
        "idx_recipients_received_at",
        "idx_recipients_reason",
        "idx_recipients_domain",
        "idx_messages_received_at",
    ):
        assert wanted in indexes
    assert rows(db, "SELECT MAX(version) FROM schema_version")[0][0] == MIGRATIONS[-1][0]


def test_record_writes_message_and_recipients(store: Store, db: Path) -> None:
    row_id, inserted = store.record(meta(), hard_bounce(), "accept")
    assert inserted and row_id == 1
    msg = rows(db, "SELECT * FROM messages")[0]
    assert msg["queue_id"] == "4Q00001"
    assert msg["kind"] == "bounce" and msg["detector"] == "rfc3464" and msg["action"] == "accept"
    assert json.loads(msg["bounce_addresses"]) == ["bounces@example.com"]
    assert msg["original_message_id"] == "<news-1@example.com>"
    assert msg["original_subject"] == "November news"
    assert msg["recipient_count"] == 1
    assert msg["received_at"].endswith("Z") and "T" in msg["received_at"]
    rcpt = rows(db, "SELECT * FROM recipients")[0]
    assert rcpt["message_id"] == row_id
    assert rcpt["address"] == rcpt["reported_address"] == "alice@example.org"
    assert rcpt["verp_address"] == ""
    assert rcpt["domain"] == "example.org"
    assert (rcpt["status"], rcpt["reply_code"], rcpt["reason"], rcpt["hard"]) == ("5.1.1", "550", "userunknown", 1)
    assert rcpt["remote_mta"] == "mx.example.org"
    assert rcpt["original_message_id"] == "<news-1@example.com>"
    assert rcpt["kind"] == "bounce"
    assert rcpt["received_at"] == msg["received_at"]


def test_received_at_kept_when_given(store: Store, db: Path) -> None:
    store.record(meta(received_at="2026-01-02T03:04:05.000Z"), hard_bounce(), "accept")
    assert rows(db, "SELECT received_at FROM messages")[0][0] == "2026-01-02T03:04:05.000Z"


def test_verp_address_used_when_report_names_nobody(store: Store, db: Path) -> None:
    result = Classification(kind="bounce", detector="generic", evidence="Subject: failure notice")
    m = meta(bounce_addresses=["bounces+bob=example.org@example.com"], verp_recipients=["bob@example.org"])
    store.record(m, result, "accept")
    rcpt = rows(db, "SELECT address, reported_address, verp_address, domain FROM recipients")
    assert [tuple(r) for r in rcpt] == [("bob@example.org", "", "bob@example.org", "example.org")]


def test_verp_address_names_the_subscriber_when_report_differs(store: Store, db: Path) -> None:
    # the subscriber forwards to another mailbox: the bounce names the forwarding target
    m = meta(bounce_addresses=["bounces+bob=example.org@example.com"], verp_recipients=["bob@example.org"])
    store.record(m, hard_bounce("bob@forward.example.net"), "accept")
    rcpt = rows(db, "SELECT address, reported_address, verp_address, domain FROM recipients")[0]
    assert tuple(rcpt) == ("bob@example.org", "bob@forward.example.net", "bob@example.org", "example.org")


def test_original_recipient_names_the_subscriber_when_an_alias_failed(store: Store, db: Path) -> None:
    # the sender mailed neko@; an alias turned it into postmaster@, which failed: the sender's address is the row's
    # (and the suppression's) address, the report's final one is kept as reported
    result = hard_bounce("postmaster@example.org")
    result.recipients[0].original_recipient = "neko@example.org"
    store.record(meta(), result, "accept")
    rcpt = rows(db, "SELECT address, reported_address, verp_address, domain FROM recipients")[0]
    assert tuple(rcpt) == ("neko@example.org", "postmaster@example.org", "", "example.org")
    assert [r[0] for r in rows(db, "SELECT address FROM suppressions WHERE state = 'suppressed'")] == [
        "neko@example.org"
    ]


def test_verp_address_wins_over_the_original_recipient(store: Store, db: Path) -> None:
    result = hard_bounce("postmaster@example.org")
    result.recipients[0].original_recipient = "neko@example.org"
    m = meta(bounce_addresses=["bounces+bob=example.org@example.com"], verp_recipients=["bob@example.org"])
    store.record(m, result, "accept")
    rcpt = rows(db, "SELECT address, reported_address, verp_address FROM recipients")[0]
    assert tuple(rcpt) == ("bob@example.org", "postmaster@example.org", "bob@example.org")


def test_recipient_without_address_gets_verp(store: Store, db: Path) -> None:
    m = meta(bounce_addresses=["bounces+bob=example.org@example.com"], verp_recipients=["Bob@Example.org"])
    store.record(m, hard_bounce(""), "accept")
    assert rows(db, "SELECT address, reported_address FROM recipients")[0][:] == ("bob@example.org", "")


def test_complaint_and_auto_reply_fields(store: Store, db: Path) -> None:
    complaint = Classification(
        kind="complaint",
        recipients=[RecipientResult(recipient="carol@example.org", reason="feedback")],
        detector="arf",
        feedback=Feedback(feedback_type="abuse", user_agent="FBL/1.0", source_ip="192.0.2.1"),
    )
    store.record(meta(1), complaint, "accept")
    auto = Classification(kind="auto_reply", detector="autoreply", autoreply_markers=["Auto-Submitted: auto-replied"])
    store.record(meta(2), auto, "discard")
    msgs = rows(
        db,
        "SELECT kind, feedback_type, feedback_user_agent, feedback_source_ip, autoreply_markers, action "
        "FROM messages ORDER BY id",
    )
    assert tuple(msgs[0]) == ("complaint", "abuse", "FBL/1.0", "192.0.2.1", "[]", "accept")
    assert msgs[1]["kind"] == "auto_reply" and json.loads(msgs[1]["autoreply_markers"]) == [
        "Auto-Submitted: auto-replied"
    ]
    assert msgs[1]["action"] == "discard"


def test_classifier_error_recorded(store: Store, db: Path) -> None:
    failed = Classification(kind="not_bounce", error="RecursionError: too deep")
    store.record(meta(), failed, "accept")
    assert rows(db, "SELECT kind, error, recipient_count FROM messages")[0][:] == (
        "not_bounce",
        "RecursionError: too deep",
        0,
    )


# ------------------------------------------------------------------------------------------------ idempotency


def test_redelivery_is_stored_once(store: Store, db: Path) -> None:
    first = store.record(meta(), hard_bounce(), "accept")
    again = store.record(meta(), hard_bounce(), "accept")
    assert first == (1, True)
    assert again == (1, False)
    assert rows(db, "SELECT COUNT(*) FROM messages")[0][0] == 1
    assert rows(db, "SELECT COUNT(*) FROM recipients")[0][0] == 1


def test_redelivery_with_a_new_queue_id_is_stored_once(store: Store, db: Path) -> None:
    # Postfix assigns a fresh queue id to every SMTP session, so a retry after TEMPFAIL has a new one
    store.record(meta(queue_id="4QAAAA"), hard_bounce(), "accept")
    assert store.record(meta(queue_id="4QBBBB"), hard_bounce(), "accept") == (1, False)
    assert rows(db, "SELECT COUNT(*) FROM messages")[0][0] == 1


def test_distinct_messages_are_distinct(store: Store, db: Path) -> None:
    assert store.record(meta(1), hard_bounce(), "accept") == (1, True)
    assert store.record(meta(2), hard_bounce(), "accept") == (2, True)
    # the same Message-ID to another bounce address is another delivery
    assert store.record(meta(1, bounce_addresses=["other@example.com"]), hard_bounce(), "accept")[1]


def test_without_message_id_queue_id_and_digest_decide(store: Store, db: Path) -> None:
    assert store.record(meta(1, message_id=""), hard_bounce(), "accept")[1]
    assert not store.record(meta(1, message_id=""), hard_bounce(), "accept")[1]
    assert store.record(meta(1, message_id="", digest="abc"), hard_bounce(), "accept")[1]
    # a retry has another queue id but the same content
    assert not store.record(meta(9, message_id="", digest="abc"), hard_bounce(), "accept")[1]
    assert store.record(meta(9, message_id="", digest="abd"), hard_bounce(), "accept")[1]
    # nothing identifies the message: never merged
    assert store.record(meta(1, message_id="", queue_id=""), hard_bounce(), "accept")[1]
    assert store.record(meta(1, message_id="", queue_id=""), hard_bounce(), "accept")[1]
    assert dedup_key(meta(1, message_id="", queue_id="")) is None


def test_idempotent_across_store_instances(db: Path) -> None:
    _mkdir(db)
    with open_store(str(db)) as a, open_store(str(db)) as b:
        assert a.record(meta(), hard_bounce(), "accept")[1]
        assert b.record(meta(), hard_bounce(), "accept") == (1, False)


# ------------------------------------------------------------------------------------------------ faults


@pytest.mark.sqlite_only
def test_locked_database_raises_then_retry_stores_once(store: Store, db: Path) -> None:
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()
    with pytest.raises(StoreError):
        store.record(meta(), hard_bounce(), "accept")
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 3.0  # waited about the timeout, not forever
    blocker.execute("ROLLBACK")
    blocker.close()
    assert store.record(meta(), hard_bounce(), "accept") == (1, True)
    assert store.record(meta(), hard_bounce(), "accept") == (1, False)
    assert rows(db, "SELECT COUNT(*) FROM messages")[0][0] == 1
    assert rows(db, "SELECT COUNT(*) FROM recipients")[0][0] == 1


@pytest.mark.sqlite_only
def test_lock_released_within_timeout_is_waited_for(db: Path) -> None:
    _mkdir(db)
    with open_store(str(db), timeout=5.0) as store:
        blocker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN EXCLUSIVE")
        timer = threading.Timer(0.3, lambda: blocker.execute("ROLLBACK"))
        timer.start()
        assert store.record(meta(), hard_bounce(), "accept") == (1, True)
        timer.join()
        blocker.close()


@pytest.mark.sqlite_only
def test_directory_removed_raises_then_repaired_directory_stores(store: Store, db: Path) -> None:
    store.record(meta(1), hard_bounce(), "accept")
    shutil.rmtree(db.parent)
    with pytest.raises(StoreError):
        store.record(meta(2), hard_bounce(), "accept")
    with pytest.raises(StoreError):  # still gone: still an error, never a silent write into the unlinked file
        store.record(meta(2), hard_bounce(), "accept")
    db.parent.mkdir()  # the admin repairs it
    assert store.record(meta(2), hard_bounce(), "accept") == (1, True)  # a fresh database
    assert store.record(meta(2), hard_bounce(), "accept") == (1, False)
    assert rows(db, "SELECT COUNT(*) FROM messages")[0][0] == 1


@pytest.mark.sqlite_only
def test_database_file_replaced_is_reopened(store: Store, db: Path) -> None:
    store.record(meta(1), hard_bounce(), "accept")
    moved = db.parent / "old.db"
    db.rename(moved)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(str(db) + suffix).rename(str(moved) + suffix)
    assert store.record(meta(2), hard_bounce(), "accept") == (1, True)  # written to the new file at the path
    assert rows(db, "SELECT message_id FROM messages")[0][0] == "<dsn-2@mx.example.net>"


def test_new_store_in_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        open_store(str(tmp_path / "nope" / "x.db"))


@pytest.mark.sqlite_only
@pytest.mark.skipif(not shutil.which("chattr") or not IS_ROOT, reason="needs chattr as root")
def test_immutable_database_file_raises_then_stores_once(store: Store, db: Path) -> None:
    store.record(meta(1), hard_bounce(), "accept")
    try:
        chattr("+i", db)
    except subprocess.CalledProcessError:
        pytest.skip("filesystem does not support chattr +i")
    try:
        with pytest.raises(StoreError, match="read-only"):
            store.record(meta(2), hard_bounce(), "accept")
    finally:
        chattr("-i", db)
    assert store.record(meta(2), hard_bounce(), "accept") == (2, True)
    assert store.record(meta(2), hard_bounce(), "accept") == (2, False)


@pytest.mark.skipif(not shutil.which("chattr") or not IS_ROOT, reason="needs chattr as root")
def test_read_only_directory_new_store_raises(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    try:
        chattr("+i", d)
    except subprocess.CalledProcessError:
        pytest.skip("filesystem does not support chattr +i")
    try:
        with pytest.raises(StoreError):
            open_store(str(d / "x.db"))
    finally:
        chattr("-i", d)


@pytest.mark.sqlite_only
@pytest.mark.skipif(IS_ROOT, reason="root ignores file modes")
def test_read_only_file_mode_raises(store: Store, db: Path) -> None:
    store.record(meta(1), hard_bounce(), "accept")
    db.chmod(0o444)
    try:
        with pytest.raises(StoreError):
            store.record(meta(2), hard_bounce(), "accept")
    finally:
        db.chmod(0o644)
    assert store.record(meta(2), hard_bounce(), "accept")[1]


@pytest.mark.sqlite_only
def test_disk_full_raises_and_rolls_back(store: Store, db: Path) -> None:
    # SQLITE_FULL as a disk-full file system reports it; the message must not be half-written
    store.record(meta(1), hard_bounce(), "accept")
    pages = rows(db, "PRAGMA page_count")[0][0]
    assert store._conn is not None
    store._conn.execute(f"PRAGMA max_page_count={pages}")
    big = hard_bounce()
    big.recipients[0].diagnostic = "x" * 200_000
    with pytest.raises(StoreError):
        store.record(meta(2), big, "accept")
    assert rows(db, "SELECT COUNT(*) FROM messages")[0][0] == 1
    assert rows(db, "SELECT COUNT(*) FROM recipients")[0][0] == 1
    assert store.record(meta(2), big, "accept") == (2, True)  # reconnected without the limit: stored


@pytest.mark.skipif(not IS_ROOT, reason="needs mount (root)")
def test_real_full_file_system(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        store = open_store(str(mnt / "x.db"), timeout=0.5)
        filler = mnt / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
        big = hard_bounce()
        big.recipients[0].diagnostic = "y" * 100_000
        with pytest.raises(StoreError):
            for n in range(1, 50):
                store.record(meta(n), big, "accept")
        filler.unlink()
        ok = store.record(meta(100), big, "accept")
        assert ok[1]
        assert store.record(meta(100), big, "accept") == (ok[0], False)
        store.close()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.sqlite_only
def test_newer_schema_refused(db: Path) -> None:
    _mkdir(db)
    open_store(str(db)).close()
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO schema_version VALUES (999, 'future')")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        open_store(str(db))


# ------------------------------------------------------------------------------------------------ migrations


@pytest.mark.sqlite_only
def test_migrates_an_empty_file(db: Path) -> None:
    _mkdir(db)
    db.write_bytes(b"")
    with open_store(str(db)) as store:
        assert store.record(meta(), hard_bounce(), "accept")[1]
    assert rows(db, "SELECT MAX(version) FROM schema_version")[0][0] == MIGRATIONS[-1][0]


@pytest.mark.sqlite_only
def test_later_migration_applied_once(db: Path) -> None:
    _mkdir(db)
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn, MIGRATIONS[:1])
    extra = [*MIGRATIONS[:1], (2, ["CREATE TABLE later (address TEXT PRIMARY KEY, reason TEXT)"])]
    assert current_version(conn) == 1
    assert migrate(conn, extra) == 2
    assert migrate(conn, extra) == 2  # idempotent
    assert [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")] == [1, 2]
    conn.close()


@pytest.mark.sqlite_only
def test_callable_migration_rolls_back_on_failure(db: Path) -> None:
    _mkdir(db)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x)")
        raise RuntimeError("boom")

    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn, MIGRATIONS[:1])
    with pytest.raises(RuntimeError):
        migrate(conn, [*MIGRATIONS[:1], (2, broken)])
    assert current_version(conn) == 1
    assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name='half'").fetchone()[0] == 0
    conn.close()


@pytest.mark.sqlite_only
@pytest.mark.parametrize("version", [6, 7])
def test_an_older_database_upgrades_to_signed_return_paths(db: Path, version: int) -> None:
    # migrations 4-6 (look-alike flags, caps, the content-aware key) and 7 (reason_rule) came before signing's
    # columns (8)
    _mkdir(db)
    conn = sqlite3.connect(db, isolation_level=None)
    assert [v for v, _ in MIGRATIONS[:version]] == list(range(1, version + 1))
    migrate(conn, MIGRATIONS[:version])
    conn.execute(
        """INSERT INTO messages (received_at, kind, bounce_addresses, recipient_count, recipients_dropped, dedup_key)
           VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'bounce', '["bounces@example.com"]', 1, 7, 'old-key')"""
    )
    conn.execute(
        """INSERT INTO recipients (message_id, received_at, kind, address, domain, reason, hard, flags)
           VALUES (1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'bounce', 'old@example.org', 'example.org',
                   'userunknown', 1, 'lookalike')"""
    )
    conn.close()
    with open_store(str(db)) as store:
        assert store.record(meta(), hard_bounce(), "accept")[1]
    assert rows(db, "SELECT MAX(version) FROM schema_version")[0][0] == MIGRATIONS[-1][0] >= 8  # 9: opt-outs (#11)
    # the old row was not checked (NULL: counts as it always did) and keeps what 4-6 gave it
    (old,) = rows(db, "SELECT verified, note, flags FROM recipients WHERE address = 'old@example.org'")
    assert (old["verified"], old["note"], old["flags"]) == (None, "", "lookalike")
    # the re-created views have both sides' columns
    (view,) = rows(
        db, "SELECT verified, note, flags, reason_rule FROM recent_bounces WHERE address = 'old@example.org'"
    )
    assert view["flags"] == "lookalike" and view["verified"] is None and view["reason_rule"] is None
    (new,) = rows(db, "SELECT reason_rule, verified FROM recent_bounces WHERE address = 'alice@example.org'")
    assert new["verified"] is None  # recorded without a verifier: not checked
    day = rows(db, "SELECT SUM(recipients_dropped) AS dropped, SUM(unverified) AS unverified FROM daily_counts")
    assert (day[0]["dropped"], day[0]["unverified"]) == (7, None)  # no row was checked
    assert rows(db, "SELECT hard, unverified FROM domain_rates WHERE domain = 'example.org'")[0]["hard"] == 2
    assert rows(db, "SELECT COUNT(*) AS n FROM sent")[0]["n"] == 0
    assert rows(db, "SELECT COUNT(*) AS n FROM pending_suppressions")[0]["n"] == 0


def test_hook_runs_in_the_same_transaction(store: Store, db: Path) -> None:
    seen: list[int] = []

    def hook(conn, msg_id, m, result, action) -> None:
        seen.append(msg_id)
        raise sqlite3.OperationalError("policy table broken")

    store.hooks.append(hook)
    with pytest.raises(StoreError):
        store.record(meta(), hard_bounce(), "accept")
    assert seen == [1]
    assert rows(db, "SELECT COUNT(*) FROM messages")[0][0] == 0  # rolled back with the hook
    store.hooks.clear()
    assert store.record(meta(), hard_bounce(), "accept")[1]


# ------------------------------------------------------------------------------------------------ concurrency


def test_concurrent_writers_and_readers(store: Store, db: Path) -> None:
    writers, per_writer = 8, 40
    # what is tested is that no write is lost or half seen, not how fast 8 writers get through one lock: the
    # fixture's 0.5 s deadline was missed on a loaded machine (7 writers ahead, each with its fsync)
    store.timeout = 30.0
    errors: list[BaseException] = []
    stop = threading.Event()
    reads = [0]

    def write(w: int) -> None:
        try:
            for i in range(per_writer):
                n = w * 1000 + i
                store.record(meta(n), hard_bounce(f"user{n}@example.org"), "accept")
                store.record(meta(n), hard_bounce(f"user{n}@example.org"), "accept")  # a duplicate each time
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        # a reader (sqlite3 CLI, Datasette) must never be blocked or see a half-written message
        conn = store_connect(str(db), 0.2)
        try:
            while not stop.is_set():
                m, r = conn.execute(
                    "SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM recipients)"
                ).fetchone()
                assert m == r
                reads[0] += 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            conn.close()

    readers = [threading.Thread(target=read) for _ in range(2)]
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in readers + threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors
    assert reads[0] > 0
    assert rows(db, "SELECT COUNT(*) FROM messages")[0][0] == writers * per_writer
    assert rows(db, "SELECT COUNT(DISTINCT address) FROM recipients")[0][0] == writers * per_writer


@pytest.mark.sqlite_only
def test_reader_in_another_process_while_writing(store: Store, db: Path) -> None:
    store.record(meta(1), hard_bounce(), "accept")
    if not shutil.which("sqlite3"):
        pytest.skip("sqlite3 CLI not installed")
    blocker = threading.Event()

    def hook(conn, *args) -> None:
        blocker.wait(5)  # hold the write transaction open

    store.hooks.append(hook)
    t = threading.Thread(target=store.record, args=(meta(2), hard_bounce(), "accept"))
    t.start()
    try:
        out = subprocess.run(
            ["sqlite3", str(db), "SELECT COUNT(*) FROM messages"], capture_output=True, text=True, timeout=10
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "1"  # the committed row, not the one in flight
    finally:
        blocker.set()
        t.join()
    assert rows(db, "SELECT COUNT(*) FROM messages")[0][0] == 2


def test_record_after_close_raises(store: Store) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.record(meta(), hard_bounce(), "accept")
    store.close()  # twice is harmless


_AS_USER = """
import os, sys, time
from bouncemilter.store import StoreError, MessageMeta
from bouncemilter.suppressions import open_store
from bouncemilter.classify.model import Classification, RecipientResult
db = sys.argv[1]
m = lambda n: MessageMeta(f"Q{n}", "", "", "", "", ["b@example.com"], [], f"<{n}@x>", 1, 1.0)
c = Classification("bounce", [RecipientResult("a@example.org")])
s = open_store(db, timeout=0.5)
assert s.record(m(1), c, "accept") == (1, True)
print("ready", flush=True)
sys.stdin.readline()  # the test makes the file read-only
try:
    s.record(m(2), c, "accept")
    print("stored", flush=True)
except StoreError as exc:
    print("error", exc, flush=True)
sys.stdin.readline()  # the test makes it writable again
print(s.record(m(2), c, "accept"), s.record(m(2), c, "accept"), flush=True)
"""


@pytest.mark.skipif(not IS_ROOT, reason="needs root to switch to an unprivileged user")
def test_read_only_file_mode_as_unprivileged_user(request: pytest.FixtureRequest) -> None:
    # the milter runs as an unprivileged user in production: there a chmod is what makes the store read-only
    # the venv's interpreter may live under /root (0700): use the system one, which only needs the stdlib here
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if not python:
        pytest.skip("no system python3")
    d = Path(tempfile.mkdtemp(prefix="bm-store-"))  # pytest's tmp_path is private to root
    request.addfinalizer(lambda: shutil.rmtree(d, ignore_errors=True))
    os.chmod(d, 0o755)
    os.chown(d, 65534, 65534)
    db = d / "x.db"
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": os.environ.get("PATH", "")}
    proc = subprocess.Popen(
        [python, "-c", _AS_USER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        user=65534,
        group=65534,
        env=env,
        cwd=str(d),
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            pytest.skip(f"cannot run as nobody here: {line!r} {proc.stderr.read() if proc.stderr else ''}")
        db.chmod(0o444)
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().startswith("error")
        db.chmod(0o644)
        proc.stdin.write("\n")
        proc.stdin.flush()
        last = proc.stdout.readline().strip()
        assert last == "(2, True) (2, False)", proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
        proc.wait()


def test_huge_fields_are_capped_and_json_stays_valid(store: Store, db: Path) -> None:
    from bouncemilter.store import FIELD_CAP

    result = hard_bounce()
    result.recipients[0].diagnostic = "z" * (FIELD_CAP * 10)
    result.evidence = "e" * (FIELD_CAP * 10)
    many = [f"bounces+user{i}=example.org@example.com" for i in range(2000)]
    store.record(meta(bounce_addresses=many, verp_recipients=[""] * 2000), result, "accept")
    msg = rows(db, "SELECT evidence, bounce_addresses FROM messages")[0]
    assert len(msg["evidence"]) == FIELD_CAP
    addresses = json.loads(msg["bounce_addresses"])
    assert 0 < len(addresses) < 2000 and addresses[0] == many[0]
    assert len(rows(db, "SELECT diagnostic FROM recipients")[0][0]) == FIELD_CAP


@pytest.mark.sqlite_only
def test_open_reader(store: Store) -> None:
    store.record(meta(), hard_bounce(), "accept")
    reader = store.open_reader()
    try:
        assert reader["recipients"].count == 1
        assert next(reader["messages"].rows)["kind"] == "bounce"
    finally:
        reader.conn.close()


@pytest.mark.sqlite_only
def test_busy_writer_lock_times_out(store: Store) -> None:
    release = threading.Event()
    store.hooks.append(lambda *args: release.wait(5))
    t = threading.Thread(target=store.record, args=(meta(1), hard_bounce(), "accept"))
    t.start()
    time.sleep(0.05)
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match="busy"):
            store.record(meta(2), hard_bounce(), "accept")
        assert time.monotonic() - started < 2.0
    finally:
        release.set()
        t.join()
    store.hooks.clear()
    assert store.record(meta(2), hard_bounce(), "accept")[1]


def test_postgresql_schema_matches_sqlite(tmp_path: Path, pg_url: str) -> None:
    """Both backends have the same tables, columns, views and latest version (MIGRATIONS and PG_MIGRATIONS are
    kept side by side: a migration added to one and not the other fails here). SQLITE_ONLY_TABLES are the SQLite
    writer's own bookkeeping (the per-client cap's minute buckets: PostgreSQL counts its log rows)."""
    from bouncemilter.store import PG_MIGRATIONS
    from bouncemilter.store.core import SQLITE_ONLY_TABLES

    assert SQLITE_ONLY_TABLES == ("client_suppressions",)

    assert max(v for v, _ in PG_MIGRATIONS) == max(v for v, _ in MIGRATIONS)
    lite = str(tmp_path / "s.db")
    open_store(lite).close()
    open_store(pg_url).close()
    conn = store_connect(lite)
    try:
        objects = conn.execute("SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view')").fetchall()
        lite_schema = {
            (kind, name): sorted(r[1] for r in conn.execute(f"PRAGMA table_info({name})"))
            for kind, name in objects
            if not name.startswith("sqlite_") and name not in SQLITE_ONLY_TABLES
        }
    finally:
        conn.close()
    conn = store_connect(pg_url)
    try:
        rows = conn.execute(
            """SELECT CASE t.table_type WHEN 'VIEW' THEN 'view' ELSE 'table' END, c.table_name, c.column_name
               FROM information_schema.columns c JOIN information_schema.tables t
                 ON t.table_schema = c.table_schema AND t.table_name = c.table_name
               WHERE c.table_schema = current_schema()"""
        ).fetchall()
    finally:
        conn.close()
    pg_schema: dict[tuple[str, str], list[str]] = {}
    for kind, table, column in rows:
        pg_schema.setdefault((kind, table), []).append(column)
    assert {k: sorted(v) for k, v in pg_schema.items()} == lite_schema
    versions = []
    for db in (lite, pg_url):
        conn = store_connect(db)
        versions.append(current_version(conn))
        conn.close()
    assert versions[0] == versions[1]


def _json_list_reference(items: object) -> str:
    """_json_list as first written (json.dumps for everything): what rows already stored hold."""
    import json

    from bouncemilter.store.core import FIELD_CAP

    out: list[str] = []
    size = 2
    for item in items if isinstance(items, list | tuple) else ():
        text = str(item)[: FIELD_CAP // 4]
        size += len(json.dumps(text)) + 2
        if size > FIELD_CAP:
            break
        out.append(text)
    return json.dumps(out)


@given(
    st.one_of(
        st.lists(st.one_of(st.text(max_size=30), st.emails(), st.integers()), max_size=6),
        st.lists(st.text(alphabet="ab@.x", min_size=300, max_size=3000), max_size=12),
        st.none(),
        st.text(max_size=5),
    )
)
@settings(max_examples=300, deadline=None)
def test_json_list_writes_what_json_dumps_wrote(items: object) -> None:
    from bouncemilter.store.core import _json_list

    assert _json_list(items) == _json_list_reference(items)
    if isinstance(items, list):
        assert _json_list(tuple(items)) == _json_list_reference(tuple(items))


@given(
    st.lists(st.integers(min_value=1, max_value=2**62), max_size=450),
    st.lists(st.dates().map(lambda d: d.isoformat()), max_size=40),
)
@settings(max_examples=300, deadline=None)
def test_a_suppression_s_lists_are_written_as_json_dumps_wrote_them(ids: list[int], days: list[str]) -> None:
    """The evidence ids (capped) and the soft-bounce days of a policy suppression, built without the json module:
    the same text as json.dumps gave (rebuild-suppressions compares a row's evidence with it)."""
    import json

    from bouncemilter.store.core import _json_list
    from bouncemilter.suppressions import _cap, _evidence_json

    assert _evidence_json(ids) == json.dumps(_cap(ids))
    assert _json_list(days) == json.dumps(days)
