"""Rejections sent as MDNs (RFC 5429 Sieve reject, Dovecot's own refusals) are bounces of the MDN's
Final-Recipient; read receipts stay auto-replies. Messages written by hand after Dovecot/Pigeonhole's wording."""

from __future__ import annotations

import pytest

from bouncemilter.classify import classify


def mdn(disposition: str, text: str, final: str = "ivan@example.org", original: str = "") -> bytes:
    orig = f"Original-Recipient: rfc822;{original}\n" if original else ""
    return f"""Return-Path: <>
From: Mail Delivery Subsystem <MAILER-DAEMON@mail.example.org>
To: <bounces@example.com>
Subject: Automatically rejected mail
Message-ID: <reject-1@mail.example.org>
Auto-Submitted: auto-replied (rejected)
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary="r1"

--r1
Content-Type: text/plain; charset=utf-8

Your message to <{final}> was automatically rejected:
{text}

--r1
Content-Type: message/disposition-notification

Reporting-UA: mail.example.org; Dovecot Mail Delivery Agent
{orig}Final-Recipient: rfc822; {final}
Original-Message-ID: <news-7@example.com>
Disposition: {disposition}

--r1
Content-Type: message/rfc822

From: News <news@example.com>
To: {final}
Subject: News
Message-ID: <news-7@example.com>

Hello
--r1--
""".encode()


REJECT = "automatic-action/MDN-sent-automatically; deleted"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Quota exceeded (mailbox for user is full)", "mailboxfull"),  # Dovecot quota plugin
        ("Mailbox is over quota", "mailboxfull"),
        ("I do not accept mail from this sender.", "filtered"),  # a user's Sieve reject: their filter
    ],
)
def test_rejection_mdn_is_a_bounce_of_the_final_recipient(text: str, reason: str) -> None:
    result = classify(mdn(REJECT, text))
    assert (result.kind, result.detector) == ("bounce", "mdn-reject")
    [row] = result.recipients
    assert (row.recipient, row.action, row.reason, row.hard) == ("ivan@example.org", "failed", reason, False)
    assert text.split(" (")[0] in row.diagnostic
    assert row.reason_rule
    assert result.original is not None and result.original.message_id == "<news-7@example.com>"


def test_rejection_mdn_keeps_the_address_the_sender_used() -> None:
    [row] = classify(
        mdn(REJECT, "Quota exceeded", final="ivan@mailstore.example.org", original="ivan@example.org")
    ).recipients
    assert (row.recipient, row.original_recipient) == ("ivan@mailstore.example.org", "ivan@example.org")


@pytest.mark.parametrize(
    "disposition",
    [
        "manual-action/MDN-sent-manually; displayed",  # a person read it
        "manual-action/MDN-sent-manually; deleted",  # a person deleted it unread: not a failure
        "automatic-action/MDN-sent-automatically; displayed",
        "automatic-action/MDN-sent-automatically; dispatched",
    ],
)
def test_other_mdns_stay_read_receipts(disposition: str) -> None:
    result = classify(mdn(disposition, "Quota exceeded"))
    assert (result.kind, result.detector) == ("auto_reply", "mdn")
    assert not any(r.hard for r in result.recipients)
