"""Charter / Spectrum (charter.net, spectrum.net, Road Runner rr.com, twc.com, brighthouse.com).

Spectrum's published error codes (www.spectrum.net/support/internet/understanding-email-error-codes):
replies carry "AUP#1000" style numbers, grouped in documented ranges.
"""

import re

from ._base import Provider

_CODES = {
    "1000": "blocked",  # the IP was blocked for suspicious activity
    "1010": "rejected",  # the sending account was blocked for suspicious activity
    "1090": "systemerror",  # the message cannot be processed now
    "1260": "networkerror",  # IPv6 is not processed
    "1500": "rejected",  # sending as another address than the one signed in
    "1520": "rejected",  # sending as a domain Spectrum does not host
    "1530": "mesgtoobig",  # larger than 20 MB
    "1540": "toomanyconn",  # too many messages in one session
    "1550": "toomanyconn",  # too many recipients in one message
    "1560": "policyviolation",  # too many invalid recipients
}
_RANGES = (
    (1020, 1080, "rejected"),  # limited sending after suspicious activity
    (1100, 1150, "blocked"),  # the connecting IP has a DNS problem
    (1160, 1190, "policyviolation"),  # against the domain's security policies
    (1200, 1210, "blocked"),  # flagged by Cloudmark CSI
    (1220, 1250, "blocked"),  # on the Spamhaus block list
    (1300, 1340, "toomanyconn"),  # concurrent connection limits
    (1350, 1490, "toomanyconn"),  # message, recipient and rate limits
)


def _code_reason(code: str) -> str:
    number = int(code)
    return next((reason for low, high, reason in _RANGES if low <= number <= high), "")


PROVIDER = Provider(
    name="spectrum",
    hosts=("charter.net", "spectrum.net", "rr.com", "twc.com", "brighthouse.com", "chartermi.net"),
    domains=("charter.net", "spectrum.net", "rr.com", "twc.com", "brighthouse.com", "roadrunner.com"),
    code_rx=re.compile(r"aup#[-a-z]*(\d{4})"),
    codes=_CODES,
    code_reason=_code_reason,
)
