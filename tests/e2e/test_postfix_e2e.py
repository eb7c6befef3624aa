"""End to end through a real Postfix: SMTP in, milter verdict, SQLite rows, maildir contents."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable

import pytest

from . import messages as M
from .conftest import BOUNCES, E2E, USER


def _headers(path) -> email.message.Message:  # type: ignore[no-untyped-def]
    with open(path, "rb") as fh:
        return email.message_from_binary_file(fh, policy=email.policy.compat32)


CASES: list[tuple[str, Callable[[str], bytes], str, str, str, bool, str]] = [
    # id, builder, kind, recipient, reason, hard, status
    ("hard-dsn", M.hard_bounce, "bounce", "alice@example.org", "userunknown", True, "5.1.1"),
    ("soft-dsn", M.soft_bounce, "bounce", "bob@example.org", "mailboxfull", False, "5.2.2"),
    ("qmail-text", M.qmail_bounce, "bounce", "carol@example.net", "userunknown", True, "5.1.1"),
    ("delay", M.delay_warning, "delay", "dora@example.org", "", False, "4.4.1"),
    ("arf", M.arf_complaint, "complaint", "frank@example.com", "feedback", False, ""),
]


@pytest.mark.parametrize(
    ("builder", "kind", "recipient", "reason", "hard", "status"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_report_is_classified_stored_and_tagged(
    e2e: E2E, token: str, builder, kind: str, recipient: str, reason: str, hard: bool, status: str
) -> None:
    code, reply, qid = e2e.send("", [BOUNCES], builder(token))
    assert code == 250, reply
    row = e2e.wait_message_row(token)
    assert row["kind"] == kind
    assert row["action"] == "accept"
    assert row["queue_id"] == qid
    assert row["envelope_from"] == ""
    assert row["client_addr"] == "127.0.0.1"
    assert row["helo"] == "client.example"
    assert BOUNCES in row["bounce_addresses"]
    assert row["processing_ms"] >= 0
    rcpts = e2e.recipient_rows(row["id"])
    assert [r["address"] for r in rcpts] == [recipient]
    if reason:
        assert rcpts[0]["reason"] == reason
    assert bool(rcpts[0]["hard"]) is hard
    assert rcpts[0]["status"] == status
    assert rcpts[0]["domain"] == recipient.split("@")[1]

    delivered = _headers(e2e.wait_file("bounces", token))
    assert delivered["X-Bounce-Kind"] == kind
    assert delivered["X-Bounce-Recipient"] == recipient
    if reason:
        assert delivered["X-Bounce-Reason"] == reason
    if status:
        assert delivered["X-Bounce-Status"] == status

    logged = [e for e in e2e.milter.events("message") if e.get("queue_id") == qid]
    assert len(logged) == 1
    assert logged[0]["kind"] == kind and logged[0]["action"] == "accept" and logged[0]["hard"] is hard
    assert logged[0]["recipients"][0]["recipient"] == recipient


def test_verp_address_names_the_subscriber(e2e: E2E, token: str) -> None:
    # The report names a forwarding address; the VERP return path names the subscriber we mailed.
    verp = "bounces+erin=example.org@test.example"
    code, reply, _ = e2e.send("", [verp], M.hard_bounce(token, "erin.old@example.net"))
    assert code == 250, reply
    row = e2e.wait_message_row(token)
    assert verp in row["bounce_addresses"]
    assert "erin@example.org" in row["verp_recipients"]
    (rcpt,) = e2e.recipient_rows(row["id"])
    assert rcpt["address"] == "erin@example.org"
    assert rcpt["reported_address"] == "erin.old@example.net"
    assert rcpt["verp_address"] == "erin@example.org"
    assert rcpt["reason"] == "userunknown"
    path = e2e.wait_file("bounces", token)  # recipient_delimiter=+ delivers bounces+... to bounces
    assert _headers(path)["X-Bounce-Kind"] == "bounce"


def test_auto_reply_discarded_when_configured(e2e: E2E, token: str) -> None:
    code, reply, qid = e2e.send("gina@example.com", [BOUNCES], M.auto_reply(token))
    assert code == 250, reply  # a discard is invisible to the sender
    row = e2e.wait_message_row(token)
    assert row["kind"] == "auto_reply"
    assert row["action"] == "discard"
    e2e.wait_queue()
    assert f"{qid}: milter-discard" in e2e.rig.log.read_text()
    assert e2e.find_file("bounces", token) is None


def test_mixed_recipients_only_our_copy_is_discarded(e2e: E2E, token: str) -> None:
    code, reply, qid = e2e.send("gina@example.com", [BOUNCES, USER], M.auto_reply(token))
    assert code == 250, reply
    row = e2e.wait_message_row(token)
    assert row["action"] == "discard"
    delivered = e2e.wait_file("user", token)
    assert _headers(delivered)["X-Bounce-Kind"] == "auto_reply"
    e2e.wait_queue()
    assert e2e.find_file("bounces", token) is None
    assert f"{qid}: milter-discard" not in e2e.rig.log.read_text()


def test_bounce_with_ordinary_recipient_reaches_both(e2e: E2E, token: str) -> None:
    code, reply, _ = e2e.send("", [BOUNCES, USER], M.hard_bounce(token, "ivan@example.org"))
    assert code == 250, reply
    row = e2e.wait_message_row(token)
    assert row["kind"] == "bounce" and row["action"] == "accept"
    assert row["bounce_addresses"] == f'["{BOUNCES}"]'
    for box in ("bounces", "user"):
        assert _headers(e2e.wait_file(box, token))["X-Bounce-Recipient"] == "ivan@example.org"


def test_ordinary_mail_is_untouched_and_never_examined(e2e: E2E, token: str) -> None:
    raw = M.ordinary(token)
    code, reply, qid = e2e.send("sender@example.net", [USER], raw)
    assert code == 250, reply
    path = e2e.wait_file("user", token)
    content = path.read_bytes()
    assert b"X-Bounce-" not in content
    # Postfix prepends Return-Path/Delivered-To/Received; the rest is byte for byte what was sent.
    assert content.replace(b"\r\n", b"\n").endswith(raw.replace(b"\r\n", b"\n"))
    assert e2e.message_rows(token) == []
    # The milter accepted at DATA: it logged the skip, and never a message line for this queue id.
    skipped = [e for e in e2e.milter.events("skipped") if e.get("queue_id") == qid]
    assert len(skipped) == 1
    assert not [e for e in e2e.milter.events("message") if e.get("queue_id") == qid]


def test_postfix_own_bounce_for_unknown_local_user(e2e: E2E, token: str) -> None:
    # Local injection to a user that does not exist: local(8) fails, bounce(8) writes a DSN to the
    # sender, and that DSN reaches the milter through non_smtpd_milters.
    e2e.rig.sendmail(BOUNCES, ["nosuch@test.example"], M.ordinary(token))
    row = e2e.wait_message_row(token, column="original_message_id")
    assert row["kind"] == "bounce"
    assert row["envelope_from"] == ""
    assert row["action"] == "accept"
    (rcpt,) = e2e.recipient_rows(row["id"])
    assert rcpt["address"] == "nosuch@test.example"
    assert rcpt["reason"] == "userunknown"
    assert rcpt["hard"] == 1
    delivered = _headers(e2e.wait_file("bounces", token))
    assert delivered["X-Bounce-Kind"] == "bounce"
    assert delivered["X-Bounce-Recipient"] == "nosuch@test.example"
    logged = [e for e in e2e.milter.events("message") if e.get("queue_id") == row["queue_id"]]
    assert logged and logged[0]["internal"] is True


def test_auto_reply_kept_when_not_configured(e2e: E2E, token: str) -> None:
    e2e.milter.stop()
    e2e.milter.start(auto_reply="accept")
    try:
        code, reply, _ = e2e.send("gina@example.com", [BOUNCES], M.auto_reply(token))
        assert code == 250, reply
        row = e2e.wait_message_row(token)
        assert row["kind"] == "auto_reply" and row["action"] == "accept"
        assert _headers(e2e.wait_file("bounces", token))["X-Bounce-Kind"] == "auto_reply"
    finally:
        e2e.milter.stop()
        e2e.milter.start(auto_reply="discard")


def test_forged_bounce_headers_are_replaced_by_ours(e2e: E2E, token: str) -> None:
    # A sender cannot make the bounce mailbox believe its own X-Bounce-* claims: only ours arrive.
    forged = b"X-Bounce-Kind: complaint\r\nX-Bounce-Recipient: victim@example.com\r\nx-bounce-kind: x\r\n"
    code, reply, _ = e2e.send("", [BOUNCES], forged + M.hard_bounce(token))
    assert code == 250, reply
    delivered = _headers(e2e.wait_file("bounces", token))
    assert delivered.get_all("X-Bounce-Kind") == ["bounce"]
    assert delivered.get_all("X-Bounce-Recipient") == ["alice@example.org"]
