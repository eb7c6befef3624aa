"""The classic MTA bounce formats (formats/mta*.py), on hand-written messages in tests/fixtures/mta."""

from __future__ import annotations

import pytest

from bouncemilter.classify import classify
from bouncemilter.classify.formats import mta
from bouncemilter.classify.formats.mta_common import clean_reply
from bouncemilter.classify.mime import parse_message

# file, detector, kind, {recipient: (status, reply code, words the diagnostic must contain)}
CASES = [
    (
        "exim.eml",
        "exim",
        "bounce",
        {
            "bob@example.com": ("5.1.1", "550", "mailbox bob does not exist here, please check the spelling"),
            "carol@example.org": ("", "", "Unrouteable address"),
        },
    ),
    (
        "exim_delay.eml",
        "exim",
        "delay",
        {"dave@example.net": ("4.7.1", "451", "Greylisted, please try again")},
    ),
    (
        "qmail.eml",
        "qmail",
        "bounce",
        {
            "erin@example.com": ("5.1.1", "550", "User unknown in local recipient table"),
            "frank@nowhere.test": ("5.1.2", "", "couldn't find any host named nowhere.test"),
        },
    ),
    ("dma.eml", "dma", "bounce", {"grace@example.com": ("5.2.2", "552", "over its storage quota and cannot")}),
    (
        "opensmtpd.eml",
        "opensmtpd",
        "bounce",
        {
            "heidi@example.org": ("5.7.1", "550", "Access denied by policy"),
            "ivan@example.org": ("", "", "Domain does not exist"),
        },
    ),
    (
        "sendmail_v5.eml",
        "sendmail",
        "bounce",
        {
            "judy@example.com": ("", "550", "No such mailbox: judy"),
            "karl@gone.test": ("", "550", "Host unknown"),
        },
    ),
    (
        "sendmail_dsn.eml",
        "sendmail",
        "bounce",
        {"leo@example.com": ("5.7.26", "550", "The domain has a DMARC policy of reject")},
    ),
    (
        "postfix_text.eml",
        "postfix",
        "bounce",
        {"mallory@example.net": ("5.1.1", "550", "User unknown in relay recipient table")},
    ),
    (
        "postfix_delayed.eml",
        "postfix",
        "delay",
        {"nina@example.com": ("4.4.1", "", "Connection timed out")},
    ),
    ("courier.eml", "courier", "bounce", {"oscar@example.org": ("5.2.2", "552", "Mailbox quota exceeded")}),
    ("james.eml", "apache-james", "bounce", {"victor@example.com": ("5.1.1", "550", "mailbox victor unavailable")}),
    ("x1.eml", "x1", "bounce", {"wendy@legacy.example.com": ("", "", "User unknown")}),
    ("x3.eml", "x3", "bounce", {"xavier@example.org": ("5.1.1", "550", "No such user here")}),
    ("x6.eml", "x6", "bounce", {"yolanda@example.net": ("5.1.1", "550", "does not exist")}),
    ("fml.eml", "fml", "bounce", {"club@lists.example.org": ("", "", "not a member of this mailing list")}),
]


@pytest.mark.parametrize(("name", "detector", "kind", "expected"), CASES, ids=[c[0] for c in CASES])
def test_mta_format(fixture_bytes, name, detector, kind, expected):
    result = classify(fixture_bytes(f"mta/{name}"))
    assert result.detector == detector
    assert result.kind == kind
    got = {r.recipient: r for r in result.recipients}
    assert set(got) == set(expected)
    for addr, (status, reply_code, words) in expected.items():
        row = got[addr]
        assert row.status == status, addr
        assert row.reply_code == reply_code, addr
        assert words in row.diagnostic, (addr, row.diagnostic)
        assert "\n" not in row.diagnostic
        assert row.action == ("delayed" if kind == "delay" else "failed")


def test_exim_details(fixture_bytes):
    result = classify(fixture_bytes("mta/exim.eml"))
    bob = next(r for r in result.recipients if r.recipient == "bob@example.com")
    assert bob.remote_mta == "mx1.example.com"
    # The server's words only: no Exim boilerplate, the repeated "550-5.1.1" prefixes folded.
    assert bob.diagnostic.startswith("550 5.1.1 The mailbox bob")
    assert "SMTP error from remote" not in bob.diagnostic
    assert bob.diagnostic.count("550") == 1
    carol = next(r for r in result.recipients if r.recipient == "carol@example.org")
    assert carol.reason == "hostunknown"  # Exim's own message, not a remote reply


def test_qmail_remote_and_boilerplate(fixture_bytes):
    result = classify(fixture_bytes("mta/qmail.eml"))
    erin = next(r for r in result.recipients if r.recipient == "erin@example.com")
    assert erin.remote_mta == "192.0.2.25"
    assert "Giving up" not in erin.diagnostic
    frank = next(r for r in result.recipients if r.recipient == "frank@nowhere.test")
    assert "(#5.1.2)" not in frank.diagnostic


def test_sendmail_transcript_completes_dsn(fixture_bytes):
    # The DSN's Diagnostic-Code has only the first line of the reply; the transcript has all three.
    row = classify(fixture_bytes("mta/sendmail_dsn.eml")).recipients[0]
    assert row.diagnostic.startswith("550 5.7.26 This mail is unauthenticated")
    assert row.diagnostic.endswith("policy of reject.")
    assert row.smtp_command == "DATA"  # the transcript's ">>> DATA"
    assert row.remote_mta == "mx.example.com"


def test_v5_sendmail_uses_the_remote_reply(fixture_bytes):
    rows = {r.recipient: r for r in classify(fixture_bytes("mta/sendmail_v5.eml")).recipients}
    assert rows["judy@example.com"].diagnostic.startswith("550 No such mailbox: judy")
    assert rows["judy@example.com"].remote_mta == "mx.example.com"


def test_postfix_text_strips_host_keeps_stage(fixture_bytes):
    row = classify(fixture_bytes("mta/postfix_text.eml")).recipients[0]
    assert row.remote_mta == "mx.example.net"
    assert row.diagnostic.startswith("550 5.1.1 <mallory@example.net>")
    # The SMTP stage is a field, read from Postfix's "(in reply to ... command)"; the words are the server's.
    assert row.smtp_command == "RCPT"
    assert "in reply to" not in row.diagnostic


def test_stage_is_a_field_in_one_normal_form(fixture_bytes):
    # Each format names the stage its own way (qmail "does not like recipient", Sendmail ">>> RCPT To:",
    # dma "did not like our RCPT TO"); all become the same field, and the diagnostic keeps the reply only.
    rows = {r.recipient: r for r in classify(fixture_bytes("mta/qmail.eml")).recipients}
    assert rows["erin@example.com"].smtp_command == "RCPT"
    judy = {r.recipient: r for r in classify(fixture_bytes("mta/sendmail_v5.eml")).recipients}["judy@example.com"]
    assert judy.diagnostic == "550 No such mailbox: judy"
    assert judy.smtp_command == "RCPT"
    dma = classify(fixture_bytes("mta/dma.eml")).recipients[0]
    assert dma.smtp_command == "RCPT"
    assert "in reply to" not in dma.diagnostic


def test_not_bounce_taken_by_no_mta_detector(fixture_bytes):
    msg = parse_message(fixture_bytes("mta/not_bounce.eml"))
    for name, detect in mta.DETECTORS:
        assert detect(msg) is None, name
    assert classify(fixture_bytes("mta/not_bounce.eml")).kind == "not_bounce"


def test_clean_reply():
    assert clean_reply("550-5.7.1 abc 550-5.7.1 def 550 5.7.1 ghi") == "550 5.7.1 abc def ghi"
    folded = clean_reply("554-mx ESMTP not available 554-No SMTP service 554 Bye")
    assert folded == "554 mx ESMTP not available No SMTP service Bye"
    assert clean_reply("User unknown") == "User unknown"
