"""Typed results of classification: plain dataclasses, serialisable with `as_dict`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Kind = Literal["bounce", "delay", "delivered", "complaint", "opt_out", "auto_reply", "not_bounce"]
KINDS: tuple[str, ...] = ("bounce", "delay", "delivered", "complaint", "opt_out", "auto_reply", "not_bounce")


@dataclass(slots=True)
class RecipientResult:
    """What happened to one recipient of the original message."""

    recipient: str  # lower-cased addr-spec, "" when the report names none
    action: str = ""  # failed | delayed | delivered | relayed | expanded | ""
    status: str = ""  # enhanced status code, e.g. "5.1.1"
    reply_code: str = ""  # SMTP reply code, e.g. "550"
    diagnostic: str = ""  # the remote server's words, one line
    remote_mta: str = ""
    reason: str = ""  # Sisimai reason name (see reasons.REASONS)
    hard: bool = False  # the address itself is permanently bad
    smtp_command: str = ""  # the SMTP stage the server answered: CONN, EHLO, HELO, MAIL, RCPT, DATA or ""
    diagnostic_type: str = ""  # the Diagnostic-Code type: smtp, x-unix, x-postfix, ... ("" when not given)
    reason_rule: str = ""  # what decided the reason: "status:5.1.1", 'phrase:userunknown/"no such user"', ...
    # The address the sender used, when the report names another one than `recipient` (RFC 3464 Original-Recipient:
    # an alias or a forward expanded it into the final recipient that failed). "" when the same or not given.
    original_recipient: str = ""


@dataclass(slots=True)
class OriginalMessage:
    """Facts about the message that bounced, when the report carries it."""

    message_id: str = ""
    subject: str = ""
    from_: str = ""
    to: str = ""
    envelope_id: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "message_id": self.message_id,
            "subject": self.subject,
            "from": self.from_,
            "to": self.to,
            "envelope_id": self.envelope_id,
        }


@dataclass(slots=True)
class Feedback:
    """RFC 5965 feedback-report facts."""

    feedback_type: str = ""
    user_agent: str = ""
    source_ip: str = ""


@dataclass(slots=True)
class Classification:
    kind: Kind
    recipients: list[RecipientResult] = field(default_factory=list)
    detector: str = ""  # the rule that recognised the message
    evidence: str = ""  # the header or line that decided, for people
    original: OriginalMessage | None = None
    feedback: Feedback | None = None
    autoreply_markers: list[str] = field(default_factory=list)
    error: str = ""  # set only when classification itself failed
    truncated: bool = False  # the report named more recipients than were read (the first ones are kept)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "detector": self.detector,
            "evidence": self.evidence,
            "recipients": [asdict(r) for r in self.recipients],
            "original": self.original.as_dict() if self.original else None,
            "feedback": asdict(self.feedback) if self.feedback else None,
            "autoreply_markers": list(self.autoreply_markers),
            "error": self.error,
            "truncated": self.truncated,
        }
