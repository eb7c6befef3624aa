"""Complaints: RFC 5965 abuse feedback reports (ARF), Microsoft's JMRP format, and the feedback
reports that are not RFC 5965 (X-ARF, Amazon SES and Hotmail complaint forwards, SpamCop
reports, ARF fields written into a text part)."""

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
    """An RFC 5965 report or a JMRP complaint (see detect_loose for the other shapes)."""
    part = msg.find("message/feedback-report", max_depth=0)
    if part is None:
        if msg.report_type() == "feedback-report":
            return _report(msg, {}, "Content-Type: multipart/report; report-type=feedback-report")
        return _jmrp(msg)
    return _report(msg, _fields(part), "message/feedback-report part")


def detect_loose(msg: Message) -> tuple[Feedback, list[RecipientResult], str] | None:
    """Feedback reports that are not RFC 5965. Asked after the bounce formats: none looks like one."""
    return _loose(msg)


def _report(msg: Message, fields: dict[str, list[str]], evidence: str) -> tuple[Feedback, list[RecipientResult], str]:
    def first(name: str) -> str:
        values = fields.get(name)
        return values[0].strip() if values else ""

    feedback = Feedback(
        feedback_type=first("feedback-type").lower(),
        user_agent=first("user-agent"),
        source_ip=first("source-ip"),
    )
    return feedback, _rows(msg, fields), evidence


def _jmrp(msg: Message) -> tuple[Feedback, list[RecipientResult], str] | None:
    original = msg.original_headers()
    if original is None or _JMRP_HEADER not in original:
        return None
    addr = clean_address(original.get(_JMRP_HEADER)) or next(iter(find_addresses(original.get("to"))), "")
    feedback = Feedback(feedback_type="abuse", user_agent="JMRP", source_ip=original.get("x-reporter-ip").strip())
    evidence = "X-HmXmrOriginalRecipient in attached message"
    return feedback, [RecipientResult(recipient=addr, reason="feedback")], evidence


# Senders of complaint forwards that are not ARF: Amazon SES's feedback forwarding and the old
# Hotmail complaint mail, both "complaint about message from ..." (multipart/mixed).
_COMPLAINT_FORWARDERS = ("complaints@email-abuse.amazonses.com", "staff@hotmail.com")
# Words in From or Subject of every report _loose knows (lower case).
_LOOSE_HINT = ("report", "abuse", "feedback", "complain", "fbl", "spam")
_INLINE_FEEDBACK = re.compile(r"^Feedback-Type:\s*([\w\-]+)", re.I | re.M)
_XARF_CATEGORY = re.compile(r"^Category:\s*([\w\-]+)", re.I | re.M)


def _loose(msg: Message) -> tuple[Feedback, list[RecipientResult], str] | None:
    """Feedback reports without an RFC 5965 part."""
    h = msg.headers
    sender = h.get("from").lower()
    if "x-arf" not in h:
        said = sender + "\n" + h.get("subject").lower()
        for word in _LOOSE_HINT:
            if word in said:
                break
        else:
            return None  # nearly every message: no sign of a report in From or Subject
    feedback_type = "abuse"
    if h.get("x-arf").strip().lower() == "yes":
        # X-ARF (abusix / German ISPs): a YAML report part with "Category: abuse|spam|..."
        text = msg.body_text()[:20000]
        category = _XARF_CATEGORY.search(text)
        feedback_type = category.group(1).lower() if category else feedback_type
        evidence = "X-ARF: yes"
    elif any(f in sender for f in _COMPLAINT_FORWARDERS) and "complaint about message from" in _subject(msg):
        text, evidence = msg.body_text()[:20000], "complaint forward: " + sender.strip()[:60]
    elif "spamcop.net" in sender and _subject(msg).startswith("[spamcop"):
        text, evidence = msg.body_text()[:20000], "SpamCop report"
    else:
        # ARF fields written into the first text part by a broken report generator, with the
        # original attached; such reports come from a feedback loop address or say what they are.
        first = next((p for p in msg.parts if p.depth == 0 and p.ctype == "text/plain"), None)
        text = first.text[:20000] if first is not None else ""
        if "eedback-" not in text and "EEDBACK-" not in text:
            return None
        inline = _INLINE_FEEDBACK.search(text)
        if inline is None or "user-agent:" not in text.lower() or msg.original_headers() is None:
            return None
        feedback_type, evidence = inline.group(1).lower(), "Feedback-Type field in the text"
    fields = _inline_fields(text)
    source_ip = (fields.get("source-ip") or [""])[0]
    return Feedback(feedback_type=feedback_type, source_ip=source_ip), _rows(msg, fields), evidence


def _subject(msg: Message) -> str:
    return msg.headers.decoded("subject").lower()


def _inline_fields(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.split("\n")[:400]:
        m = _FIELD.match(line)
        if m:
            out.setdefault(m.group(1).lower(), []).append(m.group(2).strip())
    return out


def _rows(msg: Message, fields: dict[str, list[str]]) -> list[RecipientResult]:
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
    return [RecipientResult(recipient=a, reason="feedback") for a in addresses] or [
        RecipientResult(recipient="", reason="feedback")
    ]
