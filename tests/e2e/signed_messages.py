"""Hand-written messages for the signed-return-path tests (made-up addresses), beside messages.py."""

from __future__ import annotations

from .messages import DATE, _crlf, dsn


def arf(
    token: str, recipient: str = "frank@example.com", *, return_path: str = "", rcpt_to: str | None = None
) -> bytes:
    """An RFC 5965 complaint whose returned original carries `return_path` (as the receiving mailbox provider
    wrote it at delivery), and names `rcpt_to` (default: `recipient`; "" = redacted) in Original-Rcpt-To."""
    boundary = f"arf-{token}"
    rcpt_line = "" if rcpt_to == "" else f"Original-Rcpt-To: <{rcpt_to or recipient}>\n"
    rp_line = f"Return-Path: <{return_path}>\n" if return_path else ""
    return _crlf(f"""From: abuse@feedback.example.com
To: fbl@test.example
Subject: Complaint about message from 192.0.2.10
Message-ID: <{token}@feedback.example.com>
Date: {DATE}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"

--{boundary}
Content-Type: text/plain; charset=us-ascii

This is an email abuse report for an email message received from IP 192.0.2.10.

--{boundary}
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
{rcpt_line}Arrival-Date: {DATE}
Source-IP: 192.0.2.10

--{boundary}
Content-Type: message/rfc822

{rp_line}From: News <news@test.example>
To: {recipient if rcpt_to != "" else "undisclosed-recipients:;"}
Subject: November newsletter
Message-ID: <orig-{token}@test.example>
Date: {DATE}

Hello, this is the newsletter.

--{boundary}--
""")


def hostunknown(token: str, recipient: str) -> bytes:
    """A DSN saying the recipient's whole domain does not exist (Postfix's wording)."""
    domain = recipient.rpartition("@")[2]
    return dsn(
        token,
        recipient,
        status="5.4.4",
        diagnostic=f"X-Postfix; Host or domain name not found. Name service error for name={domain} type=MX: "
        "Host not found",
    )


def dsn_after_attachment(token: str, recipient: str, size: int = 50 * 1024 * 1024) -> bytes:
    """A DSN whose delivery-status part comes after a `size`-byte base64 attachment (then the original's headers)."""
    b = f"dsn-{token}"
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODk=\r\n"
    head = _crlf(f"""From: MAILER-DAEMON@mx.remote.example (Mail Delivery System)
To: bounces@test.example
Subject: Undelivered Mail Returned to Sender
Message-ID: <{token}@mx.remote.example>
Date: {DATE}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{b}"

--{b}
Content-Type: text/plain; charset=us-ascii

Your message could not be delivered; the attachment you sent is enclosed.

--{b}
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="report.pdf"
Content-Transfer-Encoding: base64

""")
    tail = _crlf(f"""--{b}
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.remote.example

Final-Recipient: rfc822; {recipient}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown

--{b}
Content-Type: text/rfc822-headers

From: News <news@test.example>
To: {recipient}
Subject: November report
Message-ID: <orig-{token}@test.example>

--{b}--
""")
    return head + line * (size // len(line) + 1) + tail


def dsn_many(token: str, count: int, domain: str = "example.org") -> bytes:
    """A DSN with `count` recipient groups (user0@domain ...)."""
    groups = "".join(
        f"Final-Recipient: rfc822; user{i}@{domain}\nAction: failed\nStatus: 5.1.1\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 user unknown\n\n"
        for i in range(count)
    )
    b = f"many-{token}"
    return _crlf(f"""From: MAILER-DAEMON@mx.remote.example
To: bounces@test.example
Subject: Undelivered Mail Returned to Sender
Message-ID: <{token}@mx.remote.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{b}"

--{b}
Content-Type: text/plain

Delivery failed for {count} recipients.

--{b}
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.remote.example

{groups}--{b}--
""")
