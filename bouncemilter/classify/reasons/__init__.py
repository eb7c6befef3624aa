"""Reasons: status code + reply code + the server's words + the SMTP stage + who answered -> reason.

- catalog/: one data table per reason (its enhanced status codes, reply-code hints, phrases; each
  phrase names the MTA or provider that writes it). The reason names are Sisimai's taxonomy.
- rhost/: one table per big receiving provider or filtering gateway (its documented codes).
- vendor.py: the fixed sentences MTAs compose themselves, chosen by the detector.
- engine.decide: the one function that weighs the evidence, in the order its docstring states.
- matcher.py: finds every catalog phrase in a diagnostic in one read.

Knowledge from Sisimai (https://libsisimai.org, BSD-2-Clause, Copyright (C) 2014-2022
azumakuniyuki): the reason names, the status code map, the phrase lists of Sisimai::Reason::*,
the provider tables of Sisimai::Rhost::* and the MTA message tables of Sisimai::Lhost::*. This is
an independent Python implementation.
"""

from __future__ import annotations

from . import vendor
from .catalog import HARD, NAMES, TABLES
from .engine import WEAK, Decision, decide
from .status import text_status

REASONS: tuple[str, ...] = NAMES
HARD_REASONS: frozenset[str] = HARD  # userunknown, hostunknown, hasmoved (notaccept: see is_hard)

# Wording that makes a code-less "does not accept mail" temporary (RFC 3463: class 4 is a
# "persistent transient failure").
_TEMPORARY = ("temporar", "persistent")


def effective_status(status: str, diagnostic: str) -> str:
    """The report's status, or the specific code the server wrote when the report says only x.0.0 or
    nothing (a DSN "Status: 5.0.0" over "550 5.1.1 User unknown" is a 5.1.1)."""
    status = status.strip()
    if status and not status.endswith(".0.0"):
        return status  # a specific code already
    return text_status(diagnostic.lower()) or status


def find_reason(status: str, reply_code: str, diagnostic: str, action: str = "", remote_mta: str = "") -> str:
    """The reason alone, from the four facts every report has (see engine.decide for the rest)."""
    return decide(status, reply_code, diagnostic, action=action, remote_mta=remote_mta).reason


def is_hard(reason: str, status: str = "", reply_code: str = "", diagnostic: str = "") -> bool:
    """Hard only when the address or its domain is dead: userunknown, hostunknown, hasmoved, and
    notaccept unless a 4xx code (or, with no code at all, temporary wording) says it may pass.
    Policy, spam, reputation, DMARC, rate limits, suspend and mailboxfull are never hard."""
    if reason in HARD_REASONS:
        return True
    if reason != "notaccept":
        return False
    status, reply_code = status.strip(), reply_code.strip()
    if status[:1] in ("4", "5"):
        return status[0] == "5"
    if reply_code[:1] in ("4", "5"):
        return reply_code[0] == "5"
    low = diagnostic.lower()
    return not any(word in low for word in _TEMPORARY)


__all__ = [
    "HARD_REASONS",
    "REASONS",
    "TABLES",
    "WEAK",
    "Decision",
    "decide",
    "effective_status",
    "find_reason",
    "is_hard",
    "vendor",
]  # fmt: skip
