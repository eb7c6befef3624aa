"""Edge cases found by attacking the milter through a real Postfix (issue #15), on the shared rig.

Every test leaves the rig as it found it (lock released, milter running with the rig's config).
"""

from __future__ import annotations

import contextlib
import json
import smtplib
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from . import messages as M
from .conftest import BOUNCES, E2E


@contextlib.contextmanager
def store_locked(e2e: E2E) -> Iterator[None]:
    """Another process holds the database's write lock (longer than the milter's store.timeout)."""
    locker = sqlite3.connect(e2e.milter.db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        locker.execute("ROLLBACK")
        locker.close()


def send_raw(e2e: E2E, mail_from: str, rcpt: str, raw: bytes) -> tuple[int, str]:
    """One SMTP transaction with the MAIL FROM and RCPT TO arguments exactly as given (no brackets added)."""
    with smtplib.SMTP("127.0.0.1", e2e.rig.smtp_port, local_hostname="client.example", timeout=120) as smtp:
        smtp.ehlo()
        code, msg = smtp.docmd(f"MAIL FROM:{mail_from}")
        assert code == 250, msg
        code, msg = smtp.docmd(f"RCPT TO:{rcpt}")
        assert code == 250, msg
        code, msg = smtp.data(raw)
    return code, msg.decode(errors="replace")


# -- 1. the internal path is recognised from what a client cannot forge ---------------------------------------


def test_bare_mail_from_over_smtp_is_deferred_while_postfix_own_bounce_is_accepted(e2e: E2E, token: str) -> None:
    seen = len(e2e.milter.events("message"))
    with store_locked(e2e):
        # An outside client leaves out the angle brackets; smtpd accepts it and passes it on bare.
        code, reply = send_raw(e2e, "x@evil.example", BOUNCES, M.hard_bounce(token))
        assert 400 <= code < 500 and "4.3.0" in reply, (code, reply)
        # Postfix's own bounce (non_smtpd_milters, the bounce daemon): never deferred by us.
        e2e.rig.sendmail(BOUNCES, ["nosuch@test.example"], M.ordinary(token + "-own"))
        delivered = e2e.wait_file("bounces", token + "-own")
        e2e.wait_queue()
    assert b"Undelivered Mail" in delivered.read_bytes()
    assert e2e.message_rows(token) == []
    new = e2e.milter.events("message")[seen:]
    (smtp_line,) = [e for e in new if e["envelope_from"] == "x@evil.example"]
    assert smtp_line["internal"] is False and smtp_line["action"] == "tempfail" and smtp_line["stored"] is False
    (own,) = [e for e in new if e["envelope_from"] == ""]
    assert own["internal"] is True and own["action"] == "accept" and own["level"] == "error"
    assert own["stored"] is False and own["store_error"]
    # After the lock: the client's retry is stored.
    code, reply = send_raw(e2e, "x@evil.example", BOUNCES, M.hard_bounce(token))
    assert code == 250, reply
    assert len(e2e.message_rows(token)) == 1


# -- 2. every reply within [store] timeout, however many sessions wait ---------------------------------------

STORE_TIMEOUT = 1.0  # tests/e2e/conftest.py CONFIG


def timed_send(e2e: E2E, raw: bytes) -> tuple[int, str, float]:
    """A bounce over SMTP; returns (code, reply, seconds from the end of DATA to the reply)."""
    with smtplib.SMTP("127.0.0.1", e2e.rig.smtp_port, local_hostname="client.example", timeout=120) as smtp:
        smtp.ehlo()
        smtp.mail("")
        smtp.rcpt(BOUNCES)
        code, msg = smtp.docmd("DATA")
        assert code == 354, msg
        smtp.send(raw + b".\r\n")  # raw ends with CRLF
        t0 = time.monotonic()
        code, msg = smtp.getreply()
        took = time.monotonic() - t0
    return code, msg.decode(errors="replace"), took


def test_twenty_sessions_with_the_store_locked_all_get_their_reply_within_the_store_timeout(
    e2e: E2E, token: str
) -> None:
    seen = len(e2e.milter.events("message"))
    raws = [M.hard_bounce(f"{token}-{i}", recipient=f"r{i}@example.org") for i in range(20)]
    results: list[tuple[int, str, float]] = []
    with store_locked(e2e), ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda raw: timed_send(e2e, raw), raws))
    took = sorted(t for _, _, t in results)
    print(f"reply after end of DATA, store locked, 20 sessions: {took[0]:.3f}s / {took[10]:.3f}s / {took[-1]:.3f}s")
    assert all(400 <= code < 500 and "4.3.0" in reply for code, reply, _ in results), results
    new = [e for e in e2e.milter.events("message")[seen:] if token in e.get("message_id", "")]
    assert len(new) == 20 and all(e["action"] == "tempfail" for e in new)
    # The milter's own clock, end of message to reply: within store.timeout (what Postfix waited 30 s for
    # before). The client's clock adds Postfix's own work; a shared 2-core machine adds scheduling slack.
    assert max(e["ms"] for e in new) <= STORE_TIMEOUT * 1000 + 250, sorted(e["ms"] for e in new)
    assert took[-1] < STORE_TIMEOUT + 2.0, took
    # Nothing lost: once the lock is gone every retry is stored, once.
    for raw in raws:
        code, reply, _ = timed_send(e2e, raw)
        assert code == 250, reply
    assert len(e2e.query("SELECT id FROM messages WHERE message_id LIKE ?", (f"%{token}-%",))) == 20


# -- 5. one forged report cannot suppress thousands ---------------------------------------------------------


def test_one_report_naming_1200_addresses_suppresses_100_and_holds_the_rest(e2e: E2E, token: str) -> None:
    from click.testing import CliRunner

    from bouncemilter.cli import main

    from ..test_caps import dsn

    tag = token.rsplit("-", 1)[1]  # short addresses: the classifier reads a delivery-status part up to 256 KiB
    recipients = [f"r{i}-{tag}@example.org" for i in range(1200)]
    seen = len(e2e.milter.events("message"))
    code, reply, qid = e2e.send("", [BOUNCES], dsn(token, recipients))
    assert code == 250, reply
    (row,) = e2e.message_rows(token)
    # [limits] defaults: 1000 recipients stored per report (the rest counted and logged), 100 new suppressions
    assert row["recipient_count"] == 1000 and row["recipients_dropped"] == 200
    (line,) = [e for e in e2e.milter.events("message")[seen:] if e.get("queue_id") == qid]
    assert line["recipients_dropped"] == 200 and line["stored"] is True
    like = (f"r%-{tag}@example.org",)
    assert len(e2e.query("SELECT 1 FROM suppressions WHERE address LIKE ? AND state = 'suppressed'", like)) == 100
    assert len(e2e.query("SELECT 1 FROM pending_suppressions WHERE address LIKE ?", like)) == 900

    def cli(*args: str) -> str:
        res = CliRunner().invoke(main, [*args, "--db", str(e2e.milter.db)], catch_exceptions=False)
        return res.output

    held = json.loads(cli("suppressed", "--pending", "--format", "json"))
    mine = [h for h in held if h["address"].endswith(f"-{tag}@example.org")]
    assert len(mine) == 900 and {h["message_row"] for h in mine} == {row["id"]}
    assert "900 rejected" in cli("reject", "--message", str(row["id"]), "--reason", "e2e")
    assert e2e.query("SELECT 1 FROM pending_suppressions WHERE address LIKE ?", like) == []


# -- 6. a different report with the same Message-ID is stored; a retry is not ----------------------------------


def test_two_reports_sharing_a_message_id_are_both_stored_and_a_retry_is_a_duplicate(e2e: E2E, token: str) -> None:
    first = M.hard_bounce(token, recipient="anna@example.org")
    other = M.hard_bounce(token, recipient="bert@example.org")  # same Message-ID, envelope and bounce address
    assert first != other and f"<{token}@".encode() in first and f"<{token}@".encode() in other
    qids = []
    for raw in (first, other, first):
        code, reply, qid = e2e.send("", [BOUNCES], raw)
        assert code == 250, reply
        qids.append(qid)
    stored = e2e.message_rows(token)
    assert len(stored) == 2
    addresses = {r["address"] for row in stored for r in e2e.recipient_rows(row["id"])}
    assert addresses == {"anna@example.org", "bert@example.org"}
    logged = {e["queue_id"]: e for e in e2e.milter.events("message") if e.get("queue_id") in qids}
    assert [logged[q]["stored"] for q in qids] == [True, True, False]
    assert logged[qids[2]]["duplicate"] is True and "duplicate" not in logged[qids[0]]
    assert logged[qids[2]]["duplicate_of"] == next(r["id"] for r in stored if r["queue_id"] == qids[0])
    # every copy is still delivered to the bounce mailbox: dedup concerns the store, not the mail
    e2e.wait_queue()
