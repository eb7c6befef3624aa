"""Small text helpers shared by the detectors: addresses, status codes, diagnostics."""

from __future__ import annotations

import re

from .address import INVISIBLE

# An addr-spec good enough for bounces: local@domain with a dot in the domain (or a literal). Invisible and
# control characters (address.INVISIBLE) count as part of an address, so that one inside it never splits it
# (vic<U+200B>tim@... must not yield tim@...): address.canonical() then rejects the whole token.
_X = INVISIBLE
ADDRESS = re.compile(
    rf"(?<![\w.+\-=/{_X}])([\w.!#$%&'*+/=?^`{{|}}~\-{_X}]{{1,128}}@(?:[\w\-{_X}]+\.)+[a-zA-Z{_X}][\w\-{_X}]*|"
    rf"[\w.!#$%&'*+/=?^`{{|}}~\-{_X}]{{1,128}}@\[[0-9.:a-fA-F]+\])",
)
ANGLE_ADDRESS = re.compile(r"<([^<>\s@]+@[^<>\s@]+)>")
# A bare ASCII address that ADDRESS matches whole and that nothing in clean_address strips: a local part of at
# most 128 characters that does not start with a dot, a domain of labels whose last starts with a letter.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_%+\-][A-Za-z0-9._%+\-]{0,127}@(?:[A-Za-z0-9\-]+\.)+[A-Za-z][A-Za-z0-9\-]*")
STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_STATUS_ONLY = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
REPLY_CODE = re.compile(r"(?<![\d.\-])([245][0-5]\d)(?=[ \-]|$)")


def one_line(text: str, limit: int = 500) -> str:
    """Collapse white space; cut to `limit` characters."""
    if len(text) > limit * 8:  # no need to fold what is cut anyway
        text = text[: limit * 8]
    return " ".join(text.split())[:limit]


def clean_address(value: str) -> str:
    """'rfc822; <Alice@Example.COM>' -> 'alice@example.com' ("" when there is no address)."""
    value = value.strip()
    if ";" in value:
        addr_type, _, rest = value.partition(";")
        if "@" not in addr_type:
            value = rest.strip()
    if _PLAIN_ADDRESS.fullmatch(value):
        return value.lower()  # what the steps below give for a bare ASCII address, in one regex call
    m = ANGLE_ADDRESS.search(value)
    if m:
        value = m.group(1)
    value = value.strip()
    # '"a..b"@example.org': the opening quote belongs to a quoted local part, only the rest is wrapping
    value = value.rstrip("<>\"'()[],;:.") if value.startswith('"') and '"@' in value else value.strip("<>\"'()[],;:.")
    value = value.strip()
    if value.lower().startswith("mailto:"):
        value = value[7:]
    m = ADDRESS.search(value)
    if m:
        return m.group(1).strip(".").lower()
    return value.lower() if "@" in value and " " not in value else ""


def find_addresses(text: str) -> list[str]:
    seen: list[str] = []
    for m in ADDRESS.finditer(text):
        addr = m.group(1).strip(".").lower()
        if addr not in seen:
            seen.append(addr)
    return seen


def find_status(text: str) -> str:
    """The first enhanced status code in `text` ("" when none)."""
    if _STATUS_ONLY.fullmatch(text):
        return text  # a Status field's value: what the search below returns, in one call
    m = STATUS.search(text)
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}" if m else ""


def find_reply_code(text: str) -> str:
    """The first SMTP reply code (2xx/4xx/5xx) in `text` ("" when none)."""
    m = REPLY_CODE.search(text)
    return m.group(1) if m else ""


def strip_diagnostic_type(value: str) -> str:
    """'smtp; 550 5.1.1 No such user' -> '550 5.1.1 No such user'."""
    head, sep, rest = value.partition(";")
    if sep and len(head) <= 12 and " " not in head.strip():
        return rest.strip()
    return value.strip()
