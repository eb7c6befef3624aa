"""Find every catalog phrase in a diagnostic, reading the text once.

Python's regex engine has no multi-pattern search: a 900-branch alternation costs ~20 ns per
character per branch group, far over the classifier's budget. So each phrase is indexed by one
"anchor" word it contains; a diagnostic is split into its words once, and only the phrases whose
anchor occurs are checked (a plain substring test, or a small regex for phrases with {w}/{d}/{a}
tokens). Every regex is literal-prefixed, bounded and free of nested quantifiers (anyone can send
us mail: no pattern may backtrack without bound). Phrases without an ASCII word (Japanese,
Chinese, Russian) are tested only when the text is not ASCII.
"""

from __future__ import annotations

import re

from .catalog import TABLES

MAX_TEXT = 2000  # real server replies are short; the bound keeps a hostile bounce cheap

_TOKENS = {"{w}": r"[^ ]{1,80}", "{d}": r"\d{1,12}", "{a}": r".{0,60}?"}
_TOKEN_SPLIT = re.compile(r"(\{[wda]\})")
_WORD = re.compile(r"[a-z0-9]+")
# bytes.translate table (fast, C): every byte that is not [a-z0-9] becomes a space; text is lower-cased first.
_WORD_TABLE = bytes(c if chr(c).isascii() and chr(c).isalnum() else 32 for c in range(256))

Plain = tuple[str, str]  # (phrase, reason): a substring test
Token = tuple["re.Pattern[str]", str, str]  # (regex, phrase, reason): a phrase with {w}/{d}/{a} tokens
Group = tuple[tuple[Plain, ...], tuple[Token, ...]]


def text_words(text: str) -> frozenset[bytes]:
    """The [a-z0-9] words of a normalised text, as bytes (one C pass: encode, translate, split)."""
    return frozenset(text.encode("ascii", "replace").translate(_WORD_TABLE).split())


def phrase_regex(phrase: str) -> re.Pattern[str] | None:
    """The regex for a phrase with tokens; None for a plain phrase (a substring test)."""
    if not _TOKEN_SPLIT.search(phrase):
        return None
    parts = [_TOKENS.get(piece, re.escape(piece)) for piece in _TOKEN_SPLIT.split(phrase) if piece]
    return re.compile("".join(parts))


def anchor_words(phrase: str) -> list[str]:
    """The words a text containing `phrase` is sure to contain whole: the words inside the phrase,
    and its first word (a phrase starts where a word starts; its last word may go on in the text,
    "administrative" in "administratively"). Best first: inside words of 4+ letters, then the
    first word, then the rest."""
    literal = _TOKEN_SPLIT.sub(" ", phrase)
    ranked: list[tuple[tuple[int, int], str]] = []
    for m in _WORD.finditer(literal):
        word = m.group(0)
        if word.isdigit():
            continue
        inside = m.start() > 0 and m.end() < len(literal)
        rank = (1 if inside and len(word) >= 4 else 0, 1 if m.start() == 0 else 0)
        if inside or m.start() == 0:
            ranked.append((rank, word))
        elif not ranked:
            ranked.append(((-1, 0), word))  # only a last word: the best there is
    ranked.sort(key=lambda item: item[0], reverse=True)
    return [word for rank, word in ranked if rank == ranked[0][0]] if ranked else []


def anchor(phrase: str, frequency: dict[str, int] | None = None) -> str:
    """The anchor of `phrase`: of its best words (anchor_words), the rarest among all phrases, so
    that a text's common words ("user", "mailbox") wake few phrases; then the longest."""
    words = anchor_words(phrase)
    if not words:
        return ""
    freq = frequency or {}
    return min(words, key=lambda w: (freq.get(w, 0), -len(w)))


def normalise(text: str) -> str:
    """Lower case, white space folded to single spaces, typographic quotes and dashes made plain."""
    text = " ".join(text[:MAX_TEXT].lower().split())
    if not text.isascii():
        text = text.replace("\u2019", "'").replace("\u2013", "-").replace("\u2014", "-")
    return text


class PhraseIndex:
    """All phrases of a set of tables, indexed by anchor word."""

    def __init__(self, phrases: list[tuple[str, str]]) -> None:
        always: list[tuple[str, str]] = []  # ASCII phrases with no usable anchor word (few, short)
        foreign: list[tuple[str, str]] = []  # phrases without an ASCII word: tested on non-ASCII text only
        index: dict[str, list[tuple[str, str]]] = {}
        frequency: dict[str, int] = {}
        for _, phrase in phrases:
            for word in set(anchor_words(phrase)):
                frequency[word] = frequency.get(word, 0) + 1
        for reason, phrase in phrases:
            word = anchor(phrase, frequency)
            if not word:
                (always if phrase.isascii() else foreign).append((reason, phrase))
            elif word == phrase.strip():
                always.append((reason, phrase))  # a one-word phrase: its own substring test is as cheap
            else:
                index.setdefault(word, []).append((reason, phrase))
        self._always = _group(always)
        self._foreign = _group(foreign)
        self._index = {w.encode(): _group(entries) for w, entries in index.items()}
        self._anchors = frozenset(self._index)

    def only(self, reasons: frozenset[str]) -> PhraseIndex:
        """The same index (the same anchor per phrase: what a scan finds depends on it) for some reasons only."""
        part = PhraseIndex([])
        part._always = _only(self._always, reasons)
        part._foreign = _only(self._foreign, reasons)
        part._index = {w: g for w, g in ((w, _only(g, reasons)) for w, g in self._index.items()) if g[0] or g[1]}
        part._anchors = frozenset(part._index)
        return part

    def scan(self, text: str, words: frozenset[bytes] | None = None) -> dict[str, str]:
        """{reason: the longest of its phrases found in the normalised text}; `words`: text_words(text)."""
        found: dict[str, str] = {}
        _test(self._always, text, found)
        if not text.isascii():
            _test(self._foreign, text, found)
        index = self._index
        # sorted: a set's order changes with PYTHONHASHSEED, and with it which phrase a reason_rule would name
        # sorted: a set's order changes with PYTHONHASHSEED; with the longest phrase winning (below), every process
        # names the same phrase in reason_rule, and the most specific one
        for word in sorted(self._anchors.intersection(text_words(text) if words is None else words)):
            plain, tokens = index[word]
            # the substring test first: it fails for nearly every phrase, in C
            for phrase, reason in plain:
                if phrase in text and len(phrase) > len(found.get(reason, "")):
                    found[reason] = phrase
            for rx, phrase, reason in tokens:
                if len(phrase) > len(found.get(reason, "")) and rx.search(text) is not None:
                    found[reason] = phrase
        return found


def _group(entries: list[tuple[str, str]]) -> Group:
    """(reason, phrase) pairs -> (plain phrases, token phrases with their regexes)."""
    plain: list[Plain] = []
    tokens: list[Token] = []
    for reason, phrase in entries:
        rx = phrase_regex(phrase)
        if rx is None:
            plain.append((phrase, reason))
        else:
            tokens.append((rx, phrase, reason))
    return tuple(plain), tuple(tokens)


def _only(group: Group, reasons: frozenset[str]) -> Group:
    plain, tokens = group
    return tuple(p for p in plain if p[1] in reasons), tuple(t for t in tokens if t[2] in reasons)


def _test(group: Group, text: str, found: dict[str, str]) -> None:
    plain, tokens = group
    for phrase, reason in plain:
        if phrase in text and len(phrase) > len(found.get(reason, "")):
            found[reason] = phrase
    for rx, phrase, reason in tokens:
        if len(phrase) > len(found.get(reason, "")) and rx.search(text) is not None:
            found[reason] = phrase


CATALOG = PhraseIndex([(t.name, p) for t in TABLES.values() for p in t.phrases])
# Wordings that cancel a reason's phrases (catalog not_phrases), by reason.
_CANCEL: dict[str, tuple[str, ...]] = {t.name: tuple(t.not_phrases) for t in TABLES.values() if t.not_phrases}


def any_of(index: PhraseIndex, text: str, words: frozenset[bytes] | None = None) -> bool:
    """Whether text_reasons(text) would name any reason of `index` (an index made by CATALOG.only)."""
    found = index.scan(text, words)
    for reason in found:
        cancels = _CANCEL.get(reason)
        if not cancels or not any(c in text for c in cancels):
            return True
    return False


def text_reasons(text: str, words: frozenset[bytes] | None = None) -> dict[str, str]:
    """{reason: phrase} for every catalog reason whose phrases occur in the normalised `text`."""
    found = CATALOG.scan(text, words)
    for reason, cancels in _CANCEL.items():
        if reason in found and any(c in text for c in cancels):
            del found[reason]
    return found
