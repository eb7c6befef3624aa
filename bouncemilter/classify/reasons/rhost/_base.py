"""The shape of a provider table (rhost/<provider>.py) and how one rule matches."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ..matcher import text_words

_WORD = re.compile(r"[a-z0-9]+")


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


def _index(rules: tuple[Rule, ...]) -> tuple[dict[bytes, tuple[int, ...]], frozenset[int]]:
    """Rule numbers by anchor word, and the rules that have none. A rule's anchor is a word strictly
    inside its phrase (so whole in any text that has the phrase), the rarest in the table, then the
    longest; a rule without a phrase, or without such a word, is always tried."""
    inner = [_inner_words(rule.phrase) for rule in rules]
    frequency: dict[str, int] = {}
    for words in inner:
        for word in set(words):
            frequency[word] = frequency.get(word, 0) + 1
    anchored: dict[bytes, list[int]] = {}
    unanchored: list[int] = []
    for i, words in enumerate(inner):
        if not words:
            unanchored.append(i)
            continue
        word = min(words, key=lambda w: (frequency[w], -len(w)))
        anchored.setdefault(word.encode(), []).append(i)
    return {w: tuple(ids) for w, ids in anchored.items()}, frozenset(unanchored)


def _inner_words(phrase: str) -> list[str]:
    """The [a-z0-9] words of `phrase` with a non-word character on both sides within the phrase."""
    return [m.group(0) for m in _WORD.finditer(phrase) if m.start() > 0 and m.end() < len(phrase)]


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
    # Built from `rules`: which rules a text's words can wake (see _index).
    _anchored: dict[bytes, tuple[int, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _unanchored: frozenset[int] = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        anchored, unanchored = _index(self.rules)
        object.__setattr__(self, "_anchored", anchored)
        object.__setattr__(self, "_unanchored", unanchored)

    def decide(
        self, status: str, reply: str, text: str, stage: str = "", words: frozenset[bytes] | None = None
    ) -> tuple[str, str]:
        """(reason, what matched) or ("", ""). `words`: the text's words (matcher.words), when known."""
        if self.code_rx is not None:
            m = self.code_rx.search(text)
            if m:
                code = m.group(1)
                reason = self.codes.get(code) or (self.code_reason(code) if self.code_reason else "")
                if reason:
                    return reason, code
        # Only the rules whose anchor word the text has, and those without a phrase, can match:
        # Microsoft's and Google's tables have 80-125 rules, nearly all phrases.
        if words is None:
            words = text_words(text)
        rules = self.rules
        candidates = set(self._unanchored)
        anchored = self._anchored
        for word in words.intersection(anchored):
            candidates.update(anchored[word])
        for i in sorted(candidates):
            rule = rules[i]
            # Rule.matches, inlined
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
