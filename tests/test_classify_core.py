"""The pipeline's own detectors: RFC 3464/6533 DSNs, ARF, JMRP, auto-replies, generic text, not-bounce."""

from __future__ import annotations

import pytest

from bouncemilter import classify


def dsn(action: str, status: str, diagnostic: str, *, global_dsn: bool = False, extra: str = "") -> bytes:
    kind = "global-delivery-status" if global_dsn else "delivery-status"
    return f"""From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: bounces@example.com
Subject: Delivery Status Notification
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

Your message could not be delivered.

--b1
Content-Type: message/{kind}

Reporting-MTA: dns; mx.example.net
Original-Envelope-Id: ENV-42

Final-Recipient: rfc822; <Bob@Example.ORG>
Action: {action}
Status: {status}
Remote-MTA: dns; mx.example.org
Diagnostic-Code: smtp; {diagnostic}
{extra}
--b1
Content-Type: message/rfc822

From: news@example.com
To: bob@example.org
Subject: Hello Bob
Message-ID: <orig-1@example.com>

body
--b1--
""".replace("\n", "\r\n").encode()


def test_rfc3464_hard_bounce_fields() -> None:
    result = classify(dsn("failed", "5.1.1", "550 5.1.1 <bob@example.org>: User unknown"))
    assert result.kind == "bounce"
    assert result.detector == "rfc3464"
    [row] = result.recipients
    assert row.recipient == "bob@example.org"
    assert (row.action, row.status, row.reply_code) == ("failed", "5.1.1", "550")
    assert row.remote_mta == "mx.example.org"
    assert row.reason == "userunknown" and row.hard
    assert "User unknown" in row.diagnostic
    assert result.original is not None
    assert result.original.message_id == "<orig-1@example.com>"
    assert result.original.subject == "Hello Bob"
    assert result.original.envelope_id == "ENV-42"


def test_rfc6533_global_dsn() -> None:
    result = classify(dsn("failed", "5.2.2", "552 5.2.2 Mailbox full", global_dsn=True))
    assert result.detector == "rfc6533"
    assert result.recipients[0].reason == "mailboxfull"
    assert result.recipients[0].hard is False


def test_delay_is_not_a_failure() -> None:
    result = classify(dsn("delayed", "4.4.1", "421 4.4.1 Connection timed out"))
    assert result.kind == "delay"
    assert result.recipients[0].action == "delayed"
    assert not result.recipients[0].hard


def test_delivered_report() -> None:
    result = classify(dsn("delivered", "2.0.0", "250 2.0.0 OK"))
    assert result.kind == "delivered"
    assert result.recipients[0].reason == "delivered"


def test_bounce_with_auto_submitted_is_not_auto_reply() -> None:
    result = classify(dsn("failed", "5.1.1", "550 5.1.1 no such user"))
    assert result.kind == "bounce"
    assert result.autoreply_markers == []


ARF = b"""From: Feedback Loop <fbl@isp.example.net>
To: abuse@example.com
Subject: Abuse report
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="arf"

--arf
Content-Type: text/plain

This is an email abuse report.

--arf
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/2.1
Version: 1
Source-IP: 192.0.2.7
Original-Rcpt-To: <carol@isp.example.net>
Original-Rcpt-To: dave@isp.example.net
Arrival-Date: Thu, 26 Nov 2026 10:00:00 +0000

--arf
Content-Type: message/rfc822

From: news@example.com
To: carol@isp.example.net
Subject: Deals
Message-ID: <deal-7@example.com>

buy
--arf--
"""


def test_arf_complaint() -> None:
    result = classify(ARF)
    assert result.kind == "complaint"
    assert [r.recipient for r in result.recipients] == ["carol@isp.example.net", "dave@isp.example.net"]
    assert {r.reason for r in result.recipients} == {"feedback"}
    assert result.feedback is not None
    assert (result.feedback.feedback_type, result.feedback.user_agent, result.feedback.source_ip) == (
        "abuse",
        "ExampleFBL/2.1",
        "192.0.2.7",
    )
    assert result.original is not None and result.original.message_id == "<deal-7@example.com>"


JMRP = b"""From: staff@hotmail.example
To: abuse@example.com
Subject: complaint about message from 192.0.2.9
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="j"

--j
Content-Type: message/rfc822
Content-Disposition: inline

X-HmXmrOriginalRecipient: erin@hotmail.example
X-Reporter-IP: 192.0.2.9
From: news@example.com
To: erin@hotmail.example
Subject: Offer

hello
--j--
"""


def test_jmrp_complaint() -> None:
    result = classify(JMRP)
    assert result.kind == "complaint"
    assert result.recipients[0].recipient == "erin@hotmail.example"


def autoreply(subject: str, headers: str = "") -> bytes:
    return (
        f"From: Frank <frank@example.org>\nTo: news@example.com\nSubject: {subject}\n{headers}"
        "Content-Type: text/plain; charset=utf-8\n\nI am away until Monday.\n"
    ).encode()


@pytest.mark.parametrize(
    "subject",
    [
        "Out of Office: Hello",
        "Automatic reply: Hello",
        "Abwesenheitsnotiz: Hello",
        "Réponse automatique : Hello",
        "Respuesta automática: Hello",
        "Risposta automatica: Hello",
        "Afwezigheidsbericht: Hello",
        "Resposta automática: Hello",
        "=?UTF-8?B?5LiN5Zyo6YCa55+l?= Hello",  # 不在通知 (ja)
    ],
)
def test_auto_reply_localised_subjects(subject: str) -> None:
    result = classify(autoreply(subject))
    assert result.kind == "auto_reply", subject
    assert result.recipients[0].reason == "vacation"
    assert result.recipients[0].recipient == "frank@example.org"


@pytest.mark.parametrize(
    "header",
    ["Auto-Submitted: auto-replied\n", "X-Autoreply: yes\n", "X-Autorespond: yes\n", "Precedence: auto_reply\n"],
)
def test_auto_reply_headers(header: str) -> None:
    result = classify(autoreply("Hello", header))
    assert result.kind == "auto_reply"
    assert result.autoreply_markers


@pytest.mark.parametrize(
    "subject,headers",
    [
        ("Vacation photos", ""),
        ("Re: your absence next week", ""),
        ("Weekly digest", "Precedence: bulk\nList-Id: <news.example.com>\n"),
        ("Your invoice", "Auto-Submitted: auto-generated\n"),
        ("Re: Undelivered mail? I never got it", ""),
    ],
)
def test_ordinary_mail_is_not_bounce(subject: str, headers: str) -> None:
    result = classify(autoreply(subject, headers).replace(b"I am away until Monday.", b"See you, user@example.net"))
    assert result.kind == "not_bounce", subject
    assert result.recipients == []


def test_forwarded_bounce_attachment_is_not_a_bounce() -> None:
    inner = dsn("failed", "5.1.1", "550 5.1.1 User unknown").decode()
    raw = (
        "From: Grace <grace@example.com>\nTo: helpdesk@example.com\nSubject: Fwd: look at this\n"
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="fw"\n\n--fw\nContent-Type: text/plain\n\n'
        "Why did this fail?\n\n--fw\nContent-Type: message/rfc822\n\n" + inner + "\n--fw--\n"
    ).encode()
    assert classify(raw).kind == "not_bounce"


GENERIC = b"""From: Mail Delivery Subsystem <mailer-daemon@gw.example.net>
To: bounces@example.com
Subject: Undeliverable mail

The following recipients could not be reached:

    heidi@example.org
        mailbox unavailable: 550 5.2.1 account disabled

------ Original message ------
From: news@example.com
To: heidi@example.org
Subject: hi
"""


def test_generic_text_bounce() -> None:
    result = classify(GENERIC)
    assert result.kind == "bounce"
    assert result.detector == "generic"
    [row] = result.recipients
    assert row.recipient == "heidi@example.org"
    assert row.status == "5.2.1" and row.reply_code == "550"


def test_x_failed_recipients_header_names_the_recipient() -> None:
    raw = (
        b"From: Mail Delivery System <Mailer-Daemon@mx.example.net>\nTo: bounces@example.com\n"
        b"Subject: Mail delivery failed\nX-Failed-Recipients: ivan@example.org\n\n"
        b"Delivery failed for some reason.\n  ivan@example.org\n    550 no mailbox here by that name\n"
    )
    result = classify(raw)
    assert [r.recipient for r in result.recipients] == ["ivan@example.org"]
    assert result.recipients[0].reply_code == "550"


def test_unreadable_bounce_is_still_a_bounce() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.net\nTo: bounces@example.com\nSubject: Returned mail: see transcript\n"
        b"Auto-Submitted: auto-replied\n\nSomething went wrong.\n"
    )
    result = classify(raw)
    assert result.kind == "bounce"
    assert result.recipients == []
    assert result.detector == "unreadable-bounce"


def test_classifier_never_raises_and_reports_errors() -> None:
    for raw in (b"", b"\x00\xff" * 1000, b"Content-Type: multipart/report; boundary=\n\n--\n--\n"):
        result = classify(raw)
        assert result.kind in ("not_bounce", "bounce")


@pytest.mark.parametrize(
    "line",
    [
        "Undeliverable Address: judy@example.org",
        "Intended recipient: judy@example.org",
        "Sorry, unable to deliver your message to judy@example.org for the following reason:",
        "(Originally addressed to judy@example.org)",
        "Did not reach the following recipient: judy@example.org",
    ],
)
def test_generic_reader_takes_an_address_named_as_the_failed_one(line: str) -> None:
    raw = (
        "From: Mail Delivery Subsystem <postmaster@mx.example.net>\nTo: bounces@example.com\n"
        f"Subject: Returned mail\n\nHello,\n\n{line}\n\nThe mailbox is over quota.\n"
    ).encode()
    result = classify(raw)
    assert result.kind == "bounce"
    assert [r.recipient for r in result.recipients] == ["judy@example.org"]


def test_unroutable_final_recipient_yields_to_original_recipient() -> None:
    raw = dsn("failed", "5.0.0", "550 mailbox unavailable").replace(
        b"Final-Recipient: rfc822; <Bob@Example.ORG>",
        b"Original-Recipient: rfc822;bob@example.org\r\nFinal-Recipient: rfc822;bob@mailstore-daemon",
    )
    assert [r.recipient for r in classify(raw).recipients] == ["bob@example.org"]


def test_address_alone_with_colon_under_unreadable_heading() -> None:
    # qmail/Postfix shape: "<a@b>:" alone on a line, the reason (here in another language) below.
    raw = (
        "From: MAILER-DAEMON@mx.example.net\nTo: bounces@example.com\nSubject: failure notice\n"
        "Content-Type: text/plain; charset=utf-8\n\n\u4f60\u597d\u3002\n\n<kate@example.org>:\n\n<lee@example.org>:\n"
    ).encode()
    assert [r.recipient for r in classify(raw).recipients] == ["kate@example.org", "lee@example.org"]


def test_address_under_a_this_address_heading() -> None:
    raw = (
        b"From: Postmaster <postmaster@mx.example.net>\nTo: bounces@example.com\nSubject: Mail Delivery Warning\n\n"
        b'Delivery of email to this address\n\t\t\n"mia@example.org"\n\t\t\nhas been postponed due to a full mailbox.\n'
    )
    assert [r.recipient for r in classify(raw).recipients] == ["mia@example.org"]


@pytest.mark.parametrize(
    "text",
    [
        # the address alone under a cue that ends the line above it
        "Your message to:\n\tjudy@example.org\n\nhas not yet been delivered because the recipient server did not "
        "respond.\n",
        "This is a delivery failure notification message indicating that\nan email bounces@example.com addressed "
        "to email address :\n-- judy@example.org\n\nWith subject hello\ncould not be delivered.\n",
        "Your message could not be delivered to\n  judy@example.org\n",
        # named by "Your message to" on its own line, with words no list of error words had
        "Your message to judy@example.org has reached our local address\n"
        "judy@example.org, but this email address is wrong or no longer valid.\n",
    ],
)
def test_generic_reader_takes_an_address_cued_on_the_line_above(text: str) -> None:
    raw = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\nTo: bounces@example.com\n"
        f"Subject: Warning: message has not yet been delivered\n\n{text}"
    ).encode()
    assert [r.recipient for r in classify(raw).recipients] == ["judy@example.org"]


def test_generic_reader_leaves_an_address_on_a_line_after_unrelated_words() -> None:
    # an address under a line that does not name it as the failed one is not taken for one
    raw = (
        b"From: MAILER-DAEMON@mx.example.net\nTo: bounces@example.com\nSubject: Mail delivery failed\n\n"
        b"For questions write to:\n  helpdesk@example.net\n\n"
        b"X-Failed-Recipients says nothing here.\n"
    )
    assert [r.recipient for r in classify(raw).recipients] == []


def _aliased(final: str, original: str) -> bytes:
    from tests.e2e import messages

    raw = messages.hard_bounce("alias-1", final)
    return raw.replace(
        f"Original-Recipient: rfc822;{final}".encode(), f"Original-Recipient: rfc822;{original}".encode()
    )


def test_original_recipient_of_an_alias_that_failed() -> None:
    # Postfix's own DSN (the Postfix format detector reads it): neko@ was aliased to postmaster@, which failed
    [row] = classify(_aliased("postmaster@example.org", "Neko@Example.ORG")).recipients
    assert (row.recipient, row.original_recipient) == ("postmaster@example.org", "neko@example.org")


def test_original_recipient_from_a_plain_dsn() -> None:
    raw = dsn("failed", "5.1.1", "550 5.1.1 unknown").replace(
        b"Final-Recipient: rfc822; <Bob@Example.ORG>",
        b"Final-Recipient: rfc822;bob@mailstore.example.org\r\nOriginal-Recipient: rfc822;bob@example.org",
    )
    result = classify(raw)
    assert result.detector == "rfc3464"
    assert [(r.recipient, r.original_recipient) for r in result.recipients] == [
        ("bob@mailstore.example.org", "bob@example.org")
    ]


@pytest.mark.parametrize(
    "original", ["alice@example.org", "ALICE@example.org", '"alice"@example.org', "not an address"]
)
def test_original_recipient_empty_when_it_names_the_same_address_or_none(original: str) -> None:
    [row] = classify(_aliased("alice@example.org", original)).recipients
    assert (row.recipient, row.original_recipient) == ("alice@example.org", "")


@pytest.mark.parametrize(
    ("subject", "text"),
    [
        (
            "Delivery failure notification",  # a virus-scanning gateway's wording
            "Your message with Subject: hello\ncould not be delivered to the following recipients:\n\n"
            "judy@example.org\n\nPlease do not resend your original message.\n"
            "Delivery attempts will continue to be made for 5 day(s).\n",
        ),
        (
            "Warning: message delayed 2 days",
            "A message that you sent has not yet been delivered to one or more of\nits recipients after 2 days.\n\n"
            "The message has not yet been delivered to the following addresses:\n\n  <judy@example.org>\n"
            "    host mx.example.org: connection to mail exchanger failed\n",
        ),
        (
            "Mail Delivery Warning",
            'This is an advisory-only email.\n\nDelivery of email to this address\n\n"judy@example.org"\n\n'
            "has been postponed due to a full mailbox.\n",
        ),
    ],
)
def test_generic_warning_is_a_delay(subject: str, text: str) -> None:
    head = "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\nTo: bounces@example.com\n"
    raw = f"{head}Subject: {subject}\n\n{text}"
    result = classify(raw.encode())
    assert result.kind == "delay"
    assert [(r.recipient, r.action, r.hard) for r in result.recipients] == [("judy@example.org", "delayed", False)]


def test_generic_report_that_gave_up_is_not_a_delay() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.net\nTo: bounces@example.com\nSubject: Undelivered Mail\n\n"
        b"Delivery attempts will continue to be made for 5 day(s) is what we said before.\n"
        b"Now we have given up: this is a permanent error.\n\n  judy@example.org\n    550 unknown user\n"
    )
    result = classify(raw)
    assert result.kind == "bounce"
    assert [(r.recipient, r.action) for r in result.recipients] == [("judy@example.org", "failed")]


def test_original_recipients_read_once_are_what_a_fresh_parse_reads() -> None:
    from bouncemilter.classify.dsn import original_recipients, parse_dsn
    from bouncemilter.classify.mime import parse_message

    raw = (
        b"From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\nTo: b@example.com\n"
        b"Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n--B\n'
        b"Content-Type: text/plain\n\nThis is the mail system at host mx.example.net.\n\n"
        b"<Final@Example.ORG> (expanded from <alias@example.org>): host mx.example.org[192.0.2.7] said:\n"
        b"    550 5.1.1 no such user (in reply to RCPT TO command)\n\n--B\n"
        b"Content-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
        b"Final-Recipient: rfc822; final@example.org\nOriginal-Recipient: rfc822;alias@example.org\n"
        b"Action: failed\nStatus: 5.1.1\n\n--B--\n"
    )
    fresh = original_recipients(parse_message(raw))
    assert fresh == {"final@example.org": "alias@example.org"}
    msg = parse_message(raw)
    parse_dsn(msg)[1][0].recipient = "changed@example.org"  # a detector changes the rows it gets
    assert original_recipients(msg) == fresh
    (row,) = classify(raw).recipients
    assert (row.recipient, row.original_recipient) == ("final@example.org", "alias@example.org")


def test_unreadable_warning_is_a_delay() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.net\nTo: bounces@example.com\nSubject: Warning: message delayed\n\n"
        b"Your message has not yet been delivered. Delivery attempts will continue for 5 days.\n"
    )
    result = classify(raw)
    assert (result.kind, result.detector, result.recipients) == ("delay", "unreadable-bounce", [])
