"""Automated mail that says the address is alive is never a bounce, a delay or a complaint, and
complaints that are not RFC 5965 are still complaints. Fixtures in tests/fixtures/not_failure are
written by hand after the wording of the services named in each case."""

from __future__ import annotations

import pytest

from bouncemilter.classify import classify

# file, kind, detector, words the marker must contain
CASES = [
    ("boxbe.eml", "auto_reply", "challenge-response", "boxbe.com"),
    ("tmda.eml", "auto_reply", "challenge-response", "TMDA"),
    ("verification.eml", "auto_reply", "challenge-response", "Sender verification required"),
    ("whitelist.eml", "auto_reply", "challenge-response", "add me to your whitelist"),
    ("mdn.eml", "auto_reply", "mdn", "read receipt (MDN): manual-action/MDN-sent-manually; displayed"),
    ("read_outlook.eml", "auto_reply", "mdn", "read receipt"),
    ("xarf.eml", "complaint", "arf", "X-ARF"),
    ("ses_complaint_forward.eml", "complaint", "arf", "complaints@email-abuse.amazonses.com"),
]


@pytest.mark.parametrize(("name", "kind", "detector", "marker"), CASES, ids=[c[0] for c in CASES])
def test_kind_and_marker(fixture_bytes, name: str, kind: str, detector: str, marker: str) -> None:
    result = classify(fixture_bytes(f"not_failure/{name}"))
    assert (result.kind, result.detector) == (kind, detector)
    assert marker in result.evidence
    for row in result.recipients:
        assert not row.hard
        assert row.reason == ("feedback" if kind == "complaint" else "vacation")
        assert row.reason_rule  # the marker that decided, for the admin
    if kind == "auto_reply":
        assert result.autoreply_markers[0] == result.evidence


def test_read_receipt_names_the_reader(fixture_bytes) -> None:
    result = classify(fixture_bytes("not_failure/mdn.eml"))
    assert [r.recipient for r in result.recipients] == ["heidi@example.org"]
    assert result.original is not None
    assert result.original.message_id == "<newsletter-2026-11.heidi@example.com>"


def test_complaints_name_the_complaining_recipient(fixture_bytes) -> None:
    xarf = classify(fixture_bytes("not_failure/xarf.eml"))
    assert [r.recipient for r in xarf.recipients] == ["judy@isp.example.net"]
    assert xarf.feedback is not None and xarf.feedback.feedback_type == "spam"
    ses = classify(fixture_bytes("not_failure/ses_complaint_forward.eml"))
    assert [r.recipient for r in ses.recipients] == ["karl@example.net"]


INLINE_ARF = b"""From: Feedback <fbl@isp.example.net>
To: bounces@example.com
Subject: FW: spam report
Message-ID: <inline-arf@isp.example.net>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b"

--b
Content-Type: text/plain

This is an email abuse report for an email message received from IP 192.0.2.40.

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Rcpt-To: <nina@isp.example.net>
Source-IP: 192.0.2.40

--b
Content-Type: message/rfc822

From: News <news@example.com>
To: nina@isp.example.net
Subject: November newsletter

Hello
--b--
"""


def test_arf_fields_written_into_the_text_are_a_complaint() -> None:
    result = classify(INLINE_ARF)
    assert result.kind == "complaint"
    assert [r.recipient for r in result.recipients] == ["nina@isp.example.net"]
    assert result.feedback is not None
    assert (result.feedback.feedback_type, result.feedback.source_ip) == ("abuse", "192.0.2.40")


def test_challenge_wording_from_a_person_is_ordinary_mail(fixture_bytes) -> None:
    # The same words without any automated-mail header: a person writing to us.
    for name in ("person_asks_whitelist.eml", "confirm_attendance.eml"):
        result = classify(fixture_bytes(f"not_bounce/{name}"))
        assert result.kind == "not_bounce", name


def test_a_real_bounce_that_mentions_verification_stays_a_bounce() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.org\nTo: bounces@example.com\n"
        b"Subject: Undelivered Mail Returned to Sender\nAuto-Submitted: auto-replied\n\n"
        b"This is the mail system at host mx.example.org.\n\n"
        b"<olga@example.org>: host in.example.org[192.0.2.9] said: 550 5.7.1 Sender verification\n"
        b"    required: please confirm your address (in reply to RCPT TO command)\n"
    )
    result = classify(raw)
    assert result.kind == "bounce" and result.detector == "postfix"
