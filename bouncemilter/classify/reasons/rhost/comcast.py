"""Comcast (Xfinity: mx1/mx2.comcast.net for comcast.net).

Comcast's published SMTP error codes (postmaster.comcast.net/smtp-error-codes.php): its replies
carry a code such as "BL000001" (block lists), "RL000001" (rate limits) or "DN000000" (DNS).
"""

import re

from ._base import Provider, Rule


def _code_reason(code: str) -> str:
    if code.startswith("BL"):
        return "blocked"  # the sending IP is on Comcast's or a third-party block list
    if code.startswith("RL"):
        return "toomanyconn"  # session, connection or message-per-session limits
    if code.startswith("DN"):
        return "requireptr"  # reverse DNS of the sending IP missing or generic
    return ""


_R = Rule
PROVIDER = Provider(
    name="comcast",
    hosts=("comcast.net",),
    domains=("comcast.net",),
    code_rx=re.compile(r"\b((?:bl|rl|dn)\d{6})\b"),
    code_reason=lambda code: _code_reason(code.upper()),
    rules=(
        _R("userunknown", "not our customer", source="550 5.1.1 <x@comcast.net> Not our Customer"),
        _R("mailboxfull", "mailbox is full", source="552 5.2.2"),
        _R("suspend", "account is inactive", source="550 5.2.1"),
    ),
)
