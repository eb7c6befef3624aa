"""The SMTP stage read from a diagnostic's own words (classify/stage.py)."""

from __future__ import annotations

import pytest

from bouncemilter.classify import classify
from bouncemilter.classify.stage import split


@pytest.mark.parametrize(
    ("diagnostic", "stage"),
    [
        # Postfix smtp(8)'s suffix, removed from the words
        ("550 5.1.1 <a@example.org>: User unknown (in reply to RCPT TO command)", "RCPT"),
        ("554 5.7.1 Spam (in reply to end of DATA command)", "DATA"),
        # qmail-remote.c's own sentences, whatever wraps them
        ("192.0.2.7 does not like recipient. Remote host said: 550 No such user", "RCPT"),
        ("Connected to 192.0.2.7 but sender was rejected. Remote host said: 553 sorry", "MAIL"),
        ("192.0.2.7 failed on DATA command. Remote host said: 554 rejected", "DATA"),
        ("Connected to 192.0.2.7 but greeting failed. Remote host said: 421 busy", "CONN"),
        ("550 5.1.1 User unknown", ""),
    ],
)
def test_split_names_the_stage(diagnostic: str, stage: str) -> None:
    words, found = split(diagnostic)
    assert found == stage
    assert "(in reply to" not in words


def test_qmail_sentence_in_a_provider_template_decides_user_unknown() -> None:
    # not qmail-send's own template, so no qmail detector: the sentence still names the RCPT stage
    raw = (
        b"From: MAILER-DAEMON@mail.example.net\nTo: bounces@example.com\nSubject: failure notice\n\n"
        b"We could not deliver your message to the following address.\n\n<judy@example.org>:\n"
        b"192.0.2.7 does not like recipient.\nRemote host said: 550 judy@example.org... No such user\n"
        b"Giving up on 192.0.2.7.\n"
    )
    [row] = classify(raw).recipients
    assert (row.recipient, row.smtp_command, row.reason, row.hard) == ("judy@example.org", "RCPT", "userunknown", True)


def test_generic_row_without_words_keeps_the_line_that_named_it() -> None:
    raw = (
        b"From: postmaster@mx.example.net\nTo: bounces@example.com\nSubject: Delivery Status Notification (Failure)\n\n"
        b"This is an automatically generated Delivery Status Notification.\n\n"
        b"Delivery to the following recipients failed.\n\n       judy@example.org\n"
    )
    [row] = classify(raw).recipients
    assert row.recipient == "judy@example.org"
    assert row.diagnostic == "Delivery to the following recipients failed."
    assert (row.reason, row.hard) == ("onhold", False)


def test_generic_row_takes_the_words_after_the_address_when_its_sentence_goes_on() -> None:
    raw = (
        b"From: Postmaster <postmaster@mx.example.net>\nTo: bounces@example.com\nSubject: Mail Delivery Warning\n\n"
        b"Delivery of email to this address\n\n\"judy@example.org\"\n\nhas been postponed due to a full mailbox.\n\n"
        b"We will continue to try to deliver your message over the next few days.\n"
    )
    result = classify(raw)
    assert result.kind == "delay"
    [row] = result.recipients
    assert row.diagnostic == "has been postponed due to a full mailbox."
    assert (row.reason, row.hard) == ("mailboxfull", False)
