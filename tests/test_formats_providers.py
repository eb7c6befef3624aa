"""Provider bounce formats, on hand-written fixtures modelled on each provider's format."""

from __future__ import annotations

import pytest

from bouncemilter.classify import classify
from bouncemilter.classify.formats import providers
from bouncemilter.classify.mime import parse_message

# file, detector, kind, [(recipient, action, status, reply code, diagnostic, remote MTA, reason or None)]
CASES = [
    (
        "gmail-permanent.eml",
        "google",
        "bounce",
        [
            (
                "nobody@example.org",
                "failed",
                "5.1.1",
                "550",
                "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in local recipient table",
                "mx1.example.org",
                None,
            )
        ],
    ),
    (
        "gmail-delay.eml",
        "google",
        "delay",
        [("slow@example.net", "delayed", "4.2.2", "452", "452 4.2.2 Mailbox over quota (state 14)", "", None)],
    ),
    (
        "gmail-new-style-nodsn.eml",
        "google",
        "bounce",
        [
            (
                "friend@example.net",
                "failed",
                "",
                "",
                "Unspecified Error (SENT_SECOND_EHLO): Smtp server does not advertise AUTH capability",
                "",
                "rejected",
            )
        ],
    ),
    ("googlegroups.eml", "google", "bounce", [("team-list@googlegroups.test", "failed", "", "", None, "", "rejected")]),
    (
        "yahoo.eml",
        "yahoo",
        "bounce",
        [
            (
                "full@example.org",
                "failed",
                "5.2.2",
                "552",
                "552 5.2.2 <full@example.org>: Mailbox full, try again later",
                "",
                None,
            )
        ],
    ),
    (
        "mailru.eml",
        "mailru",
        "bounce",
        [
            (
                "missing@example.org",
                "failed",
                "5.1.1",
                "550",
                "550 5.1.1 <missing@example.org>: No such user",
                "mx.example.org",
                None,
            )
        ],
    ),
    (
        "gmx.eml",
        "gmx",
        "bounce",
        [
            (
                "gone@example.org",
                "failed",
                "5.1.1",
                "",
                "5.1.1 <gone@example.org>... User unknown",
                "mx.example.org",
                None,
            )
        ],
    ),
    (
        "zoho.eml",
        "zoho",
        "bounce",
        [
            ("one@example.org", "failed", "5.1.1", "550", "550 5.1.1 <one@example.org>... User unknown", "", None),
            ("two@example.org", "failed", "5.2.2", "552", "552 5.2.2 <two@example.org>... Quota exceeded", "", None),
        ],
    ),
    (
        "verizon-vtext.eml",
        "verizon",
        "bounce",
        [("5550100@vtext.com", "failed", "", "550", "550 Requested action not taken: no such user here", "", None)],
    ),
    (
        "biglobe.eml",
        "biglobe",
        "bounce",
        [
            (
                "user@mail.example.jp",
                "failed",
                "",
                "",
                "The number of messages in recipient's mailbox exceeded the local limit.",
                "",
                "mailboxfull",
            )
        ],
    ),
    ("facebook.eml", "facebook", "bounce", [("someone@facebook.com", "failed", "5.1.1", "550", None, "", "filtered")]),
    (
        "office365-text.eml",
        "office365",
        "bounce",
        [
            (
                "left@contoso-example.onmicrosoft.com",
                "failed",
                "5.1.1",
                "550",
                "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found",
                "",
                None,
            )
        ],
    ),
    (
        "ses-json-bounce.eml",
        "amazonses-json",
        "bounce",
        [
            (
                "full@example.org",
                "failed",
                "5.2.2",
                "552",
                "552 5.2.2 Mailbox quota exceeded",
                "a1-2.smtp-out.example.test",
                "mailboxfull",
            )
        ],
    ),
    ("ses-json-complaint.eml", "amazonses-json", "complaint", [("reader@example.org", "", "", "", "", "", "feedback")]),
    (
        "ses-receiving.eml",
        "amazonses-receiving",
        "bounce",
        [("closed@inbound.example.org", "failed", "4.0.0", "450", "450 4.0.0 Temporary failure", "", "onhold")],
    ),
    (
        "workmail-text.eml",
        "amazonses-text",
        "bounce",
        [("absent@example.org", "failed", "5.1.1", "550", "550 5.1.1 <absent@example.org>... User unknown", "", None)],
    ),
]


@pytest.mark.parametrize(("name", "detector", "kind", "expected"), CASES, ids=[c[0] for c in CASES])
def test_provider_format(fixture_bytes, name, detector, kind, expected) -> None:
    result = classify(fixture_bytes(f"providers/{name}"))
    assert result.detector == detector
    assert result.kind == kind
    assert [r.recipient for r in result.recipients] == [e[0] for e in expected]
    for row, want in zip(result.recipients, expected, strict=True):
        _addr, action, status, reply, diagnostic, remote, reason = want
        if action:
            assert row.action == action
        assert row.status == status
        assert row.reply_code == reply
        if diagnostic is not None:
            assert row.diagnostic == diagnostic
        assert row.remote_mta == remote
        if reason is not None:
            assert row.reason == reason


def test_google_groups_diagnostic_is_the_notice_without_greeting(fixture_bytes) -> None:
    row = classify(fixture_bytes("providers/googlegroups.eml")).recipients[0]
    assert row.diagnostic.startswith("We're writing to let you know that the group you tried to contact (team-list)")
    assert "This group may not be open to posting." in row.diagnostic


def test_ses_json_keeps_original_message_facts(fixture_bytes) -> None:
    result = classify(fixture_bytes("providers/ses-json-bounce.eml"))
    assert result.original is not None
    assert result.original.message_id == "<orig-0009@example.com>"
    assert result.original.subject == "Invoice"


def test_ordinary_mail_is_taken_by_no_provider_detector(fixture_bytes) -> None:
    msg = parse_message(fixture_bytes("providers/ordinary-mail.eml"))
    assert all(detect(msg) is None for _name, detect in providers.DETECTORS)
    assert classify(fixture_bytes("providers/ordinary-mail.eml")).kind == "not_bounce"


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_only_the_own_detector_takes_each_fixture(fixture_bytes, name) -> None:
    msg = parse_message(fixture_bytes(f"providers/{name}"))
    taken = [n for n, detect in providers.DETECTORS if (d := detect(msg)) is not None and d.recipients]
    assert len(taken) == 1


def test_gmx_keeps_the_stage_its_exim_wording_names(fixture_bytes) -> None:
    # "SMTP error from remote server after RCPT command:" - a user unknown at RCPT is userunknown, not filtered
    raw = fixture_bytes("providers/gmx.eml").replace(b"5.1.1 <gone@example.org>... User unknown", b"550 user unknown")
    [row] = classify(raw).recipients
    assert (row.smtp_command, row.reason, row.hard) == ("RCPT", "userunknown", True)
    assert row.diagnostic == "550 user unknown"
