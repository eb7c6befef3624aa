"""Generated bounce mailboxes for the fetch tests and bench/fetch_speed.py.

Each message is what a hosted mailbox keeps of a delivery to the return path: the delivery agent's
Return-Path and Delivered-To first, then one of five report formats, written here from the standards and
common MTA wording (RFC 3464 DSNs from Postfix, RFC 5965 ARF, RFC 3834 auto-replies, an ordinary message).
`intent` is what the generator meant to write; the tests compare it with where the message ends up.
"""

from __future__ import annotations

PAD_LINE = "This line stands for the text of the original message that the report quotes back.\n"

# intent -> (status, diagnostic) of the DSN kinds
_DSN = {
    "hard": ("5.1.1", "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table"),
    "soft": ("5.2.2", "552 5.2.2 <{rcpt}>: Mailbox full, quota exceeded"),
}
CYCLE = ("hard", "hard", "soft", "complaint", "auto_reply", "unrecognised")


def message(n: int, intent: str, pad_to: int = 0, tag: str = "fetch") -> bytes:
    """The nth message of a mailbox; `pad_to` bytes at least (a quoted original makes it bigger)."""
    rcpt = f"user{n}@example.net"
    mid = f"<{tag}-{n}@mx.example.org>"
    head = (
        "Return-Path: <>\n"
        "Delivered-To: bounces@example.com\n"
        f"X-Original-To: bounces+user{n}=example.net@example.com\n"
        "Date: Thu, 26 Nov 2026 10:00:00 +0000\n"
        f"Message-ID: {mid}\n"
        "MIME-Version: 1.0\n"
    )
    if intent in _DSN:
        status, diag = _DSN[intent]
        body = (
            "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\n"
            "To: bounces@example.com\n"
            "Subject: Undelivered Mail Returned to Sender\n"
            "Auto-Submitted: auto-replied\n"
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="b{n}"\n\n'
            f"--b{n}\nContent-Type: text/plain\n\n"
            "This is the mail system at host mx.example.org.\n\n"
            "I'm sorry to have to inform you that your message could not be delivered.\n\n{pad}"
            f"--b{n}\nContent-Type: message/delivery-status\n\n"
            "Reporting-MTA: dns; mx.example.org\n\n"
            f"Final-Recipient: rfc822; {rcpt}\nAction: failed\nStatus: {status}\n"
            f"Remote-MTA: dns; mx.example.net\nDiagnostic-Code: smtp; {diag.format(rcpt=rcpt)}\n\n"
            f"--b{n}--\n"
        )
    elif intent == "complaint":
        body = (
            "From: abuse@isp.example.net\n"
            "To: bounces@example.com\n"
            "Subject: Abuse report\n"
            f'Content-Type: multipart/report; report-type=feedback-report; boundary="f{n}"\n\n'
            f"--f{n}\nContent-Type: text/plain\n\nThis is an email abuse report.\n\n{{pad}}"
            f"--f{n}\nContent-Type: message/feedback-report\n\n"
            "Feedback-Type: abuse\nUser-Agent: ExampleFBL/1.0\nVersion: 1\n"
            f"Original-Rcpt-To: {rcpt}\nSource-IP: 192.0.2.1\n\n"
            f"--f{n}\nContent-Type: message/rfc822\n\n"
            f"From: news@example.com\nTo: {rcpt}\nSubject: Newsletter\nMessage-ID: <news-{n}@example.com>\n\n"
            "Hello.\n\n"
            f"--f{n}--\n"
        )
    elif intent == "auto_reply":
        body = (
            f"From: {rcpt}\n"
            "To: bounces@example.com\n"
            "Subject: Out of office: Newsletter\n"
            "Auto-Submitted: auto-replied\n"
            "Content-Type: text/plain\n\n"
            "I am out of the office until Monday and will read your message then.\n\n{pad}"
        )
    else:  # unrecognised: a person wrote to the return path
        body = (
            f"From: {rcpt}\n"
            "To: bounces@example.com\n"
            "Subject: Please take me off your list\n"
            "Content-Type: text/plain\n\n"
            "Hello, how do I unsubscribe from this?\n\n{pad}"
        )
    size = len(head) + len(body) - len("{pad}")
    pad = PAD_LINE * max(0, (pad_to - size) // len(PAD_LINE) + (1 if pad_to > size else 0))
    return (head + body.replace("{pad}", pad)).replace("\n", "\r\n").encode()


def mailbox(count: int, pad_to: int = 0, tag: str = "fetch", cycle: tuple[str, ...] = CYCLE) -> list[tuple[str, bytes]]:
    """(intent, raw) for `count` messages, cycling through the kinds."""
    return [(cycle[n % len(cycle)], message(n, cycle[n % len(cycle)], pad_to, tag)) for n in range(count)]


def message_id(raw: bytes) -> str:
    for line in raw.split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    return ""
