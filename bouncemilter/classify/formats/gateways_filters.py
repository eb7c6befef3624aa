"""Mail gateways / filters and enterprise servers: IMail, MXLogic, InterScan MSS, Active!hunter, fml,
MailFoundry, MailMarshal, Oracle/Sun Messaging Server, Bigfoot."""

from __future__ import annotations

import re

from ..dsn import parse_dsn, parse_inline_fields
from ..mime import Message
from ..model import RecipientResult
from ..reasons import vendor
from ..text import find_status
from .base import Detection
from .gateways_common import dsn_rows, fill_from_dsn, first_host, make_row, received_has, section, set_stage

# --- Ipswitch IMail Server --------------------------------------------------------------------------------

_IMAIL_SUBJECT = re.compile(r"^Undeliverable Mail\s*$")
_IMAIL_LINE = re.compile(r"^(\S+) ([^:\n]{1,200}):\s*(\S+@\S+)")
_IMAIL_UNDELIVERABLE = re.compile(r"^undeliverable\s+to\s+(.+)$")
_IMAIL_RESPONSE = "Body of message generated response:"


def detect_imail(msg: Message) -> Detection | None:
    h = msg.headers
    if not (_IMAIL_SUBJECT.match(h.get("subject").strip()) or h.get("x-mailer").strip().startswith("<SMTP32 v")):
        return None
    text = msg.body_text()
    cut = text.find("Original message follows.")
    if cut >= 0:
        text = text[:cut]
    rows: list[RecipientResult] = []
    response: list[str] = []
    for line in text.split("\n", 200)[:200]:
        m = _IMAIL_LINE.match(line)
        if m:
            rows.append(make_row(m.group(3), f"{m.group(1)} {m.group(2)}"))
            continue
        m = _IMAIL_UNDELIVERABLE.match(line)
        if m:
            rows.append(make_row(m.group(1)))
            continue
        if (_IMAIL_RESPONSE in line or response) and line.strip():
            response.append(line.strip())
    rows = [r for r in rows if r.recipient]
    if not rows:
        return None
    remote = " ".join(response).replace(_IMAIL_RESPONSE, "").strip()
    for row in rows:
        row.reason, row.reason_rule = vendor.preset("imailserver", row.diagnostic)  # IMail's own line
        if remote:
            # The remote server's own answer is the better diagnostic than IMail's summary line.
            full = make_row(row.recipient, remote)
            row.diagnostic, row.status, row.reply_code = full.diagnostic, full.status, full.reply_code
    return Detection(rows, "IMail Server Undeliverable Mail")


# --- MXLogic (McAfee SaaS email protection; Exim based) ---------------------------------------------------

_MXLOGIC_SUBJECT = re.compile(
    r"^(?:Mail delivery failed(?:: returning message to sender)?|Warning: message \S+ delayed|"
    r"Delivery Status Notification)"
)
_MXLOGIC_RCPT = re.compile(r"^\s+<?([^\s<>@]+@[^\s<>:]+)>?:?\s*(.*)$")
_EXIM_COMMAND = re.compile(r"SMTP error from remote (?:mail server|mailer) after (?:end of )?([A-Za-z]{4})")


def _mxlogic_match(msg: Message) -> bool:
    h = msg.headers
    if "x-mx-bounce" in h or "x-mxl-hash" in h or "x-mxl-notehash" in h:
        return True
    if "mxlogic.net" in h.get("from").lower():
        return True
    if not _MXLOGIC_SUBJECT.match(h.get("subject")):
        return False
    if received_has(msg, "mxl_mta-"):
        return True
    # Its "copy of the message header" near the top of the text names the MTA.
    return msg.body_text().find("(mxl_mta-", 0, 16384) >= 0


def detect_mxlogic(msg: Message) -> Detection | None:
    if not _mxlogic_match(msg):
        return None
    text = msg.body_text()
    lines = section(
        text,
        "This message was created automatically by mail delivery software.",
        "Included is a copy of the message header:",
    )
    rows: list[RecipientResult] = []
    diags: list[list[str]] = []
    for line in lines:
        if not line.strip():
            continue
        m = _MXLOGIC_RCPT.match(line)
        if m and line[:1] in " \t":
            rows.append(make_row(m.group(1)))
            diags.append([m.group(2).strip()] if m.group(2).strip() else [])
        elif rows and line[:1] in " \t<" and diags[-1] is not None:
            diags[-1].append(line.strip())
        elif rows and diags[-1]:
            # An unindented continuation such as "<addr>" right after the error text.
            diags[-1].append(line.strip())
    for row, said in zip(rows, diags, strict=True):
        full = make_row(row.recipient, " ".join(said))
        row.diagnostic, row.status, row.reply_code = full.diagnostic, full.status, full.reply_code
    command = _EXIM_COMMAND.search(text)
    set_stage(rows, command.group(1) if command else "")
    kind = "delay" if msg.headers.get("subject").startswith("Warning: message") else None
    if kind:
        for row in rows:
            row.action = "delayed"
    rows = [r for r in rows if r.recipient]
    return Detection(rows, "MXLogic delivery failure report", kind=kind) if rows else None


# --- Trend Micro InterScan Messaging Security Suite -------------------------------------------------------

INTERSCAN_SUBJECTS = ("Mail could not be delivered", "メッセージを配信できません。", "メール配信に失敗しました")
_INTERSCAN_ARROW = re.compile(r"^.+[<>]{3}[ \t]+.+<([^\s<>@]+@[^\s<>]+)>")
_INTERSCAN_UNABLE = re.compile(r"^(?:Reason:\s+)?Unable to deliver message to <([^<>]+)>")
_INTERSCAN_SENT = re.compile(r"^Sent\s+<<<\s+([A-Z]{4})")
_INTERSCAN_CMD = re.compile(r" >>> ([A-Z]{4})")
_INTERSCAN_RECEIVED = re.compile(r"^Received\s+>>>\s+(\d{3}\s+.+)$")


def interscan_subject(msg: Message) -> bool:
    """One of InterScan's own subjects (a Japanese one comes encoded)."""
    subject = msg.headers.get("subject")
    if "=?" in subject:
        subject = msg.headers.decoded("subject")
    return subject.strip() in INTERSCAN_SUBJECTS


def detect_interscan(msg: Message) -> Detection | None:
    sender = msg.headers.get("from").strip()
    if not sender.startswith(('"InterScan MSS"', '"InterScan Notification"')) and not interscan_subject(msg):
        return None
    rows: list[RecipientResult] = []
    command = ""
    for line in msg.body_text().split("\n", 300)[:300]:
        if not line.strip():
            continue
        sent = _INTERSCAN_SENT.match(line) or _INTERSCAN_CMD.search(line)
        if sent:
            command = sent.group(1)
        m = _INTERSCAN_ARROW.match(line) or _INTERSCAN_UNABLE.match(line)
        if m:
            addr = m.group(1).lower()
            if not rows or rows[-1].recipient != addr:
                rows.append(make_row(addr))
            if "Unable to deliver" in line:
                rows[-1].diagnostic = line.strip().removeprefix("Reason:").strip()
        if not rows:
            continue
        m = _INTERSCAN_RECEIVED.match(line)
        if m:
            rows[-1].diagnostic = m.group(1).strip()
        elif " <<< " in line and not _INTERSCAN_SENT.match(line):
            rows[-1].diagnostic = line.split(" <<< ", 1)[1].strip()
    for row in rows:
        full = make_row(row.recipient, row.diagnostic)
        row.diagnostic, row.status, row.reply_code = full.diagnostic, full.status, full.reply_code
        row.reason, row.reason_rule = vendor.preset("interscanmss", row.diagnostic)
    rows = [r for r in rows if r.recipient]
    set_stage(rows, command)
    return Detection(rows, "InterScan MSS delivery failure") if rows else None


# --- Active!hunter ----------------------------------------------------------------------------------------

_AH_RCPT = re.compile(r"^>>>\s.*?<([^\s<>@]+@[^\s<>]+)>\s*$")  # lazy: \s+.* overlapped (quadratic)


def detect_activehunter(msg: Message) -> Detection | None:
    if "x-ahmailid" not in msg.headers:
        return None
    rows: list[RecipientResult] = []
    for line in section(msg.body_text(), "----- The following addresses had permanent fatal errors -----"):
        m = _AH_RCPT.match(line)
        if m:
            rows.append(make_row(m.group(1)))
        elif rows and not rows[-1].diagnostic and line[:1].isalnum():
            full = make_row(rows[-1].recipient, line)
            rows[-1].diagnostic, rows[-1].status, rows[-1].reply_code = full.diagnostic, full.status, full.reply_code
    rows = [r for r in rows if r.recipient]
    set_stage(rows)
    return Detection(rows, "Active!hunter FAILURE NOTICE") if rows else None


# --- fml mailing list manager -----------------------------------------------------------------------------

_FML_MID = re.compile(r"^<\d+\.FML.+@.+>$")
_FML_RCPT = re.compile(r"<([^\s<>@]+@[^\s<>]+?)>\.$")
_FML_REASONS = (
    (
        "rejected",
        re.compile(
            r"(?:Ignored )*NOT MEMBER article from |reject (?:mail from \S+@\S+|since .+ header "
            r"may cause mail loop|spammers:)|You are not a member of this mailing list"
        ),
    ),
    (
        "systemerror",
        re.compile(
            r"Duplicated Message-ID|fml .+ has detected a loop condition so that|"
            r"Loop Back Warning:"
        ),
    ),
    ("securityerror", re.compile(r"Security alert:")),
)
_FML_SUBJECTS = (
    (
        "rejected",
        re.compile(
            r"(?:Ignored )*NOT MEMBER article from |reject mail (?:.+:|from) ,|"
            r"Spam mail from a spammer is rejected|You .+ are not member"
        ),
    ),
    ("systemerror", re.compile(r"fml system error message|Loop Alert: |Loop Back Warning: |WARNING: UNIX FROM Loop")),
    ("securityerror", re.compile(r"Security Alert")),
)


def detect_fml(msg: Message) -> Detection | None:
    h = msg.headers
    if "x-mlserver" not in h or "-admin@" not in h.get("from"):
        return None
    if not _FML_MID.match(h.get("message-id").strip()) and "FML" not in h.get("message-id").upper():
        return None
    text = msg.body_text()
    cut = text.find("Original mail as follows:")
    if cut >= 0:
        text = text[:cut]
    rows: list[RecipientResult] = []
    for line in text.split("\n", 100)[:100]:
        m = _FML_RCPT.search(line.strip())
        if m:
            rows.append(make_row(m.group(1), line.strip()))
    subject = h.decoded("subject")
    for row in rows:
        row.reason = next((r for r, rx in _FML_REASONS if rx.search(row.diagnostic)), "") or next(
            (r for r, rx in _FML_SUBJECTS if rx.search(subject)), ""
        )
    rows = [r for r in rows if r.recipient]
    return Detection(rows, "fml mailing list error") if rows else None


# --- MailFoundry ------------------------------------------------------------------------------------------

_MF_RCPT = re.compile(r"^Unable to deliver message to: <([^<>]+)>")
_MF_SERVER = re.compile(r"^Server (\S+?)(?:\[[^\]]*\])? failed with: (.+)$")


def detect_mailfoundry(msg: Message) -> Detection | None:
    if msg.headers.get("subject").strip() != "Message delivery has failed":
        return None
    if not received_has(msg, "(MAILFOUNDRY) id"):
        return None
    rows: list[RecipientResult] = []
    reading = False
    for line in msg.body_text().split("\n", 100)[:100]:
        m = _MF_RCPT.match(line)
        if m:
            rows.append(make_row(m.group(1)))
            reading = False
            continue
        if not rows:
            continue
        if line.startswith("Delivery failed for the following reason:"):
            reading = True
            continue
        if reading and line.strip():
            m = _MF_SERVER.match(line.strip())
            said = m.group(2) if m else line.strip()
            full = make_row(rows[-1].recipient, (rows[-1].diagnostic + " " + said).strip())
            rows[-1].diagnostic, rows[-1].status, rows[-1].reply_code = full.diagnostic, full.status, full.reply_code
            if m:
                rows[-1].remote_mta = m.group(1)
        elif reading:
            reading = False
    rows = [r for r in rows if r.recipient]
    set_stage(rows)
    return Detection(rows, "MailFoundry delivery failure") if rows else None


# --- MailMarshal SMTP -------------------------------------------------------------------------------------

_MM_RCPT = re.compile(r"^[ \t]{4}([^\s@]+@[^\s@]+)$")
_MM_FIELD = re.compile(r"^(Remote-MTA|Reporting-MTA):\s+<(.+)>$")


def detect_mailmarshal(msg: Message) -> Detection | None:
    if not msg.headers.get("subject").startswith('Undeliverable Mail: "'):
        return None
    lines = section(msg.body_text(), "Your message:")
    addrs: list[str] = []
    diag: list[str] = []
    remote = ""
    mode = ""
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("Could not be delivered because of"):
            mode = "diag"
            continue
        if stripped.startswith("The following recipients were affected:"):
            mode = "rcpt"
            continue
        m = _MM_FIELD.match(stripped)
        if m:
            if m.group(1) == "Remote-MTA":
                remote = m.group(2)
            mode = ""
            continue
        if mode == "diag" and stripped:
            diag.append(stripped)
        elif mode == "rcpt":
            m = _MM_RCPT.match(line)
            if m:
                addrs.append(m.group(1))
            elif stripped:
                mode = ""
    rows = [make_row(a, " ".join(diag), remote_mta=remote) for a in addrs]
    rows = [r for r in rows if r.recipient]
    set_stage(rows)
    return Detection(rows, "MailMarshal SMTP Undeliverable Mail") if rows else None


# --- Oracle (Sun ONE / iPlanet) Communications Messaging Server --------------------------------------------

_MS_FIELD = re.compile(r"^\s+(Recipient address|Original address|Reason|Diagnostic code|Remote system):\s*(.*)$")


def detect_messaging_server(msg: Message) -> Detection | None:
    h = msg.headers
    if "Boundary_(ID_" not in h.get("content-type") and not h.get("subject").startswith("Delivery Notification: "):
        return None
    text = msg.body_text()
    if "This report relates to a message you sent with the following header fields:" not in text:
        return None
    groups: list[dict[str, str]] = []
    for line in text.split("\n", 400)[:400]:
        m = _MS_FIELD.match(line)
        if not m:
            continue
        key, value = m.group(1).lower(), m.group(2).strip()
        if key == "recipient address" or not groups:
            groups.append({})
        groups[-1].setdefault(key, value)
    dsn = {r.recipient: r for r in dsn_rows(msg)}
    rows: list[RecipientResult] = []
    for g in groups:
        addr = g.get("recipient address", "")
        if addr.startswith("@") or "@" not in addr or "." not in addr.rpartition("@")[2].strip(">"):
            # A source route (@relay:user@host) or an internal channel address (user@ims-ms-daemon):
            # the original is the mailbox.
            addr = g.get("original address", "") or addr.rsplit(":", 1)[-1]
        diag = g.get("diagnostic code", "")
        diag = diag.split(";", 1)[1].strip() if ";" in diag[:12] else diag
        remote = g.get("remote system", "")
        remote = remote.split(";", 1)[1] if ";" in remote[:8] else remote
        row = make_row(addr, diag or g.get("reason", ""), remote_mta=first_host(remote))
        if not row.recipient:
            continue
        other = dsn.get(row.recipient) or dsn.get(make_row(g.get("recipient address", "")).recipient)
        if other is not None:
            row.status = other.status or row.status
            row.action = other.action
        # The server's own "Reason:" text names the cause (e.g. a domain that does not resolve).
        row.reason, row.reason_rule = vendor.preset("messagingserver", g.get("reason", ""))
        rows.append(row)
    if not rows:
        rows = dsn_rows(msg)
        for row in rows:
            row.remote_mta = first_host(row.remote_mta)
    return Detection(rows, "Messaging Server delivery notification") if rows else None


# --- Symantec Email Security.cloud (MessageLabs) ---------------------------------------------------------

_ML_START = "I was unable to deliver your message to the following addresses:"


def detect_messagelabs(msg: Message) -> Detection | None:
    if "messagelabs.com" not in msg.headers.get("from").lower() and not received_has(msg, ".messagelabs.com "):
        return None
    text = msg.body_text()
    if _ML_START not in text:
        return None
    # Its DSN part folds Diagnostic-Code without indentation and puts it before Final-Recipient,
    # so the text part is the reliable source of the remote server's answer.
    addrs: list[str] = []
    reason: list[str] = []
    for line in section(text, _ML_START, max_lines=100):
        stripped = line.strip()
        if reason:
            if not stripped:
                break
            reason.append(stripped)
        elif stripped.startswith("Reason:"):
            reason.append(stripped[7:].strip())
        elif stripped and "@" in stripped and " " not in stripped:
            addrs.append(stripped)
    diag = " ".join(reason)
    # Multi-line SMTP replies repeat the code on every line ("550-...  550 ..."): keep the words only once.
    code = diag[:3] if diag[:3].isdigit() else ""
    if code and len(reason) > 1:
        tail = " ".join(re.sub(rf"^{code}[ -](?:[245]\.\d{{1,3}}\.\d{{1,3}} )?", "", x) for x in reason[1:])
        diag = f"{reason[0][:3]} {reason[0][4:]} {tail}"
    rows = [make_row(a, diag) for a in addrs]
    rows = [r for r in rows if r.recipient]
    if not rows:
        return None
    fill_from_dsn(rows, msg)
    parsed = parse_dsn(msg)
    status = find_status(parsed[0].per_message.get("status", "")) if parsed else ""
    for row in rows:
        row.status = row.status or status
    return Detection(rows, "MessageLabs (Symantec Email Security.cloud) delivery failure")


# --- McAfee Email Gateway / Email and Web Security appliance ----------------------------------------------

_MCAFEE_USERUNKNOWN = re.compile(
    r"User \([^()\s@]+@[^()\s]+\) unknown\.|550 Unknown user [^\s@]+@\S+|550 <[^<>\s@]+@[^<>\s]+>\.+ User not exist|"
    r"No such user"
)
_MCAFEE_RCPT = re.compile(r"^<([^\s<>@]+@[^\s<>]+)>\s+\((.+)\)\s*$")


def detect_mcafee(msg: Message) -> Detection | None:
    h = msg.headers
    if "Modified by McAfee" not in h.get("x-nai-header") or h.get("subject").strip() != "Delivery Status":
        return None
    rows: list[RecipientResult] = []
    for line in section(msg.body_text(), "--- The following addresses had delivery problems ---", max_lines=200):
        m = _MCAFEE_RCPT.match(line.strip())
        if m:
            rows.append(make_row(m.group(1), m.group(2)))
    if not rows:
        return None
    own = {r.recipient: r.diagnostic for r in rows}
    fill_from_dsn(rows, msg)
    for row in dsn_rows(msg):
        # The DSN's Diagnostic-Code carries the reply code the text line leaves out.
        if row.recipient in own and row.diagnostic:
            mine = next(r for r in rows if r.recipient == row.recipient)
            mine.diagnostic, mine.reply_code = row.diagnostic, row.reply_code or mine.reply_code
            mine.status = mine.status or row.status
    for row in rows:
        if _MCAFEE_USERUNKNOWN.search(row.diagnostic):
            row.reason = "userunknown"  # the appliance's own wording for a recipient its directory lacks
    set_stage(rows)
    return Detection(rows, "McAfee appliance Delivery Status")


# --- SurfControl E-mail Filter ----------------------------------------------------------------------------

_SURF_RCPT = re.compile(r"^Addressed To:\s*((?=\S*?\S@\S)\S++)\s*$")  # linear (no "@" backtracking)
_SURF_DIAG = re.compile(r"^[^\s@]+@\S+:\s*\[([0-9.]+)\],\s*(.+)$")


def detect_surfcontrol(msg: Message) -> Detection | None:
    if msg.headers.get("x-mailer").strip() != "SurfControl E-mail Filter":
        return None
    rows: list[RecipientResult] = []
    for line in section(msg.body_text(), "Your message could not be sent.", max_lines=200):
        m = _SURF_RCPT.match(line.strip())
        if m:
            rows.append(make_row(m.group(1)))
            continue
        m = _SURF_DIAG.match(line.strip())
        if m and rows:
            full = make_row(rows[-1].recipient, m.group(2), remote_mta=m.group(1))
            full.action = rows[-1].action
            rows[-1] = full
    rows = [r for r in rows if r.recipient]
    if not rows:
        return None
    fill_from_dsn(rows, msg)
    set_stage(rows)
    return Detection(rows, "SurfControl E-mail Filter report")


# --- amavisd-new ----------------------------------------------------------------------------------------


def detect_amavis(msg: Message) -> Detection | None:
    if not msg.headers.get("from").lstrip().startswith('"Content-filter at '):
        return None
    rows = dsn_rows(msg)  # its verdict in the reply is read by the vendor table (reasons/vendor.py)
    return Detection(rows, "amavisd-new content filter report") if rows else None


# --- Bigfoot ----------------------------------------------------------------------------------------------

_BF_COMMAND = re.compile(r"^>>>\s+([A-Z]{4})")


def detect_bigfoot(msg: Message) -> Detection | None:
    if "@bigfoot.com>" not in msg.headers.get("from") and not received_has(msg, ".bigfoot.com "):
        return None
    rows = dsn_rows(msg)
    text = msg.body_text()
    if not rows:
        parsed = parse_inline_fields(text)
        rows = parsed[1] if parsed else []
    if not rows:
        return None
    reply = ""
    for line in section(text, "Transcript of session follows", max_lines=100):
        if line.startswith("<<<"):
            reply = reply or line[3:].strip()
    for row in rows:
        row.remote_mta = first_host(row.remote_mta)
        if not row.diagnostic and reply:
            fill = make_row(row.recipient, reply)
            row.diagnostic, row.reply_code = fill.diagnostic, fill.reply_code
            row.status = row.status or fill.status
    return Detection(rows, "Bigfoot delivery failure")


DETECTORS = [
    ("imailserver", detect_imail),
    ("mxlogic", detect_mxlogic),
    ("interscanmss", detect_interscan),
    ("activehunter", detect_activehunter),
    ("fml", detect_fml),
    ("mailfoundry", detect_mailfoundry),
    ("mailmarshal", detect_mailmarshal),
    ("messagingserver", detect_messaging_server),
    ("messagelabs", detect_messagelabs),
    ("amavis", detect_amavis),
    ("mcafee", detect_mcafee),
    ("surfcontrol", detect_surfcontrol),
    ("bigfoot", detect_bigfoot),
]
