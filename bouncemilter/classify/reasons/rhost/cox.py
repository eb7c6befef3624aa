"""Cox Communications (cox.net).

Cox's published error codes (www.cox.com/residential/support/email-error-codes.html): its replies
carry "AUP#CXBL" style tags; text answers for the rest.
"""

import re

from ._base import Provider, Rule


def _code_reason(code: str) -> str:
    if code.startswith(("IPBL", "RBL")):
        return "blocked"  # the sending IP is on a DNS block list (Spamhaus, Return Path, CSI, ivmSIP)
    if code.startswith("URLBL"):
        return "spamdetected"  # a URL in the body is on a URI block list
    return ""


_R = Rule
PROVIDER = Provider(
    name="cox",
    hosts=("cox.net",),
    domains=("cox.net",),
    code_rx=re.compile(r"aup#([0-9a-z]{2,12})"),
    codes={
        "cxbl": "blocked",  # the sending IP was blocked for spam-like behaviour
        "cdrbl": "blocked",  # temporarily blocked for spam-like behaviour
        "cxthrt": "securityerror",  # sending limited: suspicious account activity
        "cxmj": "securityerror",  # sending blocked: suspicious activity on the primary account
        "cxdns": "requireptr",  # the connecting IP's DNS (reverse lookup)
        "cxsndr": "rejected",  # a problem with the sender's domain
        "cxsmtp": "rejected",  # the sender could not be verified as legitimate
        "cxcnct": "toomanyconn",  # concurrent SMTP connections per IP
        "cxmxrt": "speeding",  # maximum number of messages sent exceeded
    },
    code_reason=lambda code: _code_reason(code.upper()),
    rules=(
        _R("requireptr", "rejected - no rdns"),
        _R("blocked", "cox too many bad commands from"),
        _R("blocked", "dns check failure - try again later"),
        _R("blocked", "too many invalid recipients"),
        _R("notaccept", "esmtp server temporarily not available"),
        _R("policyviolation", "esmtp no data before greeting"),
        _R("policyviolation", "attachment extension is forbidden"),
        _R("rejected", "sender rejected"),
        _R("toomanyconn", "too many sessions from"),
        _R("toomanyconn", "requested action aborted: try again later"),
        _R("toomanyconn", "message threshold exceeded"),
        _R("userunknown", "recipient rejected", source="the recipient is not a valid Cox account"),
    ),
)
