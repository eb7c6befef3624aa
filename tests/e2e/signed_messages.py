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
