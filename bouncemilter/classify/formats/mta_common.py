"""Helpers shared by the classic MTA bounce formats (mta_*.py)."""

from __future__ import annotations

import re
from functools import lru_cache

from .. import stage
from ..mime import Message, html_to_text
from ..model import RecipientResult
from ..text import one_line
from .base import make_row as base_make_row

# "550-5.7.26 text" / "550 5.7.26 text" / "550-text": the prefix of each line of a multi-line SMTP reply.
_REPLY_PREFIX = re.compile(r"^([245]\d\d)[ \-](?:([245]\.\d{1,3}\.\d{1,3})\s+)?")
# The start of the server's reply inside a longer sentence: a reply code after a space or at the start.
_REPLY_START = re.compile(r"(?:^|(?<=[\s:(\[]))[245]\d\d(?=[ \-]|$)")
_LEADING_QUOTE = re.compile(r"^> ?", re.M)


def report_text(msg: Message, limit: int = 60_000) -> str:
    """The bounce's own text. A part labelled text/html is only reduced when it is HTML (some MTAs
    copy the original's Content-Type onto a plain-text bounce). Computed once per message."""
    key = f"mta.report_text.{limit}"
    cached = msg.memo.get(key)
    if cached is None:
        cached = msg.memo[key] = _report_text(msg, limit)
    return cached  # type: ignore[return-value]


def _report_text(msg: Message, limit: int) -> str:
    texts: list[str] = []
    for part in msg.parts:
        # startswith: some MTAs forget the ';' ("text/plain charset=...").
        if part.depth or not part.ctype.startswith(("text/plain", "text/html")):
            continue
        text = part.text
        if part.ctype.startswith("text/html") and re.search(r"<(?:html|body|br|p|div|table)\b", text[:4000], re.I):
            text = html_to_text(text)
        texts.append(text)
        if sum(len(t) for t in texts) > limit:
            break
    return "\n".join(texts)[:limit]


def unquote(text: str) -> str:
    """Drop one level of '> ' quoting (a forwarded bounce); a transcript's own '>>>' lines stay."""
    return _LEADING_QUOTE.sub("", text)


def cut(text: str, markers: tuple[str, ...]) -> str:
    """`text` up to the first of `markers` (where the copy of the original message begins)."""
    end = len(text)
    for marker in markers:
        i = text.find(marker)
        if 0 <= i < end:
            end = i
    return text[:end]


def join_reply(lines: list[str]) -> str:
    """One line from a multi-line SMTP reply: the code and status kept once, the repeats dropped."""
    out: list[str] = []
    for i, line in enumerate(lines):
        line = line.strip()
        if not line:
            continue
        if i and out:
            m = _REPLY_PREFIX.match(line)
            if m:
                line = line[m.end() :]
        elif _REPLY_PREFIX.match(line):
            line = line[:3] + " " + line[4:]
        out.append(line)
    return one_line(" ".join(out))


def from_reply_code(text: str) -> str:
    """`text` from the server's reply code on ("" when it has none)."""
    m = _REPLY_START.search(text)
    return text[m.start() :] if m else ""


def clean_reply(text: str) -> str:
    """'550-5.7.1 abc 550-5.7.1 def 550 5.7.1 ghi' -> '550 5.7.1 abc def ghi' (a multi-line reply on one line)."""
    m = _REPLY_PREFIX.match(text)
    if not m:
        return text
    code, status = m.group(1), m.group(2)
    head = code + " " + (status + " " if status else "")
    rest = text[m.end() :]
    if f" {code}" in rest:
        rest = _repeat(code, status or "").sub(" ", rest)
    return one_line(head + rest)


@lru_cache(maxsize=64)
def _repeat(code: str, status: str) -> re.Pattern[str]:
    return re.compile(r"\s" + code + r"[ \-]" + (re.escape(status) + r"(?=\s)" if status else ""))


def make_row(
    address: str,
    diagnostic: str,
    *,
    status: str = "",
    reply_code: str = "",
    remote_mta: str = "",
    action: str = "",
    smtp_command: str = "",
) -> RecipientResult:
    """base.make_row on the reply with the MTAs' multi-line prefixes folded (see clean_reply)."""
    row = base_make_row(
        address, clean_reply(one_line(diagnostic)), status=status, reply_code=reply_code,
        remote_mta=remote_mta, action=action,
    )
    row.smtp_command = smtp_command
    return row


def unique(rows: list[RecipientResult]) -> list[RecipientResult]:
    """Rows with an address, one per address, in order."""
    seen: set[str] = set()
    out: list[RecipientResult] = []
    for row in rows:
        if row.recipient and row.recipient not in seen:
            seen.add(row.recipient)
            out.append(row)
    return out


def sender_is_daemon(msg: Message) -> bool:
    """From a mailer daemon / postmaster / null sender: the cheap first gate of most formats."""
    value = msg.headers.get("from").lower()
    return (
        not value.strip()
        or "mailer-daemon" in value
        or "postmaster" in value
        or "mail delivery" in value
        or "<>" in value
    )


def stage_name(text: str) -> str:
    """'RCPT TO:<a@b>' / 'end of data' / 'MAIL FROM' ... -> RCPT, DATA, MAIL ("" if none)."""
    return stage.name(text)
