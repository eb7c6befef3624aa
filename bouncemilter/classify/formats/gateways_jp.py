"""Japanese carriers and gateways: au/EZweb, KDDI au one net, m-FILTER."""

from __future__ import annotations

import re

from ..mime import Message
from ..model import RecipientResult
from ..reasons import vendor
from ..text import find_reply_code, find_status
from .base import Detection
from .gateways_common import fill_from_dsn, make_row, received_has, set_stage

# --- au by KDDI (EZweb) -----------------------------------------------------------------------------------

_EZWEB_START = re.compile(r"^(?:The user\(s\) |Your message |Each of the following|<[^\s<>@]+@[^\s<>]+>)")
_EZWEB_RCPT = re.compile(r"^(?:<([^\s<>@]+@[^\s<>]+)>:?(.*)|\s+Recipient: <([^\s<>@]+@[^\s<>]+)>)")
_EZWEB_DOMAINS = ("@ezweb.ne.jp", "@au.com")


def _ezweb_match(msg: Message) -> bool:
    h = msg.headers
    sender = h.get("from")
    score = 0
    if "Postmaster@ezweb.ne.jp" in sender or "Postmaster@au.com" in sender:
        score += 1
    if h.get("subject").strip() == "Mail System Error - Returned Mail":
        score += 1
    mid = h.get("message-id").strip()
    if mid.endswith((".ezweb.ne.jp>", ".au.com>")):
        score += 1
    if score != 1:
        return score >= 2  # the Received look-up below can add one point only
    return received_has(msg, "ezweb.ne.jp (EZweb Mail) with", ".au.com (")


def detect_ezweb(msg: Message) -> Detection | None:
    if not _ezweb_match(msg):
        return None
    text = "\n".join(p.text for p in msg.text_parts() if p.ctype == "text/plain") or msg.body_text()
    rows: list[RecipientResult] = []
    commands: list[str] = []
    messages: list[list[str]] = []
    started = False
    for line in text.split("\n", 400)[:400]:
        if not started:
            started = bool(_EZWEB_START.match(line))
            if not started:
                continue
        if not line.strip():
            continue
        m = _EZWEB_RCPT.match(line)
        if m:
            addr = m.group(1) or m.group(3)
            rows.append(make_row(addr, (m.group(2) or "").strip()))
            commands.append("")
            messages.append([])
            continue
        if line.startswith(("Received:", "From:", "To:", "Subject:", "Message-Id:", "Date:")) and rows:
            break  # the copy of the original message that some carriers append without MIME
        if not line.isascii():
            continue
        stripped = line.strip()
        if stripped.startswith(">>>"):
            if rows:
                commands[-1] = stripped[3:].strip()[:4].upper()
            continue
        if stripped.startswith("<<<"):
            if rows:
                rows[-1].diagnostic = stripped[3:].strip()
            continue
        if stripped.startswith("-----"):
            continue
        if rows:
            messages[-1].append(stripped)
    if not rows:
        return None
    fill_from_dsn(rows, msg)
    preamble = " ".join(_preamble(text))
    filtered = msg.headers.get("x-spasign").strip() == "NG"
    for i, row in enumerate(rows):
        said = " ".join(messages[i]) if i < len(messages) else ""
        carrier_text = " ".join(f"{preamble} {said}".split())
        if not row.diagnostic:
            row.diagnostic = carrier_text
        row.diagnostic = " ".join(row.diagnostic.split())
        if filtered:
            row.reason = "filtered"
        elif commands[i] == "RCPT":
            row.reason = "userunknown"
        else:
            row.reason, row.reason_rule = vendor.preset("ezweb", carrier_text)
        if not row.reason and not row.recipient.endswith(_EZWEB_DOMAINS):
            row.reason = "userunknown"
        row.status = row.status or find_status(row.diagnostic)
        row.reply_code = row.reply_code or find_reply_code(row.diagnostic)
    return Detection(rows, "au/EZweb Mail System Error report")


def _preamble(text: str) -> list[str]:
    """The carrier's English sentences before the first recipient line."""
    out: list[str] = []
    in_sentence = False
    for line in text.split("\n", 60)[:60]:
        if _EZWEB_RCPT.match(line):
            break
        stripped = line.strip()
        if stripped.startswith(("The user(s) ", "Your message was not delivered", "Each of the following")):
            in_sentence = True
        elif not stripped or not stripped.isascii():
            in_sentence = False
        if in_sentence:
            out.append(stripped)  # a sentence wrapped over several lines
    return out


# --- KDDI au one net --------------------------------------------------------------------------------------

_KDDI_FROM = re.compile(r"no-reply@.+\.dion\.ne\.jp", re.I)
_KDDI_START = re.compile(r"^Your mail (?:sent on:? [A-Z][a-z]{2},|attempted to be delivered on:? [A-Z][a-z]{2},)")
_KDDI_RCPT = re.compile(r"^\s+Could not be delivered to: <([^\s<>@]+@[^\s<>]+)>")


def detect_kddi(msg: Message) -> Detection | None:
    h = msg.headers
    sender = h.get("from")
    if not (
        ("dion.ne.jp" in sender and _KDDI_FROM.search(sender))
        or h.get("reply-to").strip() == "no-reply@app.auone-net.jp"
        or received_has(msg, "ezweb.ne.jp (", ".au.com (")
    ):
        return None
    text = msg.body_text()
    rows: list[RecipientResult] = []
    diags: list[list[str]] = []
    started = False
    for line in text.split("\n", 300)[:300]:
        if not started:
            started = bool(_KDDI_START.match(line))
            continue
        m = _KDDI_RCPT.match(line)
        if m:
            rows.append(make_row(m.group(1)))
            diags.append([])
        elif rows and line[:1] in (" ", "\t") and line.strip():
            diags[-1].append(line.strip())
    for row, said in zip(rows, diags, strict=True):
        row.diagnostic = " ".join(said)
        row.reason, row.reason_rule = vendor.preset("kddi", row.diagnostic)
    rows = [r for r in rows if r.recipient]
    return Detection(rows, "KDDI au one net error notice (Could not be delivered to)") if rows else None


# --- m-FILTER (Digital Arts) ------------------------------------------------------------------------------

_MFILTER_ADDR = re.compile(r"^([^\s@]{1,128}@[^\s@]{1,255}\.[a-zA-Z]+)$")


def detect_mfilter(msg: Message) -> Detection | None:
    h = msg.headers
    if h.get("x-mailer").strip() != "m-FILTER" or h.get("subject").strip() != "failure notice":
        return None
    text = msg.body_text()
    addrs: list[str] = []
    diag: list[str] = []
    command = ""
    mode = ""
    for line in text.split("\n", 200)[:200]:
        stripped = line.strip()
        if stripped.startswith("-------original"):
            break
        if stripped == "-------server message":
            mode = "diag"
            continue
        if stripped == "-------SMTP command":
            mode = "command"
            continue
        if not stripped:
            continue
        if mode == "diag":
            diag.append(stripped)
        elif mode == "command":
            command = command or stripped.split()[0].upper()
        else:
            m = _MFILTER_ADDR.match(stripped)
            if m:
                addrs.append(m.group(1))
    message = " ".join(diag)
    rows = [r for r in (make_row(a, message) for a in addrs) if r.recipient]
    set_stage(rows, command)
    return Detection(rows, "m-FILTER failure notice") if rows else None


DETECTORS = [
    ("ezweb", detect_ezweb),
    ("kddi", detect_kddi),
    ("mfilter", detect_mfilter),
]
