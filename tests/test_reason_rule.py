"""`reason_rule`: the rule that decided each recipient's reason, in the classifier's result, the JSON
output and the store (recipients.reason_rule, schema version 7)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from bouncemilter.classify import classify
from bouncemilter.classify.model import Classification, RecipientResult
from bouncemilter.cli import main
from bouncemilter.store import MIGRATIONS, migrate
from bouncemilter.suppressions import open_store

from .conftest import make_meta, query_rows

BOUNCE = Path(__file__).parent / "fixtures" / "cli" / "bounce-dsn.eml"


def _bounce(diagnostic: str, status: str = "5.0.0", remote: str = "mx.example.net") -> bytes:
    return (
        "From: MAILER-DAEMON@mx1.example.org\nTo: bounces@example.com\nSubject: Undelivered Mail\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n"
        "--b\nContent-Type: text/plain\n\nfailed\n\n--b\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mx1.example.org\n\nFinal-Recipient: rfc822; carol@example.net\nAction: failed\n"
        f"Status: {status}\nRemote-MTA: dns; {remote}\nDiagnostic-Code: smtp; {diagnostic}\n\n--b--\n"
    ).encode()


def test_every_recipient_of_a_failure_names_its_rule() -> None:
    cases = {
        _bounce("550 5.1.1 <carol@example.net>: Recipient address rejected: User unknown", "5.1.1"): "status:5.1.1",
        _bounce("550 sorry, no such user here"): 'phrase:userunknown/"no such user"',
        _bounce(
            "550-5.1.1 The email account that you tried to reach does not exist.", "5.1.1", "gmail-smtp-in.l.google.com"
        ): "rhost:google/",
    }
    for raw, rule in cases.items():
        (row,) = classify(raw).recipients
        assert row.reason_rule.startswith(rule), row


def test_rule_in_the_json_output() -> None:
    result = CliRunner().invoke(main, ["classify", "--format", "jsonl", str(BOUNCE)])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout.splitlines()[0])["recipients"]
    assert (row["reason"], row["hard"], row["smtp_command"]) == ("userunknown", True, "RCPT")
    assert row["reason_rule"]


def test_rule_stored_per_recipient(tmp_path: Path) -> None:
    db = tmp_path / "bounces.db"
    with open_store(str(db), timeout=0.5) as store:
        result = classify(BOUNCE.read_bytes())
        store.record(make_meta(1), result, "accept")
        # a report that names nobody stores its VERP address with no rule (NULL)
        empty = Classification(kind="bounce", detector="generic", evidence="Subject: failure notice")
        store.record(make_meta(2, verp_recipients=["bob@example.org"]), empty, "accept")
    stored = {r["address"]: r["reason_rule"] for r in query_rows(db, "SELECT address, reason_rule FROM recipients")}
    assert stored == {"carol@example.net": result.recipients[0].reason_rule, "bob@example.org": None}


def test_rule_column_added_to_an_existing_store(tmp_path: Path) -> None:
    db = tmp_path / "bounces.db"
    before = [m for m in MIGRATIONS if m[0] < 7]
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn, before)
    conn.execute(
        "INSERT INTO messages (received_at, kind, dedup_key) VALUES ('2026-01-01T00:00:00.000Z', 'bounce', 'k')"
    )
    conn.execute(
        "INSERT INTO recipients (message_id, received_at, kind, address, reason) "
        "VALUES (1, '2026-01-01T00:00:00.000Z', 'bounce', 'old@example.org', 'userunknown')"
    )
    conn.close()
    with open_store(str(db), timeout=0.5) as store:
        row = RecipientResult(recipient="new@example.org", action="failed", status="5.2.2", reason="mailboxfull")
        row.reason_rule = "status:5.2.2"
        store.record(make_meta(3), Classification(kind="bounce", recipients=[row], detector="rfc3464"), "accept")
    stored = {r["address"]: r["reason_rule"] for r in query_rows(db, "SELECT address, reason_rule FROM recipients")}
    assert stored == {"old@example.org": None, "new@example.org": "status:5.2.2"}
