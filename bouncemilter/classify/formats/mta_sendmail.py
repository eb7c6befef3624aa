"""Sendmail and V5 sendmail: "----- Transcript of session follows -----".

Sendmail 8 sends a DSN whose Diagnostic-Code keeps only the first line of the remote reply (or
nothing, or "Deferred: 421"); the transcript has the whole reply:
    ... while talking to mx.example.com.:
    >>> RCPT To:<kijitora@example.com>
    <<< 550 5.1.1 <kijitora@example.com>... User unknown
    550 5.1.1 <kijitora@example.com>... User unknown
Sendmail 5 (and bounces forwarded as quoted text) have no DSN at all: the recipients are the
"NNN <address>... text" lines of the transcript or the "----- The following addresses had
permanent fatal errors -----" list.
"""

from __future__ import annotations

import re

from ..dsn import parse_dsn
from ..mime import Message
from ..model import RecipientResult
from ..text import clean_address, find_reply_code
from .base import Detection
from .mta_common import (
    clean_reply,
    cut,
    from_reply_code,
    join_reply,
    make_row,
    report_text,
    stage_name,
    unique,
    unquote,
)

_SUBJECT = re.compile(r"^(?:(?:Fwd?|Fw):\s*)?(?:Returned mail:|Warning: could not send message|Undeliverable)", re.I)
_TRANSCRIPT = "----- Transcript of session follows -----"
_FATAL = re.compile(r"----- The following addresses had (?:permanent fatal errors|transient non-fatal errors) -----")
_END = (
    "----- Unsent message follows -----",
    "----- Original message follows -----",
    "----- Message header follows -----",
    "----- Returned message follows -----",
    "----- Message body suppressed -----",
)
_TALKING = re.compile(r"^\.{3} while talking to (\S+?)\.?:\s*$|^While talking to (\S+?)\.?:\s*$", re.I)
# "550 5.1.1 <kijitora@example.com>... User unknown", "554 <a@example.org>... 550 Host unknown (...)"
# linear: "(?=...@...)[^<>\s]++" matches what "[^<>\s]+@[^<>\s]+" did without backtracking over every "@"
_RESULT = re.compile(
    r"^(?:([245]\d\d)(?:[ \-]([245]\.\d{1,3}\.\d{1,3}))? )?<((?=[^<>\s]*?[^<>\s]@[^<>\s])[^<>\s]++)>\.\.\.\s*(.*)$"
)
# Sendmail's own lines around the transcript, not the error.
_NOISE = re.compile(
    r"^(?:Warning: message still undelivered|Will keep trying until|Message could not be delivered for|"
    r"Message will be deleted from queue|\*{3,}|[*\s]+(?:THIS IS A WARNING|YOU DO NOT NEED)|"
    r"-----|Original-Recipient:|\.\.\. while talking to|While talking to|>>>|554 5\.0\.0 Service unavailable)",
    re.I,
)
_FATAL_RCPT = re.compile(r"^<((?=[^<>\s]*?[^<>\s]@[^<>\s])[^<>\s]++)>\s*(?:\(.*\))?\s*$")  # linear, as _RESULT
_REASON = re.compile(r"^\(reason: (.*)\)\s*$")
_EMPTY_DIAG = re.compile(r"^(?:Deferred:?\s*)?(?:\d{1,3})?$")


def sendmail_subject(msg: Message) -> bool:
    """Sendmail's subject, on the decoded Subject (also its gate, mta.GATES: re.I is not str.lower())."""
    return _SUBJECT.match(msg.headers.decoded("subject").strip()) is not None


def detect(msg: Message) -> Detection | None:
    if not sendmail_subject(msg) and "Mail Delivery Subsystem" not in msg.headers.get("from"):
        return None
    subject = msg.headers.decoded("subject").strip()
    text = report_text(msg)
    i = text.find(_TRANSCRIPT)
    f = _FATAL.search(text)
    if i < 0 and f is None:
        return None
    start = min(x for x in (i, f.start() if f else -1) if x >= 0)
    line_start = text.rfind("\n", 0, start) + 1
    body = text[line_start:]
    if body.startswith(">"):
        body = unquote(body)  # a bounce forwarded as quoted text
    body = cut(body, *_END)
    delayed = "Warning: could not send message" in subject or "transient non-fatal errors" in body
    text_rows = _read(body)
    parsed = parse_dsn(msg)
    if parsed is not None and any(r.recipient for r in parsed[1]):
        rows = [r for r in parsed[1] if r.recipient]
        single = _transcript_error(body) if len(rows) == 1 else None
        for row in rows:
            _fill(row, text_rows.get(row.recipient), single)
    else:
        rows = list(text_rows.values())
        for row in rows:
            row.action = "delayed" if delayed else "failed"
    rows = unique(rows)
    return Detection(rows, "Sendmail: " + _TRANSCRIPT) if rows else None


def _fill(row: RecipientResult, *candidates: RecipientResult | None) -> None:
    """The transcript's whole reply instead of the DSN's empty or one-line copy."""
    row.diagnostic = clean_reply(row.diagnostic)
    d = row.diagnostic
    for c in candidates:
        if c is None or not c.diagnostic:
            continue
        t = c.diagnostic
        same = t.startswith(d[: min(len(d), 30)])
        if _EMPTY_DIAG.match(d) or (len(t) > len(d) and same):
            row.diagnostic = t
            row.reply_code = c.reply_code or row.reply_code
            row.remote_mta = row.remote_mta or c.remote_mta
            row.smtp_command = row.smtp_command or c.smtp_command
            return
        if same:
            row.smtp_command = row.smtp_command or c.smtp_command  # the transcript's stage of the same reply


def _read(body: str) -> dict[str, RecipientResult]:
    rows: dict[str, RecipientResult] = {}
    host = ""
    stage = ""
    replies: list[str] = []
    in_reply = False
    fatal_addr = ""
    for line in body.split("\n")[:3000]:
        stripped = line.strip()
        if not stripped:
            in_reply = False
            continue
        m = _TALKING.match(stripped)
        if m:
            host, replies, in_reply = (m.group(1) or m.group(2)), [], False
            continue
        if stripped.startswith(">>>"):
            replies, in_reply, stage = [], False, stage_name(stripped[3:])
            continue
        if stripped.startswith("<<<"):
            if not in_reply:
                replies = []
            replies.append(stripped[3:].strip())
            in_reply = True
            continue
        in_reply = False
        r = _RESULT.match(stripped)
        if r:
            _add_result(rows, r, host, replies, stage)
            continue
        fr = _FATAL_RCPT.match(stripped)
        if fr:
            fatal_addr = clean_address(fr.group(1))
            continue
        reason = _REASON.match(stripped)
        if reason and fatal_addr and fatal_addr not in rows:
            rows[fatal_addr] = make_row(fatal_addr, reason.group(1))
    return rows


def _add_result(rows: dict[str, RecipientResult], r: re.Match[str], host: str, replies: list[str], stage: str) -> None:
    addr = clean_address(r.group(3))
    own = r.group(4).strip()
    said_at = ""
    if not r.group(1) and not replies:
        diagnostic = own  # "<a@b>... Deferred: Name server: b.: host name lookup failure"
    elif from_reply_code(own[:4]):
        diagnostic = own  # "554 <a@b>... 550 Host unknown": the remote reply repeated
    elif replies:
        diagnostic, said_at = join_reply(replies), stage
    else:
        diagnostic = " ".join(x for x in (r.group(1), r.group(2) or "", own) if x)
    row = make_row(addr, diagnostic, remote_mta=host if diagnostic is not own else "", smtp_command=said_at)
    if not row.reply_code and r.group(1):
        row.reply_code = find_reply_code(r.group(1))
    prev = rows.get(addr)
    if prev is None or (not prev.diagnostic and row.diagnostic):
        rows[addr] = row


def _transcript_error(body: str) -> RecipientResult | None:
    """The one error a transcript reports when it names no address: the last remote reply, else
    the mailer's own lines ("451 4.0.0 Operating system error", a pipe's output)."""
    i = body.find(_TRANSCRIPT)
    if i < 0:
        return None
    replies: list[str] = []
    block: list[str] = []
    others: list[str] = []
    stage = block_stage = ""
    for line in body[i + len(_TRANSCRIPT) :].split("\n")[:200]:
        stripped = line.strip()
        if stripped.startswith(">>>"):
            stage = stage_name(stripped[3:])
        if stripped.startswith("<<<"):
            block.append(stripped[3:].strip())
            continue
        if block:
            replies, block, block_stage = block, [], stage
        if stripped and not _NOISE.match(stripped):
            others.append(stripped)
    if block:
        replies, block_stage = block, stage
    if replies:
        return make_row("", join_reply(replies), smtp_command=block_stage)
    diagnostic = " ".join(others[:6])
    return make_row("", diagnostic) if diagnostic else None
