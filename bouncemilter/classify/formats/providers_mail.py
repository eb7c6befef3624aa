"""Text bounces of web mail providers: Yahoo, Mail.ru, GMX / 1&1 (United Internet), Zoho,
Verizon, Biglobe; and Facebook's DSN, whose fields need its own response-code table."""

from __future__ import annotations

import re

from ..mime import Message
from ..model import RecipientResult
from ..reasons import vendor
from ..stage import name as stage_name
from ..text import clean_address, find_addresses, one_line
from .base import Detection
from .providers_common import MAX_RECIPIENTS, cut, dsn_rows, exim_blocks, header_lower, make_row

# --- Yahoo -------------------------------------------------------------------------------

_YAHOO_START = "Sorry, we were unable to deliver your message"
_YAHOO_RCPT = re.compile(r"^<((?=[^<>\s]*?[^<>\s]@[^<>\s])[^<>\s]++)>:\s*$")  # linear (no "@" backtracking)
# Yahoo's tag of the SMTP command its MX answered: "... User Unknown [RCPT_TO]"
_YAHOO_CMD = re.compile(r"(?<!\s)\s*\[(RCPT_TO|MAIL_FROM|DATA|CONNECT|EHLO|HELO)[A-Z_]*\]\s*$")
_YAHOO_STAGES = {"RCPT_TO": "RCPT", "MAIL_FROM": "MAIL", "DATA": "DATA", "CONNECT": "CONN"}
_YAHOO_STAGES |= {"EHLO": "EHLO", "HELO": "HELO"}


def detect_yahoo(msg: Message) -> Detection | None:
    sender = header_lower(msg, "from")
    if "mailer-daemon@" not in sender:
        return None
    if "x-ymailisg" not in msg.headers and not ("yahoo" in sender and "failure notice" in header_lower(msg, "subject")):
        return None
    text = msg.body_text()
    start = text.find(_YAHOO_START)
    if start < 0:
        return None
    body = cut(text[start:], "--- Below this line is a copy of the message")
    rows: list[RecipientResult] = []
    addr, lines = "", []
    for line in body.split("\n")[1:400]:
        m = _YAHOO_RCPT.match(line.strip())
        if m:
            if addr:
                rows.append(_yahoo_row(addr, lines))
            addr, lines = m.group(1), []
        elif addr and line.strip():
            lines.append(line.strip())
    if addr:
        rows.append(_yahoo_row(addr, lines))
    return Detection(rows[:MAX_RECIPIENTS], f"Yahoo: {_YAHOO_START}") if rows else None


def _yahoo_row(addr: str, lines: list[str]) -> RecipientResult:
    diag = one_line(" ".join(lines))
    if diag.startswith("Remote host said:"):
        diag = diag[len("Remote host said:") :]
    tag = _YAHOO_CMD.search(diag)
    row = make_row(addr, diag[: tag.start()].strip() if tag else diag.strip())
    row.smtp_command = _YAHOO_STAGES[tag.group(1)] if tag else ""
    return row


# --- Mail.ru (Exim underneath, Russian text above the English one) ------------------------


def detect_mailru(msg: Message) -> Detection | None:
    sender = header_lower(msg, "from")
    if "mailer-daemon@" not in sender or "mail.ru" not in sender:
        return None
    text = cut(msg.body_text(), "------ This is a copy of the message")
    # The English part repeats the Russian one; read from the English marker when present.
    english = text.find("This message was created automatically by mail delivery software")
    blocks = exim_blocks(text[english:] if english >= 0 else text)
    if not blocks:
        return None
    rows = [make_row(a, d, remote_mta=h) for a, d, h in blocks[:MAX_RECIPIENTS]]
    return Detection(rows, "Mail.ru: Exim failure list")


# --- GMX, 1&1, web.de (United Internet) ----------------------------------------------------

_UI_DOMAINS = ("gmx.", "kundenserver", "web.de", "1und1", "1and1", "ionos")
_UI_END = "--- The header of the original message is following. ---"
_UI_RCPT = re.compile(r'^["<]?([^\s"<>]{1,64}@[^\s"<>]{1,255}?)[">]?:?$')  # bounded like an address: linear
# Exim's wording, which names the stage the remote server refused at ("after RCPT command")
_UI_SMTP = re.compile(r"^SMTP error from remote server (?:after|for) ([A-Z ]+?) ?command[:,]?\s*", re.I)
_UI_HOST = re.compile(r"^host:\s*([\w.\-]+)(?:\s*\([0-9a-fA-F.:]+\))?\s*(?:reason:\s*)?", re.I)
_UI_SKIP = re.compile(r"^(?:Reason:|For the following reason:|The following address(?:\(es\))?)\s*$", re.I)
_UI_VISIT = re.compile(r"(?<!\s)\s*For explanation visit \S+.*$", re.I)


def detect_united_internet(msg: Message) -> Detection | None:
    sender = header_lower(msg, "from")
    if (
        "x-ui-out-filterresults" not in msg.headers
        and "x-gmx-antispam" not in msg.headers
        and not ("mailer-daemon@" in sender and any(d in sender for d in _UI_DOMAINS))
    ):
        return None
    if "mail delivery failed" not in header_lower(msg, "subject"):
        return None
    text = cut(msg.body_text(), _UI_END)
    m = re.search(r"failed:\s*\n", text)
    if not m:
        return None
    rows: list[RecipientResult] = []
    addr, host, lines, command = "", "", [], ""
    for raw in text[m.end() :].split("\n")[:300]:
        line = raw.strip()
        if not line or _UI_SKIP.match(line):
            continue
        rm = _UI_RCPT.match(line)
        if rm:
            if addr:
                rows.append(_ui_row(addr, lines, host, command))
            addr, host, lines, command = rm.group(1), "", [], ""
            continue
        if not addr:
            continue
        sm = _UI_SMTP.match(line)
        if sm:
            command = stage_name(sm.group(1))
            line = line[sm.end() :]
        hm = _UI_HOST.match(line)
        if hm:
            host = hm.group(1)
            line = line[hm.end() :]
        if line:
            lines.append(line)
    if addr:
        rows.append(_ui_row(addr, lines, host, command))
    return Detection(rows[:MAX_RECIPIENTS], "GMX/1&1: Mail delivery failed") if rows else None


def _ui_row(addr: str, lines: list[str], host: str, command: str) -> RecipientResult:
    diag = _UI_VISIT.sub("", one_line(" ".join(lines)))
    return make_row(addr, diag, remote_mta=host, smtp_command=command)


# --- Zoho ----------------------------------------------------------------------------------

_ZOHO_LINE = re.compile(r"^([^\s@]+@\S+)\s+Invalid Address,\s*(.*)$", re.M)
_ZOHO_DELAY = re.compile(r"\[Status: [^,\]]*, Address: <([^<>\s]+)>, ResponseCode (\d{3})?,([^\]]*)\]")
_ERROR_CODE = re.compile(r"ERROR_CODE\s*:\s*")


def detect_zoho(msg: Message) -> Detection | None:
    if "x-zohomail" not in msg.headers and "zoho.com" not in header_lower(msg, "from"):
        return None
    text = msg.body_text()
    rows: list[RecipientResult] = []
    for m in _ZOHO_LINE.finditer(text):
        parts = [p.strip(" ,") for p in _ERROR_CODE.split(m.group(2)) if p.strip(" ,")]
        rows.append(make_row(m.group(1), " ".join(parts)))
        if len(rows) >= MAX_RECIPIENTS:
            break
    if not rows:
        delayed = "will be retried" in text
        for m in _ZOHO_DELAY.finditer(text):
            diag = one_line(f"{m.group(2) or ''} {m.group(3).strip(' ,')}")
            rows.append(make_row(m.group(1), diag, action="delayed" if delayed else "failed"))
            if len(rows) >= MAX_RECIPIENTS:
                break
    return Detection(rows, "Zoho Mail: Invalid Address / Status list") if rows else None


# --- Verizon (vtext.com SMS gateway, vzwpix.com MMS gateway) --------------------------------

_VZ_RCPT_TO = re.compile(r"^[ \t]*RCPT TO:\s*([^\s@]+@\S+)", re.M)
_VZ_TO = re.compile(r"^[ \t]*To:[ \t]*(.+)$", re.M)


def detect_verizon(msg: Message) -> Detection | None:
    sender = header_lower(msg, "from")
    if "vtext.com" not in sender and "vzwpix.com" not in sender:
        return None
    text = msg.body_text()
    if "Error message below:" in text:  # vtext.com
        addrs = _VZ_RCPT_TO.findall(text)
        diag = text.split("Error message below:", 1)[1].strip().split("\n", 1)[0]
        diag = re.sub(r"^([245]\d\d)\s*-\s*", r"\1 ", diag)
        rows = [make_row(a, diag) for a in addrs[:MAX_RECIPIENTS]]
        return Detection(rows, "Verizon vtext.com: Error message below") if rows else None
    if "Message could not be delivered to mobile" in text:  # vzwpix.com
        err = re.search(r"^Error:\s*(.+)$", text, re.M)
        to = _VZ_TO.search(text.split("Original Message:", 1)[-1])
        addrs = find_addresses(to.group(1)) if to else []
        diag = err.group(1).strip() if err else ""  # Verizon's own sentence: read by the vendor table
        rows = [make_row(a, diag) for a in addrs[:MAX_RECIPIENTS]]
        return Detection(rows, "Verizon vzwpix.com: Message could not be delivered to mobile") if rows else None
    return None


# --- Biglobe -------------------------------------------------------------------------------

_BIGLOBE_SENDERS = tuple(f"postmaster@{d}.ne.jp" for d in ("biglobe", "inacatv", "tmtv", "ttv"))
_BIGLOBE_ADDRS = "----- The following addresses had delivery problems -----"
_BIGLOBE_INFO = "----- Non-delivered information -----"


def detect_biglobe(msg: Message) -> Detection | None:
    sender = header_lower(msg, "from")
    if ".ne.jp" not in sender or not any(p in sender for p in _BIGLOBE_SENDERS):
        return None
    text = msg.body_text()
    a, i = text.find(_BIGLOBE_ADDRS), text.find(_BIGLOBE_INFO)
    if a < 0 or i < a:
        return None
    addrs = find_addresses(text[a + len(_BIGLOBE_ADDRS) : i])
    info = text[i + len(_BIGLOBE_INFO) :].split("\n\n", 1)[0]
    diag = one_line(info)  # Biglobe's canned explanation: read by the vendor table
    rows = [make_row(x, diag) for x in addrs[:MAX_RECIPIENTS]]
    return Detection(rows, f"Biglobe: {_BIGLOBE_ADDRS.strip('- ')}") if rows else None


# --- Facebook ------------------------------------------------------------------------------

_FB_CODE = re.compile(r"\b([A-Z]{3}-[PT]\d)\b")


def detect_facebook(msg: Message) -> Detection | None:
    if "facebook.com" not in header_lower(msg, "from"):
        return None
    rows = dsn_rows(msg)
    if not rows:
        return None
    for row in rows:
        m = _FB_CODE.search(row.diagnostic)
        if m and m.group(1) in vendor.FACEBOOK_CODES:
            row.reason, row.reason_rule = vendor.FACEBOOK_CODES[m.group(1)], f"preset:facebook/{m.group(1)}"
    return Detection(rows, "Facebook: delivery-status with a Facebook response code")


# --- Office 365 / Exchange Online text-only NDR ---------------------------------------------

_O365_START = "Delivery has failed to these recipients or groups:"
_O365_ADMIN = "Diagnostic information for administrators:"
_O365_RETURNED = re.compile(r"^[ \t]*+([^\s@]+@\S+)[ \t]*\n[ \t]*Remote Server returned '([^\n]*)'", re.M | re.I)


def detect_office365(msg: Message) -> Detection | None:
    if not header_lower(msg, "subject").startswith("undeliverable"):
        return None
    ident = header_lower(msg, "message-id") + header_lower(msg, "from")
    if (
        "outlook.com" not in ident
        and "onmicrosoft.com" not in ident
        and "x-ms-exchange-message-is-ndr" not in msg.headers
        and "x-ms-exchange-crosstenant-originalarrivaltime" not in msg.headers
    ):
        return None
    if dsn_rows(msg):
        return None  # the RFC 3464 reader has it
    text = msg.body_text()
    admin = text.find(_O365_ADMIN)
    if text.find(_O365_START) < 0 or admin < 0:
        return None
    tail = cut(text[admin:], "Original message headers:")
    rows = []
    for m in _O365_RETURNED.finditer(tail):
        rows.append(make_row(clean_address(m.group(1)), m.group(2)))
        if len(rows) >= MAX_RECIPIENTS:
            break
    return Detection(rows, f"Office 365: {_O365_START}") if rows else None
