"""Reason taxonomy and mapping: (status, reply code, diagnostic text) -> reason, hard.

Placeholder mapping from the status code alone; replaced by the full text-aware mapping.
"""

from __future__ import annotations

REASONS: tuple[str, ...] = (
    "userunknown", "hostunknown", "mailboxfull", "filtered", "rejected", "blocked", "spamdetected",
    "policyviolation", "expired", "suspend", "norelaying", "systemerror", "networkerror", "toomanyconn",
    "mesgtoobig", "exceedlimit", "securityerror", "virusdetected", "authfailure", "badreputation",
    "requireptr", "notcompliantrfc", "syntaxerror", "hasmoved", "notaccept", "systemfull", "speeding",
    "contenterror", "mailererror", "onhold", "undefined", "vacation", "feedback", "delivered",
)
HARD_REASONS = frozenset({"userunknown", "hostunknown", "hasmoved"})


def find_reason(status: str, reply_code: str, diagnostic: str, action: str = "", remote_mta: str = "") -> str:
    if status.startswith("2.") or action in ("delivered", "relayed", "expanded"):
        return "delivered"
    if status in ("5.1.1", "4.1.1"):
        return "userunknown"
    if status.startswith(("5.1.2", "4.1.2")):
        return "hostunknown"
    if status.endswith(".2.2"):
        return "mailboxfull"
    if action == "delayed":
        return "expired"
    return "undefined"


def is_hard(reason: str, status: str = "", reply_code: str = "") -> bool:
    if reason in HARD_REASONS:
        return True
    if reason == "notaccept":
        return status.startswith("5") or reply_code.startswith("5")
    return False
