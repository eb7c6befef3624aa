"""A small bounce history for the reporting tests: hand-written reports -> classify() -> Store.record().

`build(path, now)` writes EVENTS with received_at = now - age, so the tests can inject the same `now` into the
report functions. The last hour holds: 3 hard bounces (example.org x2, example.net), 1 soft (mailbox full),
2 blocked (example.net, Spamhaus), 1 complaint, 1 delay, 1 auto-reply and 1 ordinary message.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from bouncemilter import classify
from bouncemilter.store import MessageMeta
from bouncemilter.suppressions import fmt_time, open_store


def dsn(n: int, rcpt: str, status: str, diagnostic: str, remote: str, action: str = "failed") -> bytes:
    return f"""From: MAILER-DAEMON@relay.example.com (Mail Delivery System)
To: bounces@example.com
Subject: Undelivered Mail Returned to Sender
Message-ID: <rep-dsn-{n}@relay.example.com>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="r{n}"

--r{n}
Content-Type: text/plain

This is the mail system at host relay.example.com.
Your message could not be delivered to one or more recipients.

--r{n}
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.com

Final-Recipient: rfc822; {rcpt}
Action: {action}
Status: {status}
Remote-MTA: dns; {remote}
Diagnostic-Code: smtp; {diagnostic}

--r{n}
Content-Type: text/rfc822-headers

From: Shop <news@example.com>
To: {rcpt}
Subject: Weekly offers
Message-ID: <offer-{n}@example.com>

--r{n}--
""".replace("\n", "\r\n").encode()


def complaint(n: int, rcpt: str) -> bytes:
    return f"""From: fbl@isp.example.net
To: bounces@example.com
Subject: FW: Weekly offers
Message-ID: <rep-arf-{n}@isp.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="f{n}"

--f{n}
Content-Type: text/plain

This is an abuse report for a message received from 192.0.2.25.

--f{n}
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleISP-FBL/2.1
Version: 1
Original-Rcpt-To: <{rcpt}>
Source-IP: 192.0.2.25

--f{n}
Content-Type: message/rfc822

From: Shop <news@example.com>
To: {rcpt}
Subject: Weekly offers
Message-ID: <offer-arf-{n}@example.com>

Offers.
--f{n}--
""".replace("\n", "\r\n").encode()


def vacation(n: int, sender: str) -> bytes:
    return f"""From: <{sender}>
To: bounces@example.com
Subject: Automatic reply: Weekly offers
Message-ID: <rep-ooo-{n}@example.org>
Auto-Submitted: auto-replied
X-Autoreply: yes

I am on holiday until the 20th and will read your message when I am back.
""".replace("\n", "\r\n").encode()


def ordinary(n: int) -> bytes:
    return f"""From: Bob <bob@example.org>
To: bounces@example.com
Subject: Question about my order
Message-ID: <rep-plain-{n}@example.org>

Hello, where is my parcel?
""".replace("\n", "\r\n").encode()


UNKNOWN_USER = "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table"
MAILBOX_FULL = "452 4.2.2 <{}>: Mailbox full, quota exceeded"
SPAMHAUS = "554 5.7.1 Service unavailable; Client host [192.0.2.25] blocked using zen.spamhaus.org"


def hard(n: int, rcpt: str, remote: str = "mx1.example.org") -> bytes:
    return dsn(n, rcpt, "5.1.1", UNKNOWN_USER.format(rcpt), remote)


def soft(n: int, rcpt: str, remote: str = "mx1.example.org") -> bytes:
    return dsn(n, rcpt, "4.2.2", MAILBOX_FULL.format(rcpt), remote)


def blocked(n: int, rcpt: str, remote: str = "mx.example.net") -> bytes:
    return dsn(n, rcpt, "5.7.1", SPAMHAUS, remote)


# (age, message)
EVENTS: list[tuple[timedelta, bytes]] = [
    # the last hour
    (timedelta(minutes=5), hard(1, "ann@example.org")),
    (timedelta(minutes=10), hard(2, "ben@example.org")),
    (timedelta(minutes=15), hard(3, "cy@example.net", "mx.example.net")),
    (timedelta(minutes=20), soft(4, "full@example.org")),
    (timedelta(minutes=25), blocked(5, "dot@example.net")),
    (timedelta(minutes=30), blocked(6, "eve@example.net")),
    (timedelta(minutes=35), complaint(7, "angry@example.org")),
    (
        timedelta(minutes=40),
        dsn(8, "late@example.net", "4.4.1", "421 4.4.1 Connection timed out", "mx.example.net", action="delayed"),
    ),
    (timedelta(minutes=45), vacation(9, "ooo@example.org")),
    (timedelta(minutes=50), ordinary(10)),
    # earlier today
    (timedelta(hours=5, minutes=1), hard(11, "fay@example.com.test", "mail.example.com.test")),
    (timedelta(hours=5, minutes=2), hard(12, "gus@example.com.test", "mail.example.com.test")),
    (timedelta(hours=10), soft(13, "full@example.org")),
    # three days ago: outside 24h
    (timedelta(days=3), hard(14, "old@example.org")),
    (timedelta(days=3, minutes=1), complaint(15, "grumpy@example.org")),
]


def build(path: Path | str, now: datetime) -> Path | str:
    with open_store(str(path)) as store:
        for n, (age, raw) in enumerate(EVENTS):
            result = classify(raw)
            meta = MessageMeta(
                queue_id=f"R{n}",
                client_addr="192.0.2.30",
                client_name="relay.example.com",
                helo="relay.example.com",
                envelope_from="ooo@example.org" if result.kind == "auto_reply" else "",
                bounce_addresses=["bounces@example.com"],
                verp_recipients=[],
                message_id=f"<rep-{n}@relay.example.com>",
                size=len(raw),
                processing_ms=0.2,
                received_at=fmt_time(now - age),
            )
            store.record(meta, result, "accept")
    return path
