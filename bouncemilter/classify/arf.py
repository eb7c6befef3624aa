"""RFC 5965 abuse feedback reports (ARF), and Microsoft's JMRP complaint format."""

from __future__ import annotations

import re

from .mime import Message, Part
from .model import Feedback, RecipientResult
from .text import clean_address, find_addresses

_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9\-]*)[ \t]*:[ \t]*(.*)$")
# JMRP (Hotmail/Outlook.com junk mail reporting) forwards the reported message as an attachment
# and names the complaining mailbox in this header of the attached copy.
_JMRP_HEADER = "x-hmxmroriginalrecipient"


def _fields(part: Part) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    last = ""
    for line in part.text.split("\n"):
        if line[:1] in (" ", "\t") and last:
            out[last][-1] += " " + line.strip()
            continue
        m = _FIELD.match(line)
        if m:
            last = m.group(1).lower()
            out.setdefault(last, []).append(m.group(2).strip())
        else:
            last = ""
    return out


def detect(msg: Message) -> tuple[Feedback, list[RecipientResult], str] | None:
    part = msg.find("message/feedback-report", max_depth=0)
    if part is None:
        if msg.report_type() == "feedback-report":
            return _report(msg, {}, "Content-Type: multipart/report; report-type=feedback-report")
        return _jmrp(msg)
    return _report(msg, _fields(part), "message/feedback-report part")


def _report(msg: Message, fields: dict[str, list[str]], evidence: str) -> tuple[Feedback, list[RecipientResult], str]:
    def first(name: str) -> str:
        values = fields.get(name)
        return values[0].strip() if values else ""

    feedback = Feedback(
        feedback_type=first("feedback-type").lower(),
        user_agent=first("user-agent"),
        source_ip=first("source-ip"),
    )
    addresses: list[str] = []
    for name in ("original-rcpt-to", "removal-recipient"):
        for value in fields.get(name, []):
            addr = clean_address(value)
            if addr and addr not in addresses:
                addresses.append(addr)
    if not addresses:
        original = msg.original_headers()
        if original is not None:
            addresses = find_addresses(original.get("to"))[:1]
    rows = [RecipientResult(recipient=a, reason="feedback") for a in addresses] or [
        RecipientResult(recipient="", reason="feedback")
    ]
    return feedback, rows, evidence


def _jmrp(msg: Message) -> tuple[Feedback, list[RecipientResult], str] | None:
    original = msg.original_headers()
    if original is None or _JMRP_HEADER not in original:
        return None
    addr = clean_address(original.get(_JMRP_HEADER)) or next(iter(find_addresses(original.get("to"))), "")
    feedback = Feedback(feedback_type="abuse", user_agent="JMRP", source_ip=original.get("x-reporter-ip").strip())
    evidence = "X-HmXmrOriginalRecipient in attached message"
    return feedback, [RecipientResult(recipient=addr, reason="feedback")], evidence
