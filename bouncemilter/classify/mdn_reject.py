"""Rejections sent as message disposition notifications: a delivery agent refused the message after it was
accepted, and said so with an MDN instead of a DSN.

RFC 5429 (Sieve "reject"), section 2.2.1: when a Sieve script rejects a message, the MDN that reports it MUST
carry ``Disposition: automatic-action/MDN-sent-automatically; deleted``, and its human-readable part gives the
reason. Dovecot's LDA and LMTP use the same MDN for their own refusals ("Your message to <a@b> was automatically
rejected: Quota exceeded"). A read receipt never says "deleted" with "automatic-action": a person's client
reports "displayed", or "deleted" under "manual-action". So this shape is a failure of the MDN's
Final-Recipient, a bounce, and its reason comes from the words (a quota, an unknown user). Without such words it
is the recipient's own filter refusing the message: `filtered`, never hard.
"""

from __future__ import annotations

import re

from .challenge import mdn_part
from .dsn import RECIPIENT_FIELDS
from .formats.base import Detection
from .mime import Message
from .model import RecipientResult
from .text import clean_address, one_line

# RFC 8098 3.2.6: disposition-mode "/" sending-mode ";" disposition-type
_REJECTED = re.compile(r"^Disposition:\s*automatic-action\s*/\s*MDN-sent-automatically\s*;\s*deleted\b", re.I | re.M)
_FIELD = re.compile(r"^(Final-Recipient|Original-Recipient):\s*(.+)$", re.I | re.M)
REASON_RULE = "mdn:automatic-action; deleted (RFC 5429 reject)"


def detect(msg: Message) -> Detection | None:
    """The rejected recipient of a Sieve/delivery-agent rejection MDN; None for anything else."""
    part = mdn_part(msg)
    if part is None:
        return None
    fields = part.text[:4000]
    if not _REJECTED.search(fields):
        return None
    found = {m.group(1).lower(): clean_address(m.group(2)) for m in _FIELD.finditer(fields)}
    recipient = found.get(RECIPIENT_FIELDS[0], "") or found.get(RECIPIENT_FIELDS[1], "")
    if not recipient:
        return None
    original = found.get(RECIPIENT_FIELDS[1], "")
    text = next((p.text for p in msg.text_parts() if p.ctype == "text/plain"), "")
    row = RecipientResult(
        recipient=recipient,
        original_recipient=original if original != recipient else "",
        action="failed",
        diagnostic=one_line(_reason_text(text)),
    )
    return Detection(
        [row],
        "Content-Type: multipart/report; report-type=disposition-notification, Disposition: "
        "automatic-action/MDN-sent-automatically; deleted",
        kind="bounce",
    )


def _reason_text(text: str) -> str:
    """The refusal's words: what follows 'rejected:' (Dovecot, Pigeonhole), else the text's first lines."""
    body = text.strip()[:2000]
    m = re.search(r"rejected\s*:\s*(.+)", body, re.I | re.S)
    words = m.group(1) if m else body
    return " ".join(line.strip() for line in words.strip().split("\n")[:4] if line.strip())[:400]
