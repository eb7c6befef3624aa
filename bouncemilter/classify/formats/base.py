"""What a format detector returns, and helpers that many formats share."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..model import Kind, OriginalMessage, RecipientResult
from ..text import clean_address, find_reply_code, find_status, one_line

# A reply code at the start of a diagnostic, also in the "550:" and "550-5.1.1" spellings.
_LEADING_CODE = re.compile(r"^\s*([245]\d\d)(?:[\s:\-]|$)")


@dataclass(slots=True)
class Detection:
    recipients: list[RecipientResult]
    evidence: str  # the header or line that identified the format, for people
    kind: Kind | None = None  # None: derived from the recipients' actions
    original: OriginalMessage | None = None
    # The DSN's Reporting-MTA: with no Remote-MTA, the server that refused the message wrote the
    # report itself (Exchange Online, Gmail), so its name chooses the provider table.
    reporting_mta: str = ""


def make_row(
    addr: str,
    diagnostic: str = "",
    *,
    status: str = "",
    reply_code: str = "",
    remote_mta: str = "",
    action: str = "",
    reason: str = "",
) -> RecipientResult:
    """A recipient row; status and reply code come from the diagnostic when not given."""
    diagnostic = one_line(diagnostic)
    if not reply_code:
        m = _LEADING_CODE.match(diagnostic)
        reply_code = m.group(1) if m else find_reply_code(diagnostic)
    return RecipientResult(
        recipient=clean_address(addr),
        action=action,
        status=status or find_status(diagnostic),
        reply_code=reply_code,
        diagnostic=diagnostic,
        remote_mta=remote_mta,
        reason=reason,
    )
