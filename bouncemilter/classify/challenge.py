"""Automated mail that is neither a bounce nor a complaint, though it often looks like one.

- Challenge-response and sender-verification requests (Boxbe, Spam Arrest, TMDA, Mailblocks,
  ChoiceMail, Bluebottle, Sendio and home-grown ones): the recipient's filter holds our message
  until someone proves to be human or confirms the sender. The address is alive.
- "Whitelist me" replies: an automated answer asking us to add an address to a whitelist or an
  address book before mail gets through.
- Read receipts (RFC 8098 message disposition notifications, and Outlook's plain-text "Read:"
  receipts): the message was delivered and opened.

Each gives the marker that names what it is, for `Classification.autoreply_markers`.
"""

from __future__ import annotations

import re

from .mime import Message, Part

# Services whose whole job is challenge-response; their mail comes from their own domains.
_CR_DOMAINS = ("boxbe.com", "spamarrest.com", "mailblocks.com", "bluebottle.com", "sendio.com", "choicemail.com")
_CR_NAMES = re.compile(r"\b(?:boxbe|spam ?arrest|mailblocks|choicemail|bluebottle|sendio|tmda)\b", re.I)
# Wording of a challenge, a verification request or a whitelist request (subject or the first lines).
_CR_WORDING = re.compile(
    r"(?:confirm|verify|prove)(?: that)? you(?:'re| are) (?:a )?(?:human|real person|not a (?:robot|machine|spammer))"
    r"|(?:please )?(?:confirm|verify) (?:your|this) (?:message|e-?mail|request|address|identity)(?: to| before| so)?"
    r"|(?:sender|e-?mail|address) (?:verification|confirmation) (?:request|required|needed)"
    r"|challenge[- /]response"
    r"|(?:awaiting|pending|requires?|needs?) (?:your )?(?:verification|confirmation|approval)"
    r"|(?:add|put) (?:me|us|my (?:e-?mail )?address|this (?:e-?mail )?address) (?:to|on|in) your "
    r"(?:white ?list|safe[- ]senders?(?: list)?|address book|contacts|approved senders)"
    r"|(?:white ?list|safe[- ]senders? list) (?:me|this address|my address)"
    r"|(?:spam|junk) (?:filter|protection) (?:is )?holding your (?:message|e-?mail)",
    re.I,
)
# Words every challenge wording above contains one of: a cheap test before the regex.
_CR_KEYWORDS = ("confirm", "verif", "prove", "challenge", "approv", "white", "safe", "address book", "contacts",
                "holding")  # fmt: skip
_TMDA_AGENT = re.compile(r"^\s*TMDA/", re.I)
_AUTOMATED_PRECEDENCE = ("bulk", "junk", "list", "auto_reply", "auto-reply")

_MDN_TYPES = ("message/disposition-notification", "message/global-disposition-notification")


def mdn_part(msg: Message) -> Part | None:
    """The report part of an RFC 8098 message disposition notification (None when `msg` is not one)."""
    if "disposition-notification" not in msg.headers.get("content-type"):
        return None
    return next((p for p in msg.parts if p.ctype in _MDN_TYPES and p.depth == 0), None)


_MDN_FIELD = re.compile(r"^Disposition:\s*(.+)$", re.I | re.M)
# Outlook and Exchange plain-text read receipts: "Read: <subject>" / "Your message ... was read on ...".
_READ_SUBJECT = re.compile(r"^\s*(?:read|gelesen|lu|le[íi]do|letto|gelezen|lido|odczytana|прочитано)\s*:", re.I)
_READ_BODY = re.compile(
    r"\bwas read on\b|\bwurde am .{1,40} gelesen\b|\ba été lu le\b|\bse ha leído\b|\bè stato letto\b|\bis gelezen op\b",
    re.I,
)


def read_receipt(msg: Message) -> str:
    """The marker of a read receipt ("" when `msg` is not one)."""
    if "disposition-notification" in msg.headers.get("content-type"):  # RFC 8098: a multipart/report
        part = mdn_part(msg)
        disposition = _MDN_FIELD.search(part.text[:4000]) if part is not None else None
        what = disposition.group(1).strip()[:80] if disposition else "disposition-notification"
        return f"read receipt (MDN): {what}"
    raw = msg.headers.get("subject")
    if ":" not in raw[:40]:
        return ""  # every read-receipt subject starts with "Read:" (or its translation)
    subject = msg.headers.decoded("subject") if "=?" in raw else raw
    if _READ_SUBJECT.match(subject) and _READ_BODY.search(msg.body_text()[:3000]):
        return "read receipt: " + subject.strip()[:60]
    return ""


def challenge(msg: Message) -> str:
    """The marker of a challenge-response, sender-verification or whitelist request ("" when not one)."""
    h = msg.headers
    sender = h.get("from").lower()
    subject = h.decoded("subject")
    service = next((d for d in _CR_DOMAINS if f"@{d}" in sender or f".{d}" in sender), "")
    if service:
        return f"challenge-response: {service}"
    if _TMDA_AGENT.match(h.get("x-delivery-agent")):
        return "challenge-response: TMDA"
    named = _CR_NAMES.search(subject)
    wording = _wording(subject) or _wording(_opening(msg))
    if named and wording:
        return f"challenge-response: {named.group(0)}"
    if wording and _automated(msg):
        return f"challenge-response: {wording.group(0)[:60]}"
    return ""


def _wording(text: str) -> re.Match[str] | None:
    low = text.lower()
    return _CR_WORDING.search(text) if any(k in low for k in _CR_KEYWORDS) else None


def _opening(msg: Message) -> str:
    """The first few hundred characters of the text: where a challenge states what it wants."""
    return " ".join(msg.body_text()[:1500].split())


def _automated(msg: Message) -> bool:
    """Headers only automated mail carries (a person asking to be whitelisted is ordinary mail)."""
    h = msg.headers
    auto = h.get("auto-submitted").strip().lower()
    if auto and not auto.startswith("no"):
        return True
    if h.get("precedence").strip().lower() in _AUTOMATED_PRECEDENCE:
        return True
    if h.get("return-path").strip() == "<>" or "x-auto-response-suppress" in h or "x-autoreply" in h:
        return True
    value = h.get("from").lower()
    return "mailer-daemon" in value or "no-reply" in value or "noreply" in value or "postmaster" in value
