"""What a format detector returns, and helpers that many formats share."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..dsn import parse_dsn
from ..mime import Message
from ..model import Kind, OriginalMessage, RecipientResult
from ..text import clean_address, find_reply_code, find_status, one_line

MAX_RECIPIENTS = 200  # bounds every per-recipient loop

# A reply code at the start of a diagnostic, also in the "550:" and "550-5.1.1" spellings.
_LEADING_CODE = re.compile(r"^\s*([245]\d\d)(?:[\s:\-]|$)")
# "550-5.7.26 text" / "550 5.7.26 text" / "550-text": the prefix of each line of a multi-line SMTP reply.
REPLY_PREFIX = re.compile(r"^([245]\d\d)[ \-](?:([245]\.\d{1,3}\.\d{1,3})\s+)?")


@dataclass(slots=True)
class Detection:
    recipients: list[RecipientResult]
    evidence: str  # the header or line that identified the format, for people
    kind: Kind | None = None  # None: derived from the recipients' actions
    original: OriginalMessage | None = None
    # The DSN's Reporting-MTA: with no Remote-MTA, the server that refused the message wrote the
    # report itself (Exchange Online, Gmail), so its name chooses the provider table.
    reporting_mta: str = ""


def clean_reply(text: str) -> str:
    """'550-5.7.1 abc 550-5.7.1 def 550 5.7.1 ghi' -> '550 5.7.1 abc def ghi' (a multi-line reply on one line)."""
    m = REPLY_PREFIX.match(text)
    if not m:
        return text
    code, status = m.group(1), m.group(2)
    head = code + " " + (status + " " if status else "")
    rest = text[m.end() :]
    if f" {code}" not in rest:
        return head + rest  # one line already (make_row folds first): nothing repeated to drop
    return one_line(head + _repeat(code, status or "").sub(" ", rest))


@lru_cache(maxsize=64)
def _repeat(code: str, status: str) -> re.Pattern[str]:
    return re.compile(r"\s" + code + r"[ \-]" + (re.escape(status) + r"(?=\s)" if status else ""))


def make_row(
    addr: str,
    diagnostic: str = "",
    *,
    status: str = "",
    reply_code: str = "",
    remote_mta: str = "",
    action: str = "",
    reason: str = "",
    smtp_command: str = "",
) -> RecipientResult:
    """A recipient row; a multi-line reply folded to one line (clean_reply), status and reply code
    taken from the diagnostic when not given."""
    diagnostic = clean_reply(one_line(diagnostic))
    if not reply_code:
        m = _LEADING_CODE.match(diagnostic)
        reply_code = m.group(1) if m else find_reply_code(diagnostic)
    # positional, in the field order (tests/test_model.py holds it): keywords cost ~4,000 instructions more a row
    return RecipientResult(
        clean_address(addr),  # recipient
        action,
        status or find_status(diagnostic),  # status
        reply_code,
        diagnostic,
        remote_mta,
        reason,
        False,  # hard
        smtp_command,
    )


def cut(text: str, *markers: str) -> str:
    """`text` up to the first of `markers` (where the copy of the original message begins)."""
    end = len(text)
    for marker in markers:
        i = text.find(marker)
        if 0 <= i < end:
            end = i
    return text[:end]


def dsn_rows(msg: Message) -> list[RecipientResult]:
    """Rows of the delivery-status part (with an address), fields of the per-message group
    filling what a recipient group lacks: some providers write Status/Diagnostic-Code before
    Final-Recipient."""
    parsed = parse_dsn(msg)
    if parsed is None:
        return []
    report, rows = parsed
    per = report.per_message
    rows = [r for r in rows if r.recipient][:MAX_RECIPIENTS]
    if len(rows) == 1:
        row = rows[0]
        if not row.diagnostic and per.get("diagnostic-code"):
            diag = per["diagnostic-code"]
            head, sep, rest = diag.partition(";")
            row.diagnostic = one_line(rest if sep and " " not in head.strip() else diag)
            row.reply_code = row.reply_code or find_reply_code(row.diagnostic)
        if not row.status:
            row.status = find_status(per.get("status", "")) or find_status(row.diagnostic)
        group_has_action = any("action" in g for g in report.groups)
        if not group_has_action and per.get("action"):
            # An Action written above Final-Recipient beats one guessed from the status class.
            row.action = per["action"].strip().lower().split(" ")[0]
    return rows
