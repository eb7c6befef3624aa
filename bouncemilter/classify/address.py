"""The one place that says what a recipient address is: validated and canonical, the same for every detector.

`canonical()` takes an address as a detector read it and returns the form the store matches on, or rejects it
with a note for the evidence. `classify()` runs it over every recipient of every result (`check_result`), so no
detector can bypass it; the store, the CLI and the suppression commands call it for the addresses they are given.

Rules, and why:
- **Invisible and control characters reject the address** (C0/C1 controls, zero-width and bidi formatting
  characters, other Unicode format characters, separators, surrogates, unassigned code points), and so does
  U+FFFD, which stands for bytes the declared charset could not decode. No real mailbox
  contains them; inside an address they hide what it is (``vic<U+200B>tim@gmail.example`` looks like
  victim@..., and a reader that split at the invisible character would record the innocent ``tim@...``;
  ``ESC[2J`` in an address clears the terminal of whoever lists it). The extraction patterns in `text.py`
  take such characters as part of an address (`INVISIBLE`) so that the whole token reaches this check.
- **RFC 5321 lengths**: a local part of at most 64 octets and an address of at most 254 octets (the 256-octet
  path minus its angle brackets), counted in UTF-8 with the domain in A-labels (what goes over SMTP).
- **Domain**: lower-cased, a trailing dot dropped, internationalised names converted to A-labels (IDNA 2008
  with UTS #46 mapping, as Postfix's SMTPUTF8 support does), so ``alice@bücher.example`` and
  ``alice@xn--bcher-kva.example`` are one address for the suppression list. An ASCII domain keeps letters,
  digits, ``-`` and ``_`` (used in real host names) in labels of 1-63 characters; ``[literal]`` is kept.
- **Local part**: lower-cased like everything the store matches on (the project's convention; providers treat
  local parts case-insensitively in practice).
- **Mixed-script look-alikes** (``vіctim`` with a Cyrillic ``і``, ``gmаil.example`` with a Cyrillic ``а``):
  a real mailbox can be spelt that way, so the address is kept, but flagged (`Checked.lookalike`): the store
  marks the recipients and suppressions rows and `bouncemilter suppressed` shows it. A component mixes scripts
  when its letters come from more than one script, except the combinations UTS #39 calls highly restrictive
  (Latin with Han and Hiragana/Katakana, with Han and Bopomofo, or with Han and Hangul).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import Classification, RecipientResult

LOCAL_MAX = 64  # octets, RFC 5321 4.5.3.1.1
ADDRESS_MAX = 254  # octets: the 256-octet path (RFC 5321 4.5.3.1.3) minus "<" and ">"
LABEL_MAX = 63
NOTES_MAX = 3  # rejected addresses named in the evidence; the rest are counted

# A regex character-class fragment of the characters that reject an address, for the extraction patterns: C0
# controls except the white space that separates words, DEL and C1, soft hyphen, Arabic letter mark, Mongolian
# vowel separator, zero-width space/joiners and LRM/RLM, bidi embeddings and overrides, word joiner and invisible
# operators, bidi isolates and deprecated format characters, BOM / zero-width no-break space, interlinear
# annotation, and the replacement character (bytes the declared charset could not decode). canonical() itself
# checks Unicode categories, which covers these and more.
INVISIBLE = (
    "\x00-\x08\x0e-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f"
    "\ufeff\ufff9-\ufffb\ufffd"
)
_REJECT_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Co", "Zs", "Zl", "Zp"})
_ASCII_DOMAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
# UTS #39 "highly restrictive": these script sets may mix in one identifier
_ALLOWED_MIXES = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_SCRIPT_ALIASES = {"CJK": "HAN", "KANGXI": "HAN", "IDEOGRAPHIC": "HAN", "FULLWIDTH": "COMMON", "HALFWIDTH": "COMMON"}


@dataclass(frozen=True, slots=True)
class Checked:
    address: str  # the canonical address; "" when rejected
    note: str = ""  # why it was rejected or flagged ("" when clean); printable ASCII, short
    lookalike: bool = False  # mixed-script look-alike: kept, but flagged


def show(value: str, limit: int = 80) -> str:
    """`value` for a note or a terminal: printable ASCII only (others as \\uXXXX), cut to `limit` characters."""
    text = "".join(ch if " " <= ch <= "~" and ch != "\\" else _escape(ch) for ch in value[:limit])
    return text + "..." if len(value) > limit else text


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch == "\\":
        return "\\\\"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def canonical(value: str) -> Checked:
    """The canonical form of one address, or a rejection with its reason (see the module docstring)."""
    if len(value) <= ADDRESS_MAX and _PLAIN.fullmatch(value) and "xn--" not in value:
        return Checked(value)  # canonical already: what _canonical gives it, without its ~20 calls
    return _canonical(value) if len(value) <= 4 * ADDRESS_MAX else _reject(value, "longer than 254 octets")


# A lower-case ASCII address that passes every check of _canonical unchanged (labels of 1-63 characters from
# _ASCII_DOMAIN_CHARS, a local part of at most LOCAL_MAX); with "xn--" it still needs the A-label check.
_PLAIN = re.compile(r"[a-z0-9_%+.\-]{1,64}@[a-z0-9\-]{1,63}(?:\.[a-z0-9\-]{1,63})*")


@lru_cache(maxsize=4096)  # a bounce names few addresses, but the same ones again in every part
def _canonical(value: str) -> Checked:
    value = value.strip(" \t\r\n")
    if not value:
        return Checked("")
    if not (value.isascii() and value.isprintable()):
        bad = next((ch for ch in value if ch != " " and unicodedata.category(ch) in _REJECT_CATEGORIES), None)
        if bad is not None:
            return _reject(value, f"invisible or control character {_escape(bad)}")
        if "\ufffd" in value:
            return _reject(value, "bytes the message's charset could not decode")
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        return _reject(value, "not local@domain")
    if " " in value and not (local.startswith('"') and local.endswith('"') and " " not in domain):
        return _reject(value, "space outside a quoted local part")
    local = local.lower()
    if len(local) > 2 and local[0] == '"' == local[-1] and _DOT_ATOM.fullmatch(local[1:-1]):
        local = local[1:-1]  # RFC 5321 4.1.2: "alice"@ is alice@; quotes only where a dot-atom cannot say it
    domain = domain.lower().rstrip(".")
    if domain.startswith("[") and domain.endswith("]"):
        ascii_domain = domain
    elif domain.isascii():
        ascii_domain = domain
        if not _ascii_domain_ok(domain):
            return _reject(value, "not a valid domain")
    else:
        try:
            import idna  # only for internationalised domains

            ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            return _reject(value, "not a valid internationalised domain")
    if len(local.encode("utf-8", "surrogatepass")) > LOCAL_MAX:
        return _reject(value, f"local part longer than {LOCAL_MAX} octets")
    address = f"{local}@{ascii_domain}"
    if len(address.encode("utf-8", "surrogatepass")) > ADDRESS_MAX:
        return _reject(value, f"longer than {ADDRESS_MAX} octets")
    if (value.isascii() and "xn--" not in ascii_domain) or not _mixed_script(local, ascii_domain):
        return Checked(address)
    return Checked(address, f"mixed-script look-alike: {show(value)}", lookalike=True)


_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")  # RFC 5322 3.2.3


def _reject(value: str, why: str) -> Checked:
    return Checked("", f"address rejected ({why}): {show(value)}")


def _ascii_domain_ok(domain: str) -> bool:
    if not domain or len(domain) > 253 or not set(domain) <= _ASCII_DOMAIN_CHARS:
        return False
    labels = domain.split(".")
    if not all(0 < len(label) <= LABEL_MAX for label in labels):
        return False
    # an A-label must decode (RFC 5890): "xn--zz" is no domain anyone can have, so no address to suppress
    return "xn--" not in domain or all(_u_label(label) for label in labels if label.startswith("xn--"))


def _u_label(label: str) -> str:
    """An A-label's Unicode form ("xn--bcher-kva" -> "bücher"); "" when it does not decode."""
    try:
        return label[4:].encode("ascii").decode("punycode")
    except (UnicodeError, ValueError):
        return ""


def _mixed_script(local: str, ascii_domain: str) -> bool:
    parts = [local]
    for label in ascii_domain.split("."):
        if label.startswith("xn--"):
            label = _u_label(label)
            if not label:
                continue
        parts.append(label)
    return any(_mixes(part) for part in parts if not part.isascii())


def _mixes(text: str) -> bool:
    scripts = {s for s in map(_script, text) if s != "COMMON"}
    return len(scripts) > 1 and not any(scripts <= allowed for allowed in _ALLOWED_MIXES)


@lru_cache(maxsize=2048)
def _script(ch: str) -> str:
    """The script of a letter from its Unicode name (LATIN, CYRILLIC, GREEK, HAN ...); COMMON for the rest.
    (unicodedata has no Script property; the name's first word is the script for every letter that matters.)"""
    if ch.isascii():
        return "LATIN" if ch.isalpha() else "COMMON"
    if not unicodedata.category(ch).startswith("L"):
        return "COMMON"
    word = unicodedata.name(ch, "COMMON").split(" ", 1)[0]
    return _SCRIPT_ALIASES.get(word, word)


def lookalike(address: str) -> bool:
    """Is this (canonical) address a mixed-script look-alike? (For the store's flag column.)"""
    return bool(address) and (not address.isascii() or "xn--" in address) and canonical(address).lookalike


def check_rows(rows: list[RecipientResult]) -> list[str]:
    """Canonicalise every row's recipient in place (a rejected one becomes ""); returns the notes."""
    notes = []
    for row in rows:
        if not row.recipient:
            continue
        checked = canonical(row.recipient)
        row.recipient = checked.address
        if checked.note:
            notes.append(checked.note)
        if row.original_recipient:  # the same check, silently: a rejected one leaves the final recipient alone
            original = canonical(row.original_recipient).address
            same = original.replace('"', "") == row.recipient.replace('"', "")  # "a..b"@x is a..b@x
            row.original_recipient = "" if same else original
    return notes


def check_result(result: Classification) -> Classification:
    """`check_rows` over a classification's recipients, the notes appended to its evidence."""
    notes = check_rows(result.recipients)
    if notes:
        more = f"; {len(notes) - NOTES_MAX} more" if len(notes) > NOTES_MAX else ""
        result.evidence = "; ".join([result.evidence, *notes[:NOTES_MAX]]).lstrip("; ") + more
    return result
