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

Entry = tuple[str, str, "re.Pattern[str] | None"]  # (reason, phrase, regex or None for a plain substring)


def phrase_regex(phrase: str) -> re.Pattern[str] | None:
    """The regex for a phrase with tokens; None for a plain phrase (a substring test)."""
    if not _TOKEN_SPLIT.search(phrase):
        return None
    parts = [_TOKENS.get(piece, re.escape(piece)) for piece in _TOKEN_SPLIT.split(phrase) if piece]
    return re.compile("".join(parts))


def anchor(phrase: str) -> str:
    """The phrase's most distinctive whole word: longest, preferring words not cut by the phrase's own ends."""
    literal = _TOKEN_SPLIT.sub(" ", phrase)
    best, best_key = "", (-1, -1)
    for m in _WORD.finditer(literal):
        word = m.group(0)
        bounded = m.start() > 0 and m.end() < len(literal)
        key = (1 if bounded and len(word) >= 4 else 0, len(word))
        if key > best_key and not word.isdigit():
            best, best_key = word, key
    return best


def normalise(text: str) -> str:
    """Lower case, white space folded to single spaces, typographic quotes and dashes made plain."""
    text = " ".join(text[:MAX_TEXT].lower().split())
    if not text.isascii():
        text = text.replace("\u2019", "'").replace("\u2013", "-").replace("\u2014", "-")
    return text


class PhraseIndex:
    """All phrases of a set of tables, indexed by anchor word."""

    def __init__(self, phrases: list[tuple[str, str]]) -> None:
        self._always: list[Entry] = []  # ASCII phrases with no usable anchor word (few, short)
        self._foreign: list[Entry] = []  # phrases without an ASCII word: tested on non-ASCII text only
        index: dict[str, list[Entry]] = {}
        for reason, phrase in phrases:
            entry: Entry = (reason, phrase, phrase_regex(phrase))
            word = anchor(phrase)
            if not word:
                (self._always if phrase.isascii() else self._foreign).append(entry)
            elif word == phrase.strip():
                self._always.append(entry)  # a one-word phrase: its own substring test is as cheap
            else:
                index.setdefault(word, []).append(entry)
        self._index = {w.encode(): entries for w, entries in index.items()}
        self._anchors = frozenset(self._index)

    def scan(self, text: str) -> dict[str, str]:
        """{reason: the first of its phrases found in the normalised text}."""
        found: dict[str, str] = {}
        for reason, phrase, rx in self._always:
            if reason not in found and (phrase in text if rx is None else rx.search(text) is not None):
                found[reason] = phrase
        ascii_text = text.isascii()
        if not ascii_text:
            for reason, phrase, rx in self._foreign:
                if reason not in found and (phrase in text if rx is None else rx.search(text) is not None):
                    found[reason] = phrase
        words = text.encode("ascii", "replace").translate(_WORD_TABLE)
        for word in self._anchors.intersection(words.split()):
            for reason, phrase, rx in self._index[word]:
                if reason not in found and (phrase in text if rx is None else rx.search(text) is not None):
                    found[reason] = phrase
        return found


def _catalog_phrases() -> list[tuple[str, str]]:
    out = [(t.name, p) for t in TABLES.values() for p in t.phrases]
    # A cancelling wording is indexed as "!reason" so that one scan finds it too.
    out += [(f"!{t.name}", p) for t in TABLES.values() for p in t.not_phrases]
    return out


CATALOG = PhraseIndex(_catalog_phrases())


def text_reasons(text: str) -> dict[str, str]:
    """{reason: phrase} for every catalog reason whose phrases occur in the normalised `text`."""
    found = CATALOG.scan(text)
    for key in [k for k in found if k.startswith("!")]:
        found.pop(key[1:], None)
        del found[key]
    return found
