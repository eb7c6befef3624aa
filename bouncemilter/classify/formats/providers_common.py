"""Small helpers shared by the provider detectors (providers_*.py)."""

from __future__ import annotations

import re

from ..mime import Message
from ..text import clean_address, one_line
from .base import MAX_RECIPIENTS, cut, dsn_rows, make_row  # noqa: F401 - shared by the provider modules

# A reply code at the start of a diagnostic, also in the "550:" and "550-5.1.1" spellings.
_LEADING_CODE = re.compile(r"^\s*([245][0-5]\d)(?:[\s:\-]|$)")
_HOST_BRACKET = re.compile(r"^\s*host\s+([\w.\-]+)\s*\[[0-9a-fA-F.:]+\]\s*:?\s*", re.I)


def header_lower(msg: Message, name: str) -> str:
    """A header's first value, lower-cased; From and Subject once per message (every provider gate asks)."""
    if name != "from" and name != "subject":
        return msg.headers.get(name).lower()
    value = msg.memo.get(name)
    if value is None:
        value = msg.memo[name] = msg.headers.get(name).lower()
    return value  # type: ignore[return-value]


def strip_host_prefix(diagnostic: str) -> tuple[str, str]:
    """'host mx.example.com [192.0.2.1]: 550 ...' -> ('550 ...', 'mx.example.com')."""
    m = _HOST_BRACKET.match(diagnostic)
    if not m:
        return diagnostic, ""
    return diagnostic[m.end() :], m.group(1)


EXIM_FAILED = re.compile(r"following address(?:\(es\))? failed:|could not be delivered to one or more", re.I)
_EXIM_ADDR_LINE = re.compile(r"^ {1,4}(\S+@\S+?)(?:\s*:)?(?:\s+(.*))?$")


def exim_blocks(text: str) -> list[tuple[str, str, str]]:
    """Exim-style failure list: '  addr' then deeper-indented lines. -> [(addr, diagnostic, host)]."""
    m = EXIM_FAILED.search(text)
    if not m:
        return []
    out: list[tuple[str, str, str]] = []
    current: list[str] | None = None
    addr = ""
    indent = 0
    for line in text[m.end() :].split("\n")[:400]:
        if not line.strip():
            if current is not None and current:
                out.append((addr, *_exim_diag(current)))
                current = None
            continue
        lead = len(line) - len(line.lstrip(" "))
        am = _EXIM_ADDR_LINE.match(line)
        if am and "@" in am.group(1) and (current is None or lead <= indent):
            if current is not None:
                out.append((addr, *_exim_diag(current)))
            addr, indent = am.group(1), lead
            current = [am.group(2)] if am.group(2) else []
            continue
        if current is not None and lead > indent:
            current.append(line.strip())
            continue
        if current is not None:
            out.append((addr, *_exim_diag(current)))
            current = None
        if out and lead == 0:
            break
        if len(out) >= MAX_RECIPIENTS:
            break
    if current is not None:
        out.append((addr, *_exim_diag(current)))
    return [(clean_address(a), d, h) for a, d, h in out if clean_address(a)]


_EXIM_SMTP_PREFIX = re.compile(
    r"^SMTP error from remote mail server after [A-Za-z ]{1,20}(?::\s*<[^<>]*>)?[^:]{0,80}:\s*"
)


def _exim_diag(lines: list[str]) -> tuple[str, str]:
    text = one_line(" ".join(lines))
    text = _EXIM_SMTP_PREFIX.sub("", text)
    text, host = strip_host_prefix(text)
    return text.strip(), host
