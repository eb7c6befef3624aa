"""Bounce formats of mail providers and sending services.

Each detector checks a header or two first (From, Subject, X-headers the provider always
writes) and returns None at once for anything else; the parsing lives in providers_*.py.
"""

from __future__ import annotations

from collections.abc import Callable

from ..mime import Message
from .base import Detection
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
