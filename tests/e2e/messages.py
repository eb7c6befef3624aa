"""Hand-written test messages (made-up addresses) for the end-to-end tests and the benchmark.

Every builder takes a `token` that ends up in the Message-ID, so a test can find its own copy in a
maildir and its own row in the database.
"""

from __future__ import annotations

import os

DATE = "Thu, 26 Nov 2026 10:00:00 +0000"


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def _original(token: str, to: str) -> str:
    return f"""From: News <news@test.example>
To: {to}
Subject: November newsletter
Message-ID: <orig-{token}@test.example>
Date: {DATE}

Hello, this is the newsletter.
"""


def dsn(
    token: str,
    recipient: str = "alice@example.org",
    *,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <alice@example.org>: Recipient address rejected: User unknown",
    reporting_mta: str = "mx.remote.example",
    subject: str = "Undelivered Mail Returned to Sender",
) -> bytes:
    """An RFC 3464 delivery status notification (hard by default)."""
    boundary = f"dsn-{token}"
    extra = "Will-Retry-Until: Fri, 27 Nov 2026 10:00:00 +0000\n" if action == "delayed" else ""
    return _crlf(f"""From: MAILER-DAEMON@{reporting_mta} (Mail Delivery System)
To: bounces@test.example
Subject: {subject}
Message-ID: <{token}@{reporting_mta}>
Date: {DATE}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"

--{boundary}
Content-Type: text/plain; charset=us-ascii

This is the mail system at host {reporting_mta}.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

--{boundary}
Content-Type: message/delivery-status

Reporting-MTA: dns; {reporting_mta}
Arrival-Date: {DATE}

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mail.example.org
Diagnostic-Code: {diagnostic}
{extra}
--{boundary}
Content-Type: message/rfc822

{_original(token, recipient)}
--{boundary}--
""")


def hard_bounce(token: str, recipient: str = "alice@example.org") -> bytes:
    return dsn(
        token,
        recipient,
        diagnostic=f"smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown in virtual mailbox table",
    )


def soft_bounce(token: str, recipient: str = "bob@example.org") -> bytes:
    return dsn(
        token,
        recipient,
        status="5.2.2",
        diagnostic=f"smtp; 552 5.2.2 <{recipient}>: Mailbox full, quota exceeded",
    )


def delay_warning(token: str, recipient: str = "dora@example.org") -> bytes:
    return dsn(
        token,
        recipient,
        action="delayed",
        status="4.4.1",
        diagnostic="smtp; 421 4.4.1 Connection timed out",
        subject="Delayed Mail (still being retried)",
    )


def qmail_bounce(token: str, recipient: str = "carol@example.net") -> bytes:
    """A non-DSN, plain text bounce in qmail's format."""
    return _crlf(f"""From: MAILER-DAEMON@mail.example.net
To: bounces@test.example
Subject: failure notice
Message-ID: <{token}@mail.example.net>
Date: {DATE}

Hi. This is the qmail-send program at mail.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<{recipient}>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

{_original(token, recipient)}""")


def arf_complaint(token: str, recipient: str = "frank@example.com") -> bytes:
    boundary = f"arf-{token}"
    return _crlf(f"""From: abuse@feedback.example.com
To: bounces@test.example
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
Original-Mail-From: <bounces@test.example>
Original-Rcpt-To: <{recipient}>
Arrival-Date: {DATE}
Source-IP: 192.0.2.10

--{boundary}
Content-Type: message/rfc822

{_original(token, recipient)}
--{boundary}--
""")


def auto_reply(token: str, sender: str = "gina@example.com") -> bytes:
    return _crlf(f"""From: Gina <{sender}>
To: bounces@test.example
Subject: Out of Office: November newsletter
Message-ID: <{token}@example.com>
Date: {DATE}
Auto-Submitted: auto-replied
X-Autoreply: yes
In-Reply-To: <orig-{token}@test.example>

I am out of the office until Monday with limited access to email.
""")


def ordinary(token: str) -> bytes:
    return _crlf(f"""From: Sender <sender@example.net>
To: user@test.example
Subject: Lunch on Friday?
Message-ID: <{token}@example.net>
Date: {DATE}

Shall we have lunch on Friday? {token}
""")


def garbage(token: str, size: int = 200_000) -> bytes:
    """No header block worth the name, binary junk, NULs and very long lines."""
    junk = os.urandom(size).replace(b"\r", b"").replace(b"\n.\n", b"\n..\n")
    return b"\x00\xff not a header at all " + token.encode() + b"\r\n" + junk + b"\r\n"


def big_bounce(token: str, size: int = 50 * 1024 * 1024, recipient: str = "henry@example.org") -> bytes:
    """A hard DSN whose attached original carries `size` bytes of base64-looking text."""
    head = dsn(token, recipient).rsplit(b"--dsn-", 1)[0]
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODk=\r\n"
    filler = line * (size // len(line) + 1)
    return (
        head
        + f"--dsn-{token}\r\nContent-Type: application/octet-stream\r\n".encode()
        + (b"Content-Transfer-Encoding: base64\r\n\r\n" + filler + f"--dsn-{token}--\r\n".encode())
    )


def header_fields(head: bytes) -> list[bytes]:
    """A CRLF header block as the MTA passes it to a milter: one item per field, folds joined by LF."""
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\n" + line
        elif line:
            fields.append(line)
    return fields
