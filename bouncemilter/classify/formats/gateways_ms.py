"""Microsoft Exchange 5.5-2003 and 2007 NDRs, Lotus Domino and Lotus Notes bounces."""

from __future__ import annotations

import re

from ..mime import Message
from ..model import RecipientResult
from ..reasons import vendor
from .base import Detection
from .gateways_common import (
    LINE_ADDRESS,
    dsn_rows,
    fill_from_dsn,
    make_row,
    received_has,
    section,
    set_stage,
    unjis,
)

# --- Exchange 5.5 / 2000 / 2003 ("Internet Mail Service") -------------------------------------------------

_EXCH2003_RCPT = re.compile(r"^\s*+(?:.*?SMTP=)?([^\s@]{1,128}@[^\s@]{1,255}) on\s", re.I)
_EXCH2003_CODE = re.compile(r"MSEXCH:.*?\(([0-9A-F]{8})\)\s*(.*)", re.S)
_EXCH2003_STARTS = ("did not reach the following recipient(s):", "The following recipient(s) could not be reached:")


def _exchange2003_match(msg: Message) -> bool:
    h = msg.headers
    if "x-ms-embedded-report" in h:
        return True
    mailer = h.get("x-mailer").strip()
    if mailer.startswith(("Internet Mail Service (", "Microsoft Exchange Server Internet Mail Connector")):
        return True
    if h.get("x-mimeole").strip().startswith("Produced By Microsoft Exchange"):
        return True
    return received_has(msg, " with Internet Mail Service (")


def detect_exchange2003(msg: Message) -> Detection | None:
    if not _exchange2003_match(msg):
        return None
    text = msg.body_text()
    lines: list[str] = []
    for start in _EXCH2003_STARTS:
        lines = section(text, start)
        if lines:
            break
    if not lines:
        return None
    blocks: list[tuple[str, list[str]]] = []
    for line in lines:
        m = _EXCH2003_RCPT.match(line)
        if m:
            blocks.append((m.group(1), []))
        elif blocks and line.strip():
            blocks[-1][1].append(line.strip())
        elif blocks and not line.strip() and any(x.startswith("MSEXCH:") for x in blocks[-1][1]):
            break  # an empty line after the MSEXCH code ends the list
    rows: list[RecipientResult] = []
    for addr, body in blocks:
        # Drop the MTS-ID line and its wrapped continuation lines, up to the MSEXCH code line.
        words: list[str] = []
        skipping = False
        for x in body:
            if x.startswith("The MTS-ID"):
                skipping = True
            elif x.startswith("MSEXCH:") or not skipping:
                skipping = False
                words.append(x)
        joined = " ".join(words)
        reason = ""
        m = _EXCH2003_CODE.search(joined)
        if m:
            reason = vendor.EXCHANGE2003_CODES.get(m.group(1), "")
        row = make_row(addr, joined, reason=reason)
        row.reason_rule = f"preset:exchange2003/{m.group(1)}" if reason and m else ""
        rows.append(row)
    set_stage(rows)
    return Detection(rows, "Exchange 2003 NDR (did not reach the following recipient(s))") if rows else None


# --- Exchange 2007 and later (on-premises) ----------------------------------------------------------------

_EXCH2007_SUBJECT = re.compile(r"^(?:Undeliverable|Non remis|Non_remis_|Non recapitabile|Unzustellbar)\s*:", re.I)
_EXCH2007_CODE = re.compile(r"\b((?:RESOLVER|QUEUE|SMTPSEND)\.[A-Za-z]+(?:\.[A-Za-z]+)?)")
_EXCH2007_DIAG_START = re.compile(
    r"^(?:Diagnostic information for administrators|Informations de diagnostic pour les administrateurs|"
    r"Informazioni di diagnostica per gli amministratori|Diagnoseinformationen für Administratoren)",
    re.M,
)
_EXCH2007_END = re.compile(
    r"^(?:Original message headers|En-t.tes de message d'origine|"
    r"Intestazioni originali del messaggio|Ursprüngliche Nachrichtenkopfzeilen)",
    re.M,
)
_EXCH2007_SERVER = re.compile(
    r"^(?:Generating server|Serveur de g\S+ration|Server di generazione|"
    r"Generierender Server|Remote Server)\s*:\s*(\S*)",
    re.M,
)
_EXCH2007_LINE = re.compile(r"^(?:(\S+)\s+)?#(.+?)(?:\s*##.*)?$")
_EXCH2007_QUOTED = re.compile(r"Remote Server returned '(.+)'")


def detect_exchange2007(msg: Message) -> Detection | None:
    h = msg.headers
    if "content-language" not in h or not _EXCH2007_SUBJECT.match(h.decoded("subject")):
        return None
    if "x-ms-exchange-crosstenant-originalarrivaltime" in h or "x-ms-exchange-crosstenant-fromentityheader" in h:
        return None  # Exchange Online: Office 365's format
    text = msg.body_text()
    start = _EXCH2007_DIAG_START.search(text)
    if start is None:
        return None
    end = _EXCH2007_END.search(text, start.end())
    diag_text = text[start.end() : end.start() if end else start.end() + 8000]
    server = _EXCH2007_SERVER.search(diag_text)
    remote = server.group(1) if server else ""
    rows = dsn_rows(msg)
    if not rows:
        addr = ""
        for line in diag_text.split("\n")[:200]:
            m = LINE_ADDRESS.match(line)
            if m:
                addr = m.group(1)
            elif addr and line.strip():
                # "#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##" or "mx.example.net #550 ... ##"
                said = _EXCH2007_LINE.match(line.strip())
                host = said.group(1) if said and said.group(1) else remote
                words = said.group(2) if said else line.strip()
                quoted = _EXCH2007_QUOTED.search(words)
                rows.append(make_row(addr, quoted.group(1) if quoted else words, remote_mta=host))
                addr = ""
    # A DSN part may drop the NDR code that the administrators' section still shows.
    codes = set(_EXCH2007_CODE.findall(diag_text))
    only_code = codes.pop() if len(codes) == 1 else ""
    for row in rows:
        row.remote_mta = row.remote_mta or remote
        m = _EXCH2007_CODE.search(row.diagnostic)
        code = m.group(1) if m else only_code
        if code in vendor.EXCHANGE_CODES:
            row.reason, row.reason_rule = vendor.EXCHANGE_CODES[code], f"preset:exchange2007/{code}"
    return Detection(rows, "Exchange 2007 NDR (Diagnostic information for administrators)") if rows else None


# --- Lotus Domino -----------------------------------------------------------------------------------------

_DOMINO_SUBJECT = re.compile(r"^DELIVERY[ _]FAILURE:")


def detect_domino(msg: Message) -> Detection | None:
    if not _DOMINO_SUBJECT.match(msg.headers.get("subject")):
        return None
    text = msg.body_text()
    if "was not delivered to:" not in text:
        return None
    rows: list[RecipientResult] = []
    state = ""
    pending: list[str] = []
    for line in section(text, "Your message", max_lines=300):
        stripped = line.strip()
        if stripped == "was not delivered to:":
            state = "rcpt"
            continue
        if stripped == "because:":
            state = "because"
            continue
        if not stripped:
            continue
        if state == "rcpt":
            m = LINE_ADDRESS.match(line)
            if m:
                pending.append(m.group(1))
        elif state == "because":
            diag = unjis(stripped)
            for addr in pending:
                rows.append(make_row(addr, diag))
            pending = []
            state = ""
    for addr in pending:
        rows.append(make_row(addr))
    rows = [r for r in rows if r.recipient] or dsn_rows(msg)
    if not rows:
        return None
    fill_from_dsn(rows, msg)
    for row in rows:
        row.diagnostic = unjis(row.diagnostic)  # Domino's own sentence: read by the vendor table
    return Detection(rows, "Lotus Domino DELIVERY FAILURE report")


# --- Lotus Notes (old SMTP MTA) ---------------------------------------------------------------------------


def detect_notes(msg: Message) -> Detection | None:
    if not msg.headers.get("subject").startswith("Undeliverable message"):
        return None
    text = msg.body_text()
    lines = section(text, "------- Failure Reasons", "------- Returned Message")
    if not lines:
        return None
    addrs: list[str] = []
    diag: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("-"):
            continue
        m = LINE_ADDRESS.match(line)
        if m:
            addrs.append(m.group(1))
        else:
            diag.append(stripped)
    if not addrs:
        returned = section(text, "------- Returned Message", max_lines=200)
        for line in returned:
            if line.lower().startswith("to:"):
                addrs.append(line[3:])
                break
            if not line.strip():
                break
    message = " ".join(diag)  # Notes' own sentence: read by the vendor table (white space folded)
    rows = [make_row(a, message) for a in addrs]
    rows = [r for r in rows if r.recipient]
    return Detection(rows, "Lotus Notes Failure Reasons report") if rows else None


DETECTORS = [
    ("exchange2003", detect_exchange2003),
    ("exchange2007", detect_exchange2007),
    ("domino", detect_domino),
    ("notes", detect_notes),
]
