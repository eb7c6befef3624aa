"""The idempotency key tells a retry from a different report reusing a Message-ID (issue #15, 6.)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bouncemilter.classify import classify
from bouncemilter.config import load_settings
from bouncemilter.ingest import Envelope, build_meta, ingest, ingest_many, report_digest
from bouncemilter.store import MIGRATIONS, dedup_key, legacy_dedup_key, migrate
from bouncemilter.suppressions import open_store

SETTINGS = load_settings(None, {})
ENV = Envelope(client_addr="192.0.2.1", envelope_from="", bounce_addresses=["bounces@example.com"])


def dsn(recipient: str, status: str = "5.1.1", mid: str = "<same@mx.example.net>") -> bytes:
    return f"""From: MAILER-DAEMON@mx.example.net
To: bounces@example.com
Subject: Undelivered Mail Returned to Sender
Message-ID: {mid}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

From the mail system: your message could not be delivered.

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {recipient}
Action: failed
Status: {status}

--b--
""".replace("\n", "\r\n").encode()


def rows(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT m.id, r.address FROM messages m JOIN recipients r ON r.message_id = m.id"
        ).fetchall()
    finally:
        conn.close()


def test_a_different_report_with_the_same_message_id_is_stored_and_a_retry_is_not(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    with open_store(str(db)) as store:
        first = ingest(dsn("alice@example.org"), ENV, SETTINGS, store)
        other = ingest(dsn("bob@example.org"), ENV, SETTINGS, store)
        again = ingest(dsn("alice@example.org"), ENV, SETTINGS, store)
    assert first.inserted and other.inserted and other.row_id != first.row_id
    assert not again.inserted and again.row_id == first.row_id
    assert sorted(a for _, a in rows(db)) == ["alice@example.org", "bob@example.org"]


def test_the_key_ignores_queue_id_client_and_receiving_host() -> None:
    raw = dsn("alice@example.org")
    a = build_meta(raw, Envelope(queue_id="4C1D2A0B3F", client_addr="192.0.2.1", client_name="mx1", helo="a",
                                 bounce_addresses=["bounces@example.com"]))  # fmt: skip
    b = build_meta(raw, Envelope(queue_id="99AA00BB11", client_addr="198.51.100.2", client_name="mx2", helo="b",
                                 bounce_addresses=["bounces@example.com"]))  # fmt: skip
    assert dedup_key(a) == dedup_key(b) and dedup_key(a).startswith("m2:")
    assert dedup_key(a) != dedup_key(build_meta(dsn("alice@example.org", "5.2.2"), ENV))


def test_the_digest_survives_what_mailboxes_and_hops_do_to_a_message() -> None:
    crlf = dsn("alice@example.org")  # as the milter gets it; then as a mailbox keeps it (LF, mbox-quoted)
    as_received = crlf + b"\r\n\r\n"  # trailing blank lines
    stored = b"Return-Path: <>\nReceived: from mx by us\nStatus: RO\n" + crlf.replace(b"\r\n", b"\n").replace(
        b"\nFrom the mail system", b"\n>From the mail system"
    ).replace(b"Content-Type: text/plain\n", b"Content-Type: text/plain   \n")
    assert report_digest(as_received) == report_digest(stored)
    assert report_digest(dsn("alice@example.org")) != report_digest(dsn("bob@example.org"))


def test_import_stays_idempotent_and_sees_both_reports(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    items = [(dsn("alice@example.org"), ENV), (dsn("bob@example.org"), ENV), (dsn("alice@example.org"), ENV)]
    with open_store(str(db)) as store:
        first = [o.inserted for o in ingest_many(items, SETTINGS, store)]
        second = [o.inserted for o in ingest_many(items, SETTINGS, store)]
    assert first == [True, True, False] and second == [False, False, False]
    assert len(rows(db)) == 2


def test_a_database_from_before_the_new_key_still_recognises_retries(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn, MIGRATIONS[:5])  # the schema before the content-aware key
    old_meta = build_meta(dsn("alice@example.org"), ENV)
    conn.execute(
        "INSERT INTO messages (received_at, message_id, kind, dedup_key, bounce_addresses) VALUES (?, ?, ?, ?, ?)",
        ("2026-11-01T00:00:00.000Z", old_meta.message_id, "bounce", legacy_dedup_key(old_meta),
         '["bounces@example.com"]'),
    )  # fmt: skip
    conn.close()
    with open_store(str(db)) as store:
        assert store._legacy_last == 1
        retry = ingest(dsn("alice@example.org"), ENV, SETTINGS, store)
        assert not retry.inserted and retry.row_id == 1  # found by the old key
        new = ingest(dsn("carol@example.org", mid="<new@mx.example.net>"), ENV, SETTINGS, store)
        again = ingest(dsn("carol@example.org", mid="<new@mx.example.net>"), ENV, SETTINGS, store)
    assert new.inserted and not again.inserted and again.row_id == new.row_id
    with open_store(str(tmp_path / "fresh.db")) as fresh:
        assert fresh._legacy_last == 0  # a new database never looks up old keys


def test_without_message_id_the_key_is_unchanged(tmp_path: Path) -> None:
    raw = dsn("alice@example.org").replace(b"Message-ID: <same@mx.example.net>\r\n", b"")
    meta = build_meta(raw, ENV)
    assert meta.body_digest == "" and dedup_key(meta) == legacy_dedup_key(meta)
    assert classify(raw).kind == "bounce"


def _report_digest_reference(raw: bytes, header_max: int = 256 * 1024, span: int = 64 * 1024) -> str:
    """report_digest as first written (every step on every message): the key of rows already stored."""
    import hashlib
    import re

    data = raw[: header_max + 3 * span].replace(b"\r\n", b"\n")
    end = data.find(b"\n\n")
    body = data[end + 2 :] if end >= 0 else b""
    lines = re.sub(rb"^>+(?=From )", b"", body, flags=re.M).split(b"\n")
    text = b"\n".join(line.rstrip() for line in lines).strip(b"\n")[:span]
    return hashlib.sha256(text).hexdigest()


@given(
    st.lists(
        st.sampled_from([b"a", b" ", b"\t", b"\r", b"\n", b"\x0b", b"\x0c", b">", b"From ", b">From x", b"\r\n"]),
        max_size=60,
    )
)
@settings(max_examples=400, deadline=None)
def test_report_digest_skips_only_steps_that_change_nothing(pieces: list[bytes]) -> None:
    # the digest is part of the idempotency key: a retry of a report stored before must get the same key
    raw = b"Subject: x\r\n\r\n" + b"".join(pieces)
    assert report_digest(raw) == _report_digest_reference(raw)
    assert report_digest(b"".join(pieces)) == _report_digest_reference(b"".join(pieces))


@given(
    st.lists(
        st.sampled_from([b"ab", b"xyz ", b"\t", b"\r", b"\n", b"\n\n\n", b"\r\n", b">From x", b"Subject: s\r\n"]),
        max_size=80,
    )
)
@settings(max_examples=400, deadline=None)
def test_report_digest_window_gives_the_whole_body_digest(pieces: list[bytes]) -> None:
    # small spans, so that the window (and its growing) is exercised by short inputs
    import bouncemilter.ingest as ingest

    saved = ingest.DIGEST_SPAN, ingest.HEADER_BLOCK_MAX
    ingest.DIGEST_SPAN, ingest.HEADER_BLOCK_MAX = 16, 40
    try:
        raw = b"".join(pieces)
        assert ingest.report_digest(raw) == _report_digest_reference(raw, 40, 16)
        raw = b"A: b\r\n\r\n" + raw
        assert ingest.report_digest(raw) == _report_digest_reference(raw, 40, 16)
    finally:
        ingest.DIGEST_SPAN, ingest.HEADER_BLOCK_MAX = saved


def test_report_digest_of_big_reports_is_unchanged() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "e2e"))
    import messages as M

    for size in (0, 50_000, 100_000, 300_000, 600_000):
        raw = M.big_bounce("d", size=size)
        assert report_digest(raw) == _report_digest_reference(raw)
        lf = raw.replace(b"\r\n", b"\n")
        assert report_digest(lf) == _report_digest_reference(lf) == report_digest(raw)
    blank = b"Subject: x\n\n" + b" \n\n\t\n" * 40_000 + b"the end\n"  # normalises to almost nothing
    assert report_digest(blank) == _report_digest_reference(blank)
