"""The shape of a provider table (rhost/<provider>.py) and how one rule matches."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Rule:
    """The provider says `reason` when every non-empty field matches.

    `status` is an exact enhanced code ("5.7.1"), a class prefix ending in a dot ("5.7."), or a
    range of the last number ("5.7.606-649"); `reply` is an exact SMTP reply code; `phrase` is a
    lower-case substring of the (normalised) diagnostic. `source` names the provider's document or
    the wording it answers with.
    """

    reason: str
    phrase: str = ""
    status: str = ""
    reply: str = ""
    source: str = ""

    def matches(self, status: str, reply: str, text: str) -> bool:
        # A field the report leaves empty does not count against a rule: the words still have to match.
        if self.reply and reply and self.reply != reply:
            return False
        if self.status and (status or not self.phrase) and not _status_matches(self.status, status):
            return False
        return not self.phrase or self.phrase in text


def _status_matches(pattern: str, status: str) -> bool:
    if "-" in pattern:
        head, _, span = pattern.rpartition(".")
        low, _, high = span.partition("-")
        prefix, _, last = status.rpartition(".")
        return prefix == head and last.isdigit() and int(low) <= int(last) <= int(high)
    if pattern.endswith("."):
        return status.startswith(pattern)
    return status == pattern


@dataclass(frozen=True, slots=True)
class Provider:
    """A receiving provider's own answers, chosen by its remote host names or its recipients' domains."""

    name: str  # short, used in reason_rule: "rhost:google"
    hosts: tuple[str, ...] = ()  # remote MTA host name suffixes ("google.com" matches "mx.google.com")
    domains: tuple[str, ...] = ()  # recipient domains it hosts
    rules: tuple[Rule, ...] = ()  # tried in order, first match wins
    # Provider error codes in the text ("AUP#CXBL", "OFR_416", "IB607"): a regex whose group 1 is the code,
    # and the code -> reason table; `code_reason` maps a code the table lacks (ranges, prefixes).
    code_rx: re.Pattern[str] | None = None
    codes: dict[str, str] = field(default_factory=dict)
    code_reason: Callable[[str], str] | None = None
    # A last rule that needs the SMTP stage: (status, reply, text, stage) -> reason or "".
    by_stage: Callable[[str, str, str, str], str] | None = None

    def decide(self, status: str, reply: str, text: str, stage: str = "") -> tuple[str, str]:
        """(reason, what matched) or ("", "")."""
        if self.code_rx is not None:
            m = self.code_rx.search(text)
            if m:
                code = m.group(1)
                reason = self.codes.get(code) or (self.code_reason(code) if self.code_reason else "")
                if reason:
                    return reason, code
        for rule in self.rules:
            # Rule.matches, inlined: a provider table is scanned rule by rule for every reply it answers.
            phrase = rule.phrase
            if phrase and phrase not in text:
                continue
            if rule.reply and reply and rule.reply != reply:
                continue
            if rule.status and (status or not phrase) and not _status_matches(rule.status, status):
                continue
            return rule.reason, phrase or rule.status or rule.reply
        if self.by_stage is not None:
            reason = self.by_stage(status, reply, text, stage)
            if reason:
                return reason, f"{status or 'no status'} at {stage}"
        return "", ""
