"""Helpers shared by the gateway / enterprise-server / Japanese-carrier detectors."""

from __future__ import annotations

import re

from .. import stage
from ..mime import Message
from ..model import RecipientResult
from .base import dsn_rows, make_row  # noqa: F401 - shared by the gateway modules

# A whole-line address, optionally in angle brackets: what these formats list recipients as.
LINE_ADDRESS = re.compile(r"^\s*<?([^\s<>@]{1,128}@[^\s<>@]{1,255}?)>?\s*$")
_ESCAPED_JIS = re.compile(r"\x1b\$[B@]")


def received_has(msg: Message, *needles: str) -> bool:
    """Whether any Received header contains one of `needles` (case-sensitive, as the MTAs write them)."""
    joined = msg.memo.get("received-joined")
    if joined is None:  # several detectors ask: join the headers once per message
        joined = msg.memo["received-joined"] = "\n".join(msg.headers.get_all("received"))
    return any(needle in joined for needle in needles)  # type: ignore[operator]


def section(text: str, start: str, end: str | None = None, max_lines: int = 400) -> list[str]:
    """The lines after the first line containing `start`, up to a line containing `end` (excluded)."""
    at = text.find(start)
    if at < 0:
        return []
    nl = text.find("\n", at)
    if nl < 0:
        return []
    lines: list[str] = []
    for line in text[nl + 1 :].split("\n", max_lines)[:max_lines]:
        if end is not None and end in line:
            break
        lines.append(line)
    return lines


def fill_from_dsn(rows: list[RecipientResult], msg: Message) -> None:
    """Take status, reply code and remote MTA from the DSN part for rows the text left without them."""
    dsn = dsn_rows(msg)
    if not dsn:
        return
    by_addr = {r.recipient: r for r in dsn}
    for i, row in enumerate(rows):
        other = by_addr.get(row.recipient) or (dsn[i] if len(dsn) == len(rows) else None)
        if other is None:
            continue
        if not row.status or (row.status.endswith(".0.0") and other.status and not other.status.endswith(".0.0")):
            row.status = other.status or row.status
        row.reply_code = row.reply_code or other.reply_code
        row.remote_mta = row.remote_mta or first_host(other.remote_mta)
        row.action = row.action or other.action
        row.diagnostic = row.diagnostic or other.diagnostic


def first_host(value: str) -> str:
    """'lsean.example.jp (TCP|192.0.2.1|25) (au mail)' -> 'lsean.example.jp'."""
    value = value.strip().strip("[]")
    return value.split()[0].strip("[]") if value else ""


def unjis(text: str) -> str:
    """Decode ISO-2022-JP that reached us undecoded (a DSN field with raw escapes)."""
    if "\x1b" not in text or not _ESCAPED_JIS.search(text):
        return text
    try:
        return text.encode("latin-1").decode("iso-2022-jp")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def set_stage(rows: list[RecipientResult], command: str = "") -> None:
    """The SMTP command the format names (m-FILTER's "-------SMTP command" block, InterScan's
    "Sent <<< RCPT", a transcript's "RCPT TO:<...>" echo) is each row's stage."""
    named = stage.name(command)
    for row in rows:
        if not row.smtp_command:
            row.smtp_command = named or ("RCPT" if "RCPT TO" in row.diagnostic else "")
