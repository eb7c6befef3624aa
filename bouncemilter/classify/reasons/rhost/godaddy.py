"""GoDaddy (smtp.secureserver.net, mailstore1.secureserver.net).

GoDaddy's published list of its "IBnnn" codes (godaddy.com/help, "Email bounce error codes").
"""

import re

from ._base import Provider, Rule

_R = Rule
PROVIDER = Provider(
    name="godaddy",
    hosts=("secureserver.net",),
    code_rx=re.compile(r"\b(ib\d{3})\b"),
    codes={
        "ib007": "toomanyconn",  # too many sessions from this IP
        "ib101": "expired",  # server temporarily unavailable
        "ib103": "blocked",  # poor reputation on Cloudmark CSI
        "ib104": "blocked",  # on the Spamhaus SBL
        "ib105": "blocked",  # on the Exploits Block List
        "ib106": "blocked",  # on the Policy Block List
        "ib108": "requireptr",  # reverse DNS for this IP failed
        "ib110": "blocked",  # temporarily blocked: spam content
        "ib111": "blocked",  # blocked for the day: spam content
        "ib112": "blocked",  # temporarily blocked: too many invalid recipients
        "ib113": "blocked",  # blocked for the day: too many invalid recipients
        "ib212": "spamdetected",  # content judged to be spam
        "ib401": "securityerror",  # authentication not allowed on IBSMTP servers
        "ib501": "rejected",  # blank From: address
        "ib502": "rejected",  # an IP address as the From: address
        "ib504": "speeding",  # too many messages this hour
        "ib506": "rejected",  # From: domain is invalid
        "ib508": "authfailure",  # invalid SPF record of the sending domain
        "ib510": "toomanyconn",  # too many messages per session
        "ib607": "speeding",  # too many recipients this hour
        "ib705": "virusdetected",  # virus infected message
    },
    rules=(
        _R("blocked", "www.spamhaus.org/query/bl?ip="),
        _R("blocked", "554 rbl reject."),
        _R("expired", "delivery timeout"),
        _R("expired", "wasn't able to establish an smtp connection"),
        _R("suspend", "account disabled"),
        _R("mailboxfull", "account storage limit"),
        _R("userunknown", "account does not exist"),
        _R("userunknown", "recipient not found."),
    ),
)
