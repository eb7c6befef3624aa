"""Bounce formats of mail providers and sending services.

Each detector checks a header or two first (From, Subject, X-headers the provider always
writes) and returns None at once for anything else; the parsing lives in providers_*.py.
"""

from __future__ import annotations

from collections.abc import Callable

from ..mime import Message
from .base import Detection
from .gate import Gate
from .providers_amazon import detect_json as amazonses_json
from .providers_amazon import detect_receiving as amazonses_receiving
from .providers_amazon import detect_text as amazonses_text
from .providers_google import detect as google
from .providers_mail import (
    detect_biglobe,
    detect_facebook,
    detect_mailru,
    detect_office365,
    detect_united_internet,
    detect_verizon,
    detect_yahoo,
    detect_zoho,
)

DETECTORS: list[tuple[str, Callable[[Message], Detection | None]]] = [
    ("amazonses-json", amazonses_json),
    ("amazonses-text", amazonses_text),
    ("amazonses-receiving", amazonses_receiving),
    ("google", google),
    ("yahoo", detect_yahoo),
    ("mailru", detect_mailru),
    ("gmx", detect_united_internet),
    ("zoho", detect_zoho),
    ("verizon", detect_verizon),
    ("biglobe", detect_biglobe),
    ("facebook", detect_facebook),
    ("office365", detect_office365),
]

# What each detector's first check implies (see gate.py): the sender or header it gates on.
GATES: dict[str, Gate] = {
    "amazonses-json": Gate(from_has=("sns.amazonaws.com",), headers=("x-amz-sns-message-id",)),
    "amazonses-text": Gate(from_has=("amazonses.com",), headers=("x-ses-outgoing", "x-aws-outgoing")),
    "amazonses-receiving": Gate(headers=("x-ses-outgoing",)),
    "google": Gate(from_has=("mailer-daemon@google",)),  # @googlemail.com, @google.com
    "yahoo": Gate(from_has=("yahoo",), headers=("x-ymailisg",)),  # X-YMailISG, or a yahoo sender
    "mailru": Gate(from_has=("mail.ru",)),
    "gmx": Gate(subject_has=("mail delivery failed",)),
    "zoho": Gate(from_has=("zoho.com",), headers=("x-zohomail",)),
    "verizon": Gate(from_has=("vtext.com", "vzwpix.com")),
    "biglobe": Gate(from_has=(".ne.jp",)),
    "facebook": Gate(from_has=("facebook.com",)),
    "office365": Gate(subject_starts=("undeliverable",)),
}
