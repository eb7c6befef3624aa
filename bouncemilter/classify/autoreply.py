"""RFC 3834 auto-replies and the common non-standard out-of-office markers."""

from __future__ import annotations

import re

from .mime import Message

# Subject prefixes that vacation responders use, in the languages our users write in.
# Subject prefixes that vacation responders write, in the languages our users write in. Words
# that people also use in ordinary subjects ("vacation", "absence") are not enough on their own.
_SUBJECT = re.compile(
    r"^\s*(?:"
    r"auto(?:matic|mated)?[ -]?(?:reply|response|answer)|autoreply|auto-?respon[sd]e?r?\b|"
    r"out of (?:the )?office|ooo\b|"
    r"abwesenheitsnotiz|automatische antwort|"
    r"r[ée]ponse automatique|absent du bureau|message d'absence|"
    r"respuesta autom[áa]tica|fuera de (?:la )?oficina|"
    r"risposta automatica|fuori sede|"
    r"automatisch antwoord|afwezigheidsbericht|"
    r"resposta autom[áa]tica|fora do escrit[óo]rio|aus[êe]ncia tempor[áa]ria|"
    r"不在(?:通知|のお知らせ|連絡)|自動応答|自動返信|"
    r"autosvar|automaattinen vastaus|automatyczna odpowied[źz]|automatick[áa] odpov[ěe]d|"
    r"автоответ|自动回复"
    r")",
    re.IGNORECASE,
)
_PRECEDENCE_AUTO = ("auto_reply", "auto-reply")


def markers(msg: Message) -> list[str]:
    """Every auto-reply marker found in the headers, as 'Header: value' strings."""
    h = msg.headers
    found: list[str] = []
    auto = h.get("auto-submitted").strip().lower()
    if auto.startswith("auto-replied") or auto.startswith("auto-notified") or auto.startswith("auto-generated"):
        found.append(f"Auto-Submitted: {auto}")
    for name in ("x-autoreply", "x-autorespond", "x-autoresponder", "x-auto-reply", "x-mail-autoreply"):
        if name in h:
            found.append(f"{_title(name)}: {h.get(name).strip()}")
    if "x-auto-response-suppress" in h and _SUBJECT.search(_subject(msg)):
        found.append(f"X-Auto-Response-Suppress: {h.get('x-auto-response-suppress').strip()}")
    if h.get("x-apple-action").strip().upper().startswith("VACATION"):
        found.append("X-Apple-Action: VACATION")
    precedence = h.get("precedence").strip().lower()
    if precedence in _PRECEDENCE_AUTO:
        found.append(f"Precedence: {precedence}")
    if _SUBJECT.search(_subject(msg)):
        found.append(f"Subject: {_subject(msg)[:80]}")
    return found


def _subject(msg: Message) -> str:
    subject = msg.headers.decoded("subject")
    # Ordinary replies start with "Re:"; a vacation subject follows the responder's own word.
    return re.sub(r"^\s*(?:re|aw|sv|fw|fwd|wg)\s*:\s*", "", subject, flags=re.I)


def _title(name: str) -> str:
    return "-".join(p.capitalize() for p in name.split("-"))


def is_auto_reply(found: list[str]) -> bool:
    """Markers that make a message an auto-reply (bounces are ruled out before this runs)."""
    strong = [m for m in found if not m.startswith("Auto-Submitted: auto-generated")]
    return bool(strong)
