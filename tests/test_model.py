"""The field order of the classifier's result types: hot paths build them with positional arguments
(dsn.recipients_from_report, classify._finish, classify._original, mime.parse_message)."""

from __future__ import annotations

from dataclasses import fields

from bouncemilter.classify.mime import Message
from bouncemilter.classify.model import Classification, OriginalMessage, RecipientResult


def _names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def test_recipient_result_field_order() -> None:
    assert _names(RecipientResult) == [
        "recipient", "action", "status", "reply_code", "diagnostic", "remote_mta", "reason", "hard",
        "smtp_command", "diagnostic_type", "reason_rule", "original_recipient",
    ]  # fmt: skip


def test_classification_original_and_message_field_order() -> None:
    assert _names(Classification)[:5] == ["kind", "recipients", "detector", "evidence", "original"]
    assert _names(OriginalMessage) == ["message_id", "subject", "from_", "to", "envelope_id"]
    assert _names(Message)[:4] == ["headers", "parts", "truncated", "size"]
