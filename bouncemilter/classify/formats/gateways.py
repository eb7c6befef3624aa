"""Bounce formats of enterprise servers, mail gateways / filters and Japanese mobile carriers.

Each detector gates on a header or two (From, Subject, X-Mailer, Received) before reading the
body, so mail in another format costs a few dictionary look-ups.
"""

from __future__ import annotations

from . import gateways_filters, gateways_jp, gateways_ms
from .gate import Gate

DETECTORS: list = [*gateways_ms.DETECTORS, *gateways_jp.DETECTORS, *gateways_filters.DETECTORS]

# What each detector's first check implies (see gate.py): a header, a sender, a subject or a Received line.
GATES: dict[str, Gate] = {
    "exchange2003": Gate(
        headers=("x-ms-embedded-report", "x-mailer", "x-mimeole"), received_has=(" with internet mail service (",)
    ),
    "exchange2007": Gate(headers=("content-language",)),
    "domino": Gate(subject_starts=("delivery failure:", "delivery_failure:")),
    "notes": Gate(subject_starts=("undeliverable message",)),
    "ezweb": Gate(
        from_has=("postmaster@ezweb.ne.jp", "postmaster@au.com"),
        subject_starts=("mail system error - returned mail",),
        message_id_has=(".ezweb.ne.jp>", ".au.com>"),
    ),
    "kddi": Gate(from_has=("dion.ne.jp",), headers=("reply-to",), received_has=("ezweb.ne.jp (", ".au.com (")),
    "mfilter": Gate(headers=("x-mailer",)),
    "imailserver": Gate(subject_starts=("undeliverable mail",), headers=("x-mailer",)),
    "mxlogic": Gate(
        from_has=("mxlogic.net",),
        subject_starts=("mail delivery failed", "warning: message ", "delivery status notification"),
        headers=("x-mx-bounce", "x-mxl-hash", "x-mxl-notehash"),
    ),
    "interscanmss": Gate(  # its sender, else one of its subjects (gateways_filters.interscan_subject)
        from_has=('"interscan ',),
        subject_starts=tuple(s.lower() for s in gateways_filters.INTERSCAN_SUBJECTS),
        subject_has=("=?",),  # an encoded subject is decoded first
    ),
    "activehunter": Gate(headers=("x-ahmailid",)),
    "fml": Gate(headers=("x-mlserver",)),
    "mailfoundry": Gate(subject_starts=("message delivery has failed",)),
    "mailmarshal": Gate(subject_starts=('undeliverable mail: "',)),
    "messagingserver": Gate(subject_starts=("delivery notification: ",), content_type_has=("boundary_(id_",)),
    "messagelabs": Gate(from_has=("messagelabs.com",), received_has=(".messagelabs.com ",)),
    "amavis": Gate(from_has=('"content-filter at ',)),
    "mcafee": Gate(headers=("x-nai-header",)),
    "surfcontrol": Gate(headers=("x-mailer",)),
    "bigfoot": Gate(from_has=("@bigfoot.com>",), received_has=(".bigfoot.com ",)),
}
