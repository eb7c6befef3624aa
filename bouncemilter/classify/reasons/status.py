"""Enhanced status codes and SMTP reply codes -> reasons (the tables live in catalog/)."""

from __future__ import annotations

import re

from .catalog import PSEUDO, STATUS

STATUS_RX = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
# A status in a server's own words: "550 5.1.1 ...", "#5.1.0", "(#5.7.1)". A subject other than 0
# only: a "5.0.0" in the text says nothing a DSN's 5.0.0 does not.
_TEXT_STATUS = re.compile(r"[45]\.[1-7]\.\d{1,3}")


def status_reason(status: str) -> str:
    """The reason an enhanced status code names ("" for generic codes such as 5.0.0 or 4.4.0)."""
    reason = STATUS.get(status)
    if reason:
        return reason
    if status[1:5] == ".0.9":  # Sisimai's pseudo codes x.0.9NN, which some upstream tools write
        return PSEUDO.get(status[4:], "")
    return ""


def text_status(text: str) -> str:
    """A specific status code written in the server's reply ("" when there is none)."""
    text = text[:400]
    for m in _TEXT_STATUS.finditer(text):
        start, end = m.span()
        if start and (text[start - 1].isdigit() or text[start - 1] == "."):
            continue  # part of a longer number ("15.5.1.1", an IP address)
        if end < len(text) and (text[end].isdigit() or (text[end] == "." and text[end + 1 : end + 2].isdigit())):
            continue
        return m.group(0)
    return ""


def is_pseudo(status: str) -> bool:
    return status[1:5] == ".0.9"
