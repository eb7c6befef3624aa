"""`bouncemilter import`: mbox, Maildir, directories, stdin; envelope facts from the mailbox; idempotency; speed."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter import ingest
from bouncemilter.classify import classify
from bouncemilter.cli import main
from bouncemilter.cli_import import ImportProgress
from bouncemilter.config import load_settings
from bouncemilter.store import MessageMeta, StoreError
from bouncemilter.suppressions import open_store
from bouncemilter.verp import BounceMatcher
from tests.conftest import db_connect

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
VERP = "bounces+*@example.com"


def _bench():
    spec = importlib.util.spec_from_file_location("import_speed", ROOT / "bench" / "import_speed.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Every import test runs into a SQLite file and into PostgreSQL."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return tmp_path / "b.db"


def run(db: Path | str, *args: str, stdin: bytes | None = None):
    result = CliRunner().invoke(main, ["import", "--db", str(db), "--bounce-address", VERP, *args], input=stdin)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def query(db: Path | str, sql: str, *params: object) -> list[tuple]:
    conn = db_connect(db)
    try:
        return [tuple(r) for r in conn.execute(sql, params).fetchall()]
    finally:
        conn.close()


def snapshot(db: Path) -> str:
    """A hash of every row of the tables an import writes."""
    h = hashlib.sha256()
    conn = db_connect(db)
    try:
        for table in ("messages", "recipients", "suppressions", "suppression_log"):
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY id"):
                h.update(repr(tuple(row)).encode())
    finally:
        conn.close()
    return h.hexdigest()


def bounce(n: int, rcpt: str = "carol@example.net", *, message_id: bool = True, top: str = "") -> bytes:
    """A Postfix DSN as a mailbox keeps it (the delivery agent's headers first, then the report)."""
    mid = f"Message-ID: <dsn-{n}@mx1.example.org>\n" if message_id else ""
    return (
        f"""{top}From: MAILER-DAEMON@mx1.example.org (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: bounces@example.com
Date: Thu, 26 Nov 2026 10:00:00 +0000
{mid}Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b{n}"

--b{n}
Content-Type: text/plain

This is the mail system at host mx1.example.org.
I'm sorry to have to inform you that your message could not be delivered.

--b{n}
Content-Type: message/delivery-status

Reporting-MTA: dns; mx1.example.org

Final-Recipient: rfc822; {rcpt}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown

--b{n}--
"""
    ).encode()


DELIVERED = (
    "Return-Path: <>\n"
    "Delivered-To: bounces@example.com\n"
    "X-Original-To: bounces+alice=example.org@example.com\n"
    "Received: from mx1.example.org (mx1.example.org [192.0.2.10])\n"
    "\tby mail.example.com (Postfix) with ESMTP id 4Abc1\n"
    "\tfor <bounces+alice=example.org@example.com>; Fri, 27 Nov 2026 08:15:30 +0100 (CET)\n"
)


# ------------------------------------------------------------------------------------------------ envelope facts


def test_envelope_facts_from_the_mailbox_headers(db: Path | str, tmp_path: Path) -> None:
    msg = tmp_path / "one.eml"
    msg.write_bytes(bounce(1, top=DELIVERED))
    result = run(db, str(msg))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "1 new, 0 already stored, 0 unreadable (1 bounce)"
    [row] = query(
        db,
        "SELECT received_at, queue_id, client_addr, envelope_from, bounce_addresses, verp_recipients, message_id,"
        " size, kind, action FROM messages",
    )
    assert row == (
        "2026-11-27T07:15:30.000Z",  # the topmost Received header (our server's delivery), in UTC
        "",
        "",
        "",  # Return-Path: <>
        '["bounces+alice=example.org@example.com"]',  # X-Original-To (what the milter matched), not Delivered-To
        '["alice@example.org"]',
        "<dsn-1@mx1.example.org>",
        msg.stat().st_size,
        "bounce",
        "imported",
    )
    # a single VERP address names the subscriber; the report's own address is kept beside it
    assert query(db, "SELECT address, reported_address, reason, hard FROM recipients") == [
        ("alice@example.org", "carol@example.net", "userunknown", 1)
    ]
    # the same hooks as the milter: a hard bounce suppresses at once
    assert query(db, "SELECT address, state, category FROM suppressions") == [
        ("alice@example.org", "suppressed", "hard")
    ]


def test_mailbox_envelope_fallbacks() -> None:
    settings = load_settings(None, {"bounce_addresses": [VERP]})
    matcher = BounceMatcher(list(settings.bounce_addresses))
    now = datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
    # no Return-Path, no Received: the From_ line's sender and the Date header
    env = ingest.mailbox_envelope(bounce(2), matcher, b"From news-bounce@example.net Thu Nov 26 10:00:00 2026", now)
    assert env.envelope_from == "news-bounce@example.net"
    assert env.received_at == "2026-11-26T10:00:00.000Z"
    assert env.bounce_addresses == ["bounces@example.com"]  # To:, the last resort
    assert env.message_id == "<dsn-2@mx1.example.org>"
    assert (
        ingest.mailbox_envelope(bounce(2), matcher, b"From MAILER-DAEMON Thu Nov 26 10:00:00 2026").envelope_from == ""
    )
    # Delivered-To when there is no X-Original-To; an implausible date falls back to the next source, then now
    raw = b"Delivered-To: bounces+bob=example.org@example.com\nDate: Mon, 1 Jan 1979 00:00:00 +0000\n\nhi\n"
    env = ingest.mailbox_envelope(raw, matcher, now=now)
    assert env.bounce_addresses == ["bounces+bob=example.org@example.com"]
    assert env.verp_recipients == ["bob@example.org"]
    assert env.received_at == "2027-01-02T03:04:05.000Z"
    # no configured addresses: nothing matched, nothing decoded
    assert ingest.mailbox_envelope(raw, BounceMatcher([])).bounce_addresses == []


def test_import_matches_a_row_the_milter_recorded(db: Path | str, tmp_path: Path) -> None:
    """The milter's row and the mailbox copy of the same message share the idempotency key."""
    settings = load_settings(None, {"db": str(db), "bounce_addresses": [VERP]})
    raw = bounce(3)
    with open_store(str(db)) as store:
        # what eom() knows: the SMTP envelope, Postfix's queue id, the client
        env = ingest.Envelope(
            queue_id="4Abc1",
            client_addr="192.0.2.10",
            client_name="mx1.example.org",
            helo="mx1.example.org",
            envelope_from="",
            bounce_addresses=["bounces+alice=example.org@example.com"],
            verp_recipients=["alice@example.org"],
        )
        out = ingest.ingest(raw, env, settings, store)
    assert out.inserted and out.action == "accept" and out.classification.kind == "bounce"
    # the delivery agent then wrote the message into the mailbox with its own headers
    mbox = tmp_path / "bounces.mbox"
    mbox.write_bytes(b"From MAILER-DAEMON Fri Nov 27 08:15:30 2026\n" + DELIVERED.encode() + raw)
    result = run(db, str(mbox))
    assert result.stdout.strip() == "0 new, 1 already stored, 0 unreadable"
    assert query(db, "SELECT queue_id, action FROM messages") == [("4Abc1", "accept")]


def test_ingest_reports_a_store_failure_with_the_classification(tmp_path: Path) -> None:
    settings = load_settings(None, {"db": str(tmp_path / "b.db")})
    store = open_store(settings.db)
    store.close()
    with pytest.raises(ingest.NotStored) as info:
        ingest.ingest(bounce(4), ingest.Envelope(), settings, store)
    assert isinstance(info.value, StoreError)
    assert info.value.prepared.classification.kind == "bounce"
    assert info.value.prepared.action == "accept"


# ------------------------------------------------------------------------------------------------ sources


def test_maildir_and_maildirpp_folders(db: Path | str, tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    for folder in (maildir, maildir / ".Bounces"):
        for part in ("cur", "new", "tmp"):
            (folder / part).mkdir(parents=True)
    (maildir / "new" / "1700000000.1.host").write_bytes(bounce(10, "a@example.net", top=DELIVERED))
    (maildir / "cur" / "1700000001.2.host:2,S").write_bytes(bounce(11, "b@example.net"))
    (maildir / ".Bounces" / "cur" / "1700000002.3.host:2,").write_bytes(bounce(12, "c@example.net"))
    (maildir / "tmp" / "1700000003.4.host").write_bytes(bounce(13, "d@example.net"))  # still being delivered
    (maildir / "dovecot-uidlist").write_text("3 V1 N4\n")
    result = run(db, str(maildir))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "3 new, 0 already stored, 0 unreadable (3 bounce)"
    assert sorted(r[0] for r in query(db, "SELECT reported_address FROM recipients")) == [
        "a@example.net",
        "b@example.net",
        "c@example.net",
    ]
    before = snapshot(db)
    assert run(db, str(maildir)).stdout.strip() == "0 new, 3 already stored, 0 unreadable"
    assert snapshot(db) == before


def test_directory_of_eml_files_and_stdin(db: Path | str, tmp_path: Path) -> None:
    result = run(db, str(FIXTURES / "mta"))
    assert result.exit_code == 0, result.stderr
    count = len(list((FIXTURES / "mta").glob("*.eml")))
    assert result.stdout.startswith(f"{count} new, 0 already stored, 0 unreadable (")
    assert query(db, "SELECT COUNT(*) FROM messages") == [(count,)]
    # one of them again through stdin: already stored (the key does not depend on the file name)
    again = run(db, "-", stdin=(FIXTURES / "mta" / "exim.eml").read_bytes())
    assert again.stdout.strip() == "0 new, 1 already stored, 0 unreadable"


def test_without_message_id_a_digest_keeps_it_idempotent(db: Path | str, tmp_path: Path) -> None:
    first = tmp_path / "first.mbox"
    first.write_bytes(b"From MAILER-DAEMON Thu Nov 26 10:00:00 2026\n" + bounce(20, message_id=False))
    assert run(db, str(first)).stdout.strip() == "1 new, 0 already stored, 0 unreadable (1 bounce)"
    # a mail reader marked it read (Status:), and the copy in a Maildir has CRLF line endings
    seen = tmp_path / "seen.eml"
    seen.write_bytes((b"Status: RO\nX-UID: 7\n" + bounce(20, message_id=False)).replace(b"\n", b"\r\n"))
    assert run(db, str(seen)).stdout.strip() == "0 new, 1 already stored, 0 unreadable"
    other = tmp_path / "other.eml"
    other.write_bytes(bounce(21, message_id=False))
    assert run(db, str(other)).stdout.strip() == "1 new, 0 already stored, 0 unreadable (1 bounce)"


def test_unreadable_paths_are_reported_and_the_rest_imported(db: Path | str, tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "good.eml").write_bytes(bounce(30))
    (folder / "gone.eml").symlink_to(tmp_path / "nowhere")  # a broken link
    (folder / "empty.eml").write_bytes(b"\n")
    result = run(db, str(tmp_path / "missing.mbox"), str(folder), "--format", "json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert (data["new"], data["already_stored"], data["unreadable"]) == (1, 0, 3)
    assert {(e["source"], e["message"]) for e in data["errors"]} == {
        (str(tmp_path / "missing.mbox"), "No such file or directory"),
        (str(folder / "gone.eml"), "No such file or directory"),
        (str(folder / "empty.eml"), "empty message"),
    }
    assert f"cannot read {folder / 'gone.eml'}: No such file or directory" in result.stderr
    assert query(db, "SELECT message_id FROM messages") == [("<dsn-30@mx1.example.org>",)]
    table = run(db, str(folder))
    assert table.exit_code == 1
    assert table.stdout.strip() == "0 new, 1 already stored, 2 unreadable"


def test_progress_bar_advances_inside_an_mbox() -> None:
    stream = io.StringIO()
    progress = ImportProgress(2, stream=stream, delay=0.0, enabled=True)
    progress.part = 0.5
    assert "[######------------------]  25% 0/2 files" in progress.line(1.0)
    progress.messages = 31
    progress.message_done()
    progress.close()
    assert "importing [" in stream.getvalue() and stream.getvalue().endswith("\r\x1b[K")


# ------------------------------------------------------------------------------------------------ the store


def test_record_many_dedups_within_a_batch_and_runs_hooks(tmp_path: Path) -> None:
    calls: list[int] = []
    result = classify(bounce(40))
    metas = [
        MessageMeta("", "", "", "", "", ["bounces@example.com"], [], f"<m{n % 3}@x>", 1, 0.0, "2026-11-26T10:00:00Z")
        for n in range(7)
    ]
    with open_store(str(tmp_path / "b.db")) as store:
        store.hooks.append(lambda conn, msg_id, meta, res, action: calls.append(msg_id))
        out = store.record_many([(m, result, "imported") for m in metas], batch_size=2)
        assert [inserted for _, inserted in out] == [True, True, True, False, False, False, False]
        assert [row_id for row_id, _ in out] == [1, 2, 3, 1, 2, 3, 1]
        assert calls == [1, 2, 3]

        def boom(conn, msg_id, meta, res, action):
            if meta.message_id == "<late@x>":
                raise sqlite3.OperationalError("disk I/O error")

        store.hooks.append(boom)
        fresh = [MessageMeta("", "", "", "", "", [], [], f"<{n}@x>", 1, 0.0) for n in ("a", "b", "late", "c")]
        with pytest.raises(StoreError) as info:
            store.record_many([(m, result, "imported") for m in fresh], batch_size=2)
        assert info.value.committed == 2
    # the failing batch rolled back as a whole; the batch before it stays
    ids = [r[0] for r in query(tmp_path / "b.db", "SELECT message_id FROM messages ORDER BY id")]
    assert ids == ["<m0@x>", "<m1@x>", "<m2@x>", "<a@x>", "<b@x>"]


# ------------------------------------------------------------------------------------------------ 10,000 messages


def test_ten_thousand_message_mbox_fast_and_idempotent(db: Path | str, tmp_path: Path) -> None:
    mbox = tmp_path / "bounces.mbox"
    _bench().build_mbox(mbox, 10_000)
    t0 = time.perf_counter()
    result = run(db, str(mbox))
    seconds = time.perf_counter() - t0
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("10000 new, 0 already stored, 0 unreadable (")
    rate = 10_000 / seconds
    # bench/import_speed.py measures the real figure (>= 1,000/s); CI machines are noisy, so a generous floor here
    assert rate >= 300, f"{rate:.0f} messages/s"
    assert query(db, "SELECT COUNT(*) FROM messages") == [(10_000,)]
    assert query(db, "SELECT COUNT(DISTINCT dedup_key) FROM messages") == [(10_000,)]
    assert query(db, "SELECT COUNT(*) FROM messages WHERE verp_recipients != '[]'") == [(5_000,)]
    assert query(db, "SELECT COUNT(*) FROM suppressions WHERE state = 'suppressed'")[0][0] > 0
    before = snapshot(db)
    again = run(db, str(mbox))
    assert again.exit_code == 0
    assert again.stdout.strip() == "0 new, 10000 already stored, 0 unreadable"
    assert snapshot(db) == before


def test_a_growing_mailbox_imports_only_what_is_new(
    db: Path | str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    envelope = b"From MAILER-DAEMON Thu Nov 26 10:00:00 2026\n"
    mbox = tmp_path / "bounces.mbox"
    mbox.write_bytes(b"\n".join(envelope + bounce(n) for n in (50, 51, 50)))  # a duplicate in the same batch
    assert run(db, str(mbox)).stdout.strip() == "2 new, 1 already stored, 0 unreadable (2 bounce)"
    # new mail arrived; messages already stored are not classified again
    mbox.write_bytes(b"\n".join(envelope + bounce(n) for n in (50, 51, 52)))
    classified: list[bytes] = []
    monkeypatch.setattr(ingest, "classify_safely", lambda raw, classifier: classified.append(raw) or classify(raw))
    assert run(db, str(mbox)).stdout.strip() == "1 new, 2 already stored, 0 unreadable (1 bounce)"
    assert len(classified) == 1 and b"<dsn-52@" in classified[0]


def test_compressed_mailboxes_are_read_and_junk_is_unreadable(db: Path | str, tmp_path: Path) -> None:
    import bz2
    import gzip
    import lzma

    mbox = b"".join(b"From MAILER-DAEMON Thu Nov 26 10:00:0%d 2026\n" % n + bounce(40 + n) + b"\n" for n in range(3))
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.mbox.gz").write_bytes(gzip.compress(mbox))
    (folder / "b.mbox.1").write_bytes(bz2.compress(bounce(50)))  # named as logrotate likes: magic bytes decide
    (folder / "c.xz").write_bytes(lzma.compress(bounce(51)))
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (folder / "random.bin").write_bytes(hashlib.sha512(b"x").digest() * 8)
    (folder / "broken.gz").write_bytes(gzip.compress(bounce(52))[:30])
    result = run(db, str(folder), "--format", "json")
    assert result.exit_code == 1  # junk changes the exit status
    data = json.loads(result.stdout)
    assert (data["new"], data["unreadable"]) == (5, 3), data
    assert data["kinds"] == {"bounce": 5}
    errors = {Path(e["source"]).name: e["message"] for e in data["errors"]}
    assert errors["image.png"] == errors["random.bin"] == "not a mail message (no header block)"
    assert errors["broken.gz"].startswith("cannot decompress (gzip)")
    assert query(db, "SELECT COUNT(*) FROM messages WHERE kind = 'not_bounce'") == [(0,)]
    # stdin too
    piped = run(tmp_path / "c.db", "-", stdin=gzip.compress(bounce(53)))
    assert piped.exit_code == 0 and piped.stdout.startswith("1 new")


def test_the_same_import_into_sqlite_and_postgresql_suppresses_the_same_addresses(tmp_path: Path, pg_url: str) -> None:
    """`import --db postgresql://... DIR` then `suppressed --format json` lists what the same import into SQLite
    lists: the same addresses, categories, reasons and evidence counts."""
    folder = tmp_path / "reports"
    folder.mkdir()
    for n in range(30):  # hard bounces, some for the same address, and the fixtures of every MTA
        (folder / f"b{n}.eml").write_bytes(bounce(n, f"user{n % 17}@example.net"))
    for f in sorted((FIXTURES / "mta").glob("*.eml")):
        (folder / f.name).write_bytes(f.read_bytes())
    lists = []
    for db in (str(tmp_path / "b.db"), pg_url):
        assert run(db, str(folder)).exit_code == 0
        out = CliRunner().invoke(main, ["suppressed", "--db", db, "--format", "json"])
        assert out.exit_code == 0, out.output
        lists.append(
            sorted(
                (r["address"], r["category"], r["reason"], r["status"], len(r["evidence"]))
                for r in json.loads(out.output)
            )
        )
    assert len(lists[0]) >= 17
    assert lists[0] == lists[1]
