"""Postfix: "This is the mail system at host ..." / "This is the Postfix program at host ...".

Postfix usually attaches a correct message/delivery-status part; the text part repeats each
failure as "<address>: host mx[ip] said: 550 ... (in reply to RCPT TO command)". The text is read
(a) when there is no DSN part (old Postfix, or a postmaster notice "Postfix SMTP server: errors
from ..." that carries only the SMTP transcript) and (b) to fill a DSN group that lacks a
diagnostic. "Delayed Mail (still being retried)" is a delay warning.
"""

from __future__ import annotations

import re

from ..dsn import parse_dsn
from ..mime import Message
from ..model import RecipientResult
from ..text import clean_address, find_addresses, find_reply_code
from .base import Detection
from .mta_common import (
    clean_reply,
    cut,
    from_reply_code,
    make_row,
    report_text,
    sender_is_daemon,
    stage_name,
    unique,
)

_START = ("This is the mail system at host", "This is the Postfix program at host")
# linear: "(?=...@...)[^<>\s]++" matches what "[^<>\s]+@[^<>\s]+" did without backtracking over every "@"
_RCPT = re.compile(
    r'^<("[^"<>]{1,128}"@[^<>\s]+|(?=[^<>\s]*?[^<>\s]@[^<>\s])[^<>\s]++)>(?: \(expanded from <([^<>]+)>\))?:\s*(.*)$'
)
_SAID = re.compile(r"^host (\S+?)\[[^\]]*\] said:\s*")
_REFUSED = re.compile(r"^host (\S+?)\[[^\]]*\] refused to talk to me:\s*")
_CONNECT = re.compile(r"^connect to (\S+?)\[[^\]]*\](?::\d+)?:\s*")
_IN_REPLY = re.compile(r"(?<!\s)\s*\(in reply to ([^()]{1,60}?)(?: command)?\)\s*$")
_DIAG_TYPE = re.compile(r"^X-[\w\-]{1,40};\s*", re.I)
_QUOTED = re.compile(r'"[^"<>]{1,128}"@[\w.\-]+')


def detect(msg: Message) -> Detection | None:
    if not sender_is_daemon(msg):
        return None
    subject = msg.headers.get("subject").strip()
    if subject.startswith("Postfix SMTP server: errors from"):
        return _smtpd_notice(msg)
    text = report_text(msg)
    starts = [i for i in (text.find(m) for m in _START) if i >= 0]
    if not starts:
        return None
    body = text[min(starts) :]
    delayed = subject.startswith("Delayed Mail") or "THIS IS A WARNING ONLY" in body
    text_rows = {r.recipient: r for r in _read(body, "delayed" if delayed else "")}
    parsed = parse_dsn(msg)
    if parsed is not None and any(r.recipient for r in parsed[1]):
        rows = _from_dsn(msg, parsed[1], text_rows)
    else:
        rows = list(text_rows.values())
    if not rows and "Delivery report unavailable" in body:
        # Postfix lost the recipient list: the bounced message's To is all there is.
        original = msg.original_headers()
        found = find_addresses(original.get("to")) if original is not None else []
        rows = [make_row(found[0], "")] if found else []
    rows = unique(rows)
    return Detection(rows, "Postfix: " + body.split("\n", 1)[0][:60]) if rows else None


def _from_dsn(msg: Message, dsn_rows: list[RecipientResult], text_rows: dict[str, RecipientResult]) -> list:
    raw = _dsn_raw(msg)
    quoted = {q.lower().replace('"', ""): q.lower() for q in _QUOTED.findall(raw)} if '"@' in raw else {}
    rows = []
    for row in dsn_rows:
        if not row.recipient:
            continue
        # clean_address cannot keep a quoted local part; the DSN's own spelling is the address.
        row.recipient = quoted.get(row.recipient.replace('"', ""), row.recipient)
        if row.diagnostic:
            diagnostic, remote, stage, _ = _diagnostic(row.diagnostic)
            row.diagnostic = clean_reply(diagnostic)
            row.remote_mta = row.remote_mta or remote
            row.smtp_command = row.smtp_command or stage
            row.reply_code = row.reply_code or find_reply_code(row.diagnostic[:4])
        t = text_rows.get(row.recipient)
        if t is not None:
            longer = len(t.diagnostic) > len(row.diagnostic) and t.diagnostic.startswith(row.diagnostic[:30])
            if not row.diagnostic or longer:
                row.diagnostic = t.diagnostic
                row.reply_code = row.reply_code or t.reply_code
            row.remote_mta = row.remote_mta or t.remote_mta
            row.smtp_command = row.smtp_command or t.smtp_command
            row.diagnostic_type = row.diagnostic_type or t.diagnostic_type
            if t.action == "delayed" and not row.action:
                row.action = "delayed"
        rows.append(row)
    return rows


def _dsn_raw(msg: Message) -> str:
    for part in msg.parts:
        if part.ctype in ("message/delivery-status", "message/global-delivery-status"):
            return part.text[:20000]
    return ""


def _read(body: str, action: str) -> list[RecipientResult]:
    body = cut(body, "\n--- Delivery report unavailable", "\n\n-- \n")
    entries: list[tuple[str, list[str]]] = []
    for line in body.split("\n")[:2000]:
        m = _RCPT.match(line) if line[:1] == "<" else None  # the pattern starts with "<": most lines need no match
        if m:
            entries.append((m.group(1), [m.group(3)]))
        elif entries and line.startswith((" ", "\t")) and line.strip():
            entries[-1][1].append(line.strip())
        elif entries and line.strip():
            entries.append(("", []))  # the block ended
    rows = []
    for addr, lines in entries:
        if not addr:
            continue
        diagnostic, remote, stage, dtype = _diagnostic(" ".join(lines))
        row = make_row(addr, diagnostic, remote_mta=remote, action=action, smtp_command=stage)
        row.diagnostic_type = dtype
        if addr.startswith('"'):
            row.recipient = addr.lower()
        rows.append(row)
    return rows


def _diagnostic(text: str) -> tuple[str, str, str, str]:
    """(the remote server's words, the remote host, the SMTP stage, the diagnostic type) from an entry."""
    # A diagnostic type longer than strip_diagnostic_type allows: "X-Outbound-Mail-Relay; Name service error..."
    text = text.strip()
    typed = _DIAG_TYPE.match(text)
    dtype = typed.group(0).rstrip("; \t").lower() if typed else ""
    text = text[typed.end() :] if typed else text
    # The pattern starts with a look-behind, so the regex engine tries it at every character (the search and the
    # sub that followed it cost ~60,000 instructions on one Postfix diagnostic): a substring test first, then one
    # search, whose match is the only one sub() could remove (it ends at the end of the stripped text).
    stage = ""
    if "(in reply to " in text:
        stage_m = _IN_REPLY.search(text)
        if stage_m:
            stage = stage_name(stage_m.group(1))
            text = text[: stage_m.start()] + text[stage_m.end() :]
    m = _SAID.match(text)
    if m:
        return clean_reply(text[m.end() :]), m.group(1), stage, dtype
    m = _REFUSED.match(text)
    if m:
        # "host x[ip] refused to talk to me: 554 ...": the greeting banner refused us
        return clean_reply(text[m.end() :]), m.group(1), "CONN", dtype
    m = _CONNECT.match(text)
    if m:
        return text[m.end() :], m.group(1), stage, dtype
    return text, "", stage, dtype


# "Postfix SMTP server: errors from host[ip]": a transcript, " In:" what the client sent,
# " Out:" what Postfix answered; the last 4xx/5xx answer is the error.
_IN_RCPT = re.compile(r"^\s*In:\s+RCPT\s+TO:\s*<([^<>\s]+)>", re.I)
_OUT = re.compile(r"^\s*Out:\s+([245]\d\d[ \-].*)$")


def _smtpd_notice(msg: Message) -> Detection | None:
    text = report_text(msg)
    if "Transcript of session follows" not in text:
        return None
    recipients: list[str] = []
    error = ""
    for line in text.split("\n")[:3000]:
        m = _IN_RCPT.match(line)
        if m:
            recipients.append(m.group(1))
            continue
        o = _OUT.match(line)
        if o and o.group(1)[0] in "45":
            error = o.group(1)
    # The session was refused: the message was not accepted, whatever the reply's class.
    rows = unique([make_row(clean_address(a), from_reply_code(error) or error, action="failed") for a in recipients])
    if not rows or not error:
        return None
    return Detection(rows, "Postfix SMTP server: errors from")
