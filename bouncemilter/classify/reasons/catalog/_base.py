"""The shape of one reason's data table (catalog/<reason>.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ReasonTable:
    """Everything the engine knows about one reason, as data.

    `phrases` maps a lower-case wording to who writes it (the MTA, provider or filter; shown in
    docs and tests). Phrase syntax: literal text plus three tokens, `{w}` one word (a run of
    non-spaces), `{d}` a number, `{a}` a short gap (up to 60 characters). A phrase is a general
    wording an MTA uses, never a fragment of one sample.
    """

    name: str
    summary: str  # one line for people: README, `reason_rule` readers
    hard: bool = False  # the address or the domain is dead (see reasons.is_hard for notaccept)
    status: tuple[str, ...] = ()  # enhanced status codes (RFC 3463 / IANA registry) that name this reason
    pseudo: tuple[str, ...] = ()  # Sisimai's pseudo status codes x.0.9NN for it ("911" for 5.0.911)
    reply: tuple[str, ...] = ()  # SMTP reply codes that hint at it when nothing more specific decides
    phrases: Mapping[str, str] = field(default_factory=dict)
    # Wordings that name this reason only when said at one SMTP stage: {"MAIL": {phrase: source}}.
    stage_phrases: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Wordings that cancel this reason's phrases when they occur in the same text ("recipient address
    # rejected" is not the sender's "address rejected").
    not_phrases: Mapping[str, str] = field(default_factory=dict)
