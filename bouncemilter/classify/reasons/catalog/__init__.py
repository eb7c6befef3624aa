"""One data table per reason (catalog/<reason>.py): its status codes, reply-code hints and phrases.

The reason names are Sisimai's taxonomy. Adding a wording is one line in the reason's module (and
its fixture in tests/test_reason_tables.py).
"""

from __future__ import annotations

from importlib import import_module

from ._base import ReasonTable

# Every reason, in the order people read them (README, `bouncemilter classify --help`).
NAMES: tuple[str, ...] = (
    "userunknown", "hostunknown", "mailboxfull", "filtered", "rejected", "blocked", "spamdetected",
    "policyviolation", "expired", "suspend", "norelaying", "systemerror", "networkerror", "toomanyconn",
    "mesgtoobig", "exceedlimit", "securityerror", "virusdetected", "authfailure", "badreputation", "requireptr",
    "notcompliantrfc", "syntaxerror", "hasmoved", "notaccept", "systemfull", "speeding", "contenterror",
    "mailererror", "onhold", "undefined", "vacation", "feedback", "delivered",
)  # fmt: skip

TABLES: dict[str, ReasonTable] = {name: import_module(f"{__name__}.{name}").TABLE for name in NAMES}


def _status_map() -> dict[str, str]:
    out: dict[str, str] = {}
    for table in TABLES.values():
        for code in table.status:
            if code in out:
                raise ValueError(f"status {code} is in both {out[code]} and {table.name}")
            out[code] = table.name
    return out


def _pseudo_map() -> dict[str, str]:
    out: dict[str, str] = {}
    for table in TABLES.values():
        for code in table.pseudo:
            out[code] = table.name
    return out


STATUS: dict[str, str] = _status_map()  # "5.1.1" -> "userunknown"
PSEUDO: dict[str, str] = _pseudo_map()  # "911" (for x.0.911) -> "userunknown"
HARD: frozenset[str] = frozenset(t.name for t in TABLES.values() if t.hard)

__all__ = ["HARD", "NAMES", "PSEUDO", "STATUS", "TABLES", "ReasonTable"]
