"""RFC 5965 abuse feedback reports (ARF), and the common near-misses."""

from __future__ import annotations

from ..classify.dsn import parse_fields
from .mime import Message
from .model import Feedback, RecipientResult
from .text import clean_address, find_addresses

FEEDBACK_PART_TYPES = ("message/feedback-report",)


def detect(msg: Message) -> tuple[Feedback, list[RecipientResult], str] | None:
    part = msg.find(*FEEDBACK_PART_TYPES, max_depth=0)
    if part is None:
        if msg.report_type() != "feedback-report":
            return None
        evidence = "Content-Type: multipart/report; report-type=feedback-report"
        fields: dict[str, str] = {}
    else:
        evidence = "message/feedback-report part"
        fields = parse_fields(part.text).per_message
        # parse_fields groups recipient-like fields separately; an ARF report has one group.
        report = parse_fields(part.text)
        for group in report.groups:
            for k, v in group.items():
                fields.setdefault(k, v)
    feedback = Feedback(
        feedback_type=fields.get("feedback-type", "").strip().lower(),
        user_agent=fields.get("user-agent", "").strip(),
        source_ip=fields.get("source-ip", "").strip(),
    )
    recipient = clean_address(fields.get("original-rcpt-to", "")) or clean_address(
        fields.get("removal-recipient", "")
    )
    if not recipient:
        original = msg.original_headers()
        if original is not None:
            to = find_addresses(original.get("to"))
            recipient = to[0] if to else ""
    row = RecipientResult(recipient=recipient, action="", reason="feedback")
    return feedback, [row], evidence
