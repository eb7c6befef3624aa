"""Helpers shared by the classic MTA bounce formats (mta_*.py)."""

from __future__ import annotations

import re

from .. import stage
from ..mime import Message, html_to_text
from ..model import RecipientResult
from ..text import one_line
from .base import REPLY_PREFIX as _REPLY_PREFIX
from .base import clean_reply, cut, make_row

__all__ = ["clean_reply", "cut", "make_row"]  # shared with the mta_* modules, defined in base.py
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
    size = 0
    for part in msg.parts:
        # startswith: some MTAs forget the ';' ("text/plain charset=...").
        if part.depth or not part.ctype.startswith(("text/plain", "text/html")):
            continue
        text = part.text
        if part.ctype.startswith("text/html") and re.search(r"<(?:html|body|br|p|div|table)\b", text[:4000], re.I):
            text = html_to_text(text)
        texts.append(text)
        size += len(text)
        if size > limit:
            break
    return "\n".join(texts)[:limit]


def unquote(text: str) -> str:
    """Drop one level of '> ' quoting (a forwarded bounce); a transcript's own '>>>' lines stay."""
    return _LEADING_QUOTE.sub("", text)


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
    """From a mailer daemon / postmaster / null sender: the cheap first gate of most formats
    (answered once per message)."""
    cached = msg.memo.get("sender-is-daemon")
    if cached is None:
        value = msg.headers.get("from").lower()
        cached = msg.memo["sender-is-daemon"] = (
            not value.strip()
            or "mailer-daemon" in value
            or "postmaster" in value
            or "mail delivery" in value
            or "<>" in value
        )
    return cached  # type: ignore[return-value]


def stage_name(text: str) -> str:
    """'RCPT TO:<a@b>' / 'end of data' / 'MAIL FROM' ... -> RCPT, DATA, MAIL ("" if none)."""
    return stage.name(text)
