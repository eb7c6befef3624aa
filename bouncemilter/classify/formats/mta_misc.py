"""Smaller MTA formats: dma (DragonFly Mail Agent), OpenSMTPD, Courier, Apache James and the
unnamed legacy MTAs Sisimai calls X1, X3 and X6."""

from __future__ import annotations

import re

from ..mime import Message
from ..model import RecipientResult
from .base import Detection, dsn_rows
from .mta_common import (
    cut,
    from_reply_code,
    join_reply,
    make_row,
    report_text,
    sender_is_daemon,
    stage_name,
    unique,
)


def _dsn_by_address(msg: Message) -> dict[str, RecipientResult]:
    return {r.recipient: r for r in dsn_rows(msg)}


def _enrich(rows: list[RecipientResult], dsn: dict[str, RecipientResult]) -> None:
    """Fill what the text lacks from the delivery-status part; the text's own status wins over the
    DSN's generic x.0.0."""
    for row in rows:
        d = dsn.get(row.recipient)
        if d is None:
            continue
        if not row.status or (d.status and not d.status.endswith(".0.0") and row.status.endswith(".0.0")):
            row.status = d.status or row.status
        row.remote_mta = row.remote_mta or d.remote_mta
        row.diagnostic = row.diagnostic or d.diagnostic
        row.action = row.action or d.action


# --- dma, the DragonFly Mail Agent ---------------------------------------------------------------

_DMA_START = "This is the DragonFly Mail Agent"
_DMA_RCPT = re.compile(r"^There was an error delivering your mail to <([^<>\s]+)>\.?\s*$", re.M)
_DMA_REMOTE = re.compile(r"^(\S+) \[[0-9A-Fa-f.:]+\] did not like our ([^\n]*?):?\s*$", re.M)
_DMA_END = ("\nMessage headers follow.", "\nOriginal message follows.")


def detect_dma(msg: Message) -> Detection | None:
    if not sender_is_daemon(msg):
        return None
    received = msg.headers.get("received")
    text = report_text(msg)
    start = text.find(_DMA_START)
    if start < 0 and "DragonFly Mail Agent" not in received:
        return None
    body = cut(text[max(start, 0) :], *_DMA_END)
    rows: list[RecipientResult] = []
    matches = list(_DMA_RCPT.finditer(body))
    for i, m in enumerate(matches[:100]):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(body)
        block = body[m.end() : end].strip()
        remote = stage = ""
        r = _DMA_REMOTE.search(block)
        if r:
            remote = r.group(1)
            # "final DATA" is the end of the message data
            stage = "DATA" if r.group(2).lower().startswith("final data") else stage_name(r.group(2))
            block = block[r.end() :]
        if from_reply_code(block[:5]):
            diagnostic = join_reply(block.split("\n"))
        else:
            diagnostic, stage = " ".join(block.split()), ""
        rows.append(make_row(m.group(1), diagnostic, remote_mta=remote, action="failed", smtp_command=stage))
    rows = unique(rows)
    return Detection(rows, "dma: " + _DMA_START) if rows else None


# --- OpenSMTPD ------------------------------------------------------------------------------------

_SMTPD_START = "This is the MAILER-DAEMON, please DO NOT REPLY"
_SMTPD_RCPT = re.compile(r"^([^\s:@]+@[^\s:]+): (.+)$")
_SMTPD_END = ("Below is a copy of the original message", "Please note that this is only a temporary failure")


def detect_opensmtpd(msg: Message) -> Detection | None:
    subject = msg.headers.get("subject").strip()
    if not (subject.startswith("Delivery status notification") or sender_is_daemon(msg)):
        return None
    text = report_text(msg)
    start = text.find(_SMTPD_START)
    if start < 0:
        return None
    body = cut(text[start:], *_SMTPD_END)
    delayed = "delayed" in subject.lower() or "A message is delayed" in body
    rows = []
    for line in body.split("\n")[:1000]:
        m = _SMTPD_RCPT.match(line.strip())
        if m:
            rows.append(make_row(m.group(1), m.group(2), action="delayed" if delayed else "failed"))
    rows = unique(rows)
    _enrich(rows, _dsn_by_address(msg))
    return Detection(rows, "OpenSMTPD: " + _SMTPD_START) if rows else None


# --- Courier ---------------------------------------------------------------------------------------

_COURIER_START = ("UNDELIVERABLE MAIL", "DELAYS IN DELIVERING YOUR MESSAGE")
_COURIER_RCPT = re.compile(r"^<((?=[^<>\s]*?[^<>\s]@[^<>\s])[^<>\s]++)>:\s*$")  # linear (no "@" backtracking)
_COURIER_HOST = re.compile(r"^\s+(\S+) \[[0-9A-Fa-f.:]+\]:\s*$")


def detect_courier(msg: Message) -> Detection | None:
    subject = msg.headers.get("subject")
    if not (
        "Courier mail server at " in msg.headers.get("from")
        or subject.startswith(("NOTICE: mail delivery status.", "WARNING: delayed mail."))
        or msg.headers.get("message-id").lstrip().startswith("<courier.")
    ):
        return None
    text = report_text(msg)
    starts = [i for i in (text.find(m) for m in _COURIER_START) if i >= 0]
    if not starts:
        return None
    delayed = "DELAYS IN DELIVERING" in text[min(starts) : min(starts) + 80]
    body = cut(text[min(starts) :], "\n------------------------------------------------")
    blocks: list[tuple[str, str, list[str]]] = []
    stages: dict[int, str] = {}
    for line in body.split("\n")[:1000]:
        m = _COURIER_RCPT.match(line)
        if m:
            blocks.append((m.group(1), "", []))
            continue
        if not blocks or not line.strip():
            continue
        h = _COURIER_HOST.match(line)
        if h and not blocks[-1][1]:
            blocks[-1] = (blocks[-1][0], h.group(1), blocks[-1][2])
        elif line.startswith("<<< "):
            blocks[-1][2].append(line[4:])
        elif line.startswith(">>> "):
            stages[len(blocks) - 1] = stage_name(line[4:])
        elif not blocks[-1][2]:
            blocks[-1][2].append(line.strip())
    action = "delayed" if delayed else ""
    rows = [
        make_row(a, join_reply(lines), remote_mta=host, action=action, smtp_command=stages.get(i, ""))
        for i, (a, host, lines) in enumerate(blocks)
    ]
    rows = unique(rows)
    _enrich(rows, _dsn_by_address(msg))
    return Detection(rows, "Courier: " + body.split("\n", 1)[0].strip()) if rows else None


# --- Apache James ----------------------------------------------------------------------------------

_JAMES_RCPT = re.compile(r"^[ \t]*RCPT TO:\s*([^\s@]+@\S+)\s*$", re.M)


def detect_james(msg: Message) -> Detection | None:
    headers = msg.headers
    if not (
        headers.get("subject").strip() == "[BOUNCE]"
        or ".JavaMail." in headers.get("message-id")
        or any("JAMES SMTP Server" in r for r in headers.get_all("received")[:5])
    ):
        return None
    text = report_text(msg)
    start = text.find("Error message below:")
    if start < 0:
        return None
    body = text[start + len("Error message below:") :]
    details = body.find("Message details:")
    if details < 0:
        return None
    diagnostic = " ".join(body[:details].split())
    rows = [make_row(m.group(1), diagnostic) for m in _JAMES_RCPT.finditer(body[details : details + 3000])]
    rows = unique(rows)
    return Detection(rows, "Apache James: Error message below") if rows else None


# --- X1: "---The following addresses had delivery errors---" ---------------------------------------

_X1_RCPT = re.compile(r"^([^\s@]+@\S+) \[(.+)\]\s*$")


def detect_x1(msg: Message) -> Detection | None:
    if not msg.headers.get("subject").startswith("Returned Mail: ") or not sender_is_daemon(msg):
        return None
    text = report_text(msg)
    start = text.find("---The following addresses had delivery errors---")
    if start < 0:
        return None
    rows = []
    for line in text[start:].split("\n")[1:200]:
        m = _X1_RCPT.match(line.strip())
        if m:
            rows.append(make_row(m.group(1), m.group(2)))
        elif line.startswith("--"):
            break
    rows = unique(rows)
    return Detection(rows, "X1: ---The following addresses had delivery errors---") if rows else None


# --- X3: "This is an automatically generated Delivery Status Notification." -----------------------

_X3_START = "This is an automatically generated Delivery Status Notification."
_X3_RCPT = re.compile(r"^\s+\*\s+((?=\S*?\S@\S)\S++)\s*$")  # linear (no "@" backtracking)
# "SMTP:RCPT host mx.example.org: 553 5.3.0 ... No such user here": the command the server answered
_X3_DETAIL = re.compile(r"^(?:SMTP:(\S+) host (\S+): |Routing: )?(.+)$")


def detect_x3(msg: Message) -> Detection | None:
    if not msg.headers.get("subject").startswith("Delivery status notification") or not sender_is_daemon(msg):
        return None
    text = report_text(msg)
    start = text.find(_X3_START)
    if start < 0:
        return None
    body = text[start:]
    addrs = [m.group(1) for m in (_X3_RCPT.match(ln) for ln in body.split("\n")[:200]) if m]
    diagnostic, remote, command = "", "", ""
    details = body.find("Technical details:")
    if details >= 0:
        lines = [ln.strip() for ln in body[details:].split("\n")[1:50]]
        lines = [ln for ln in lines if ln and not ln.startswith("=====")]
        if lines:
            m = _X3_DETAIL.match(lines[0])
            if m:
                command, remote, diagnostic = m.group(1) or "", m.group(2) or "", m.group(3)
    stage = stage_name(command)
    rows = unique([make_row(a, diagnostic, remote_mta=remote, smtp_command=stage) for a in addrs])
    _enrich(rows, _dsn_by_address(msg))
    return Detection(rows, "X3: " + _X3_START) if rows else None


# --- X6: "We had trouble delivering your message. Full details follow:" ---------------------------

_X6_LINE = re.compile(
    r"^SMTP Server <([^>]*)> rejected recipient <([^<>\s]+)> \(Error following (\S+) command\)\. "
    r"It responded as follows: \[(.+)\]\s*$"
)


def detect_x6(msg: Message) -> Detection | None:
    if not msg.headers.get("subject").startswith("There was an error sending your mail"):
        return None
    text = report_text(msg)
    if "We had trouble delivering your message" not in text:
        return None
    rows = []
    for line in text.split("\n")[:300]:
        m = _X6_LINE.match(line.strip())
        if m:
            rows.append(make_row(m.group(2), m.group(4), remote_mta=m.group(1), smtp_command=stage_name(m.group(3))))
    rows = unique(rows)
    return Detection(rows, "X6: We had trouble delivering your message") if rows else None
