"""What a format detector returns, and helpers that many formats share."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import Kind, OriginalMessage, RecipientResult


@dataclass(slots=True)
class Detection:
    recipients: list[RecipientResult]
    evidence: str  # the header or line that identified the format, for people
    kind: Kind | None = None  # None: derived from the recipients' actions
    original: OriginalMessage | None = None
    extra: dict[str, str] = field(default_factory=dict)
