"""Amazon SES notifications (JSON via SNS or email feedback forwarding) and SES/WorkMail
reports that write the DSN fields into a text part instead of a delivery-status part."""

from __future__ import annotations

import json
import re

from ..dsn import dsn_part, parse_fields
from ..mime import Message
from ..model import OriginalMessage, RecipientResult
from ..reasons import vendor
from ..text import clean_address, find_reply_code, find_status, one_line, strip_diagnostic_type
from .base import Detection
from .providers_common import MAX_RECIPIENTS, dsn_rows, header_lower

MAX_JSON = 256 * 1024
_FOLD = re.compile(r"!\n ")  # some mail paths fold long JSON lines with "!" + newline + space


def detect_json(msg: Message) -> Detection | None:
    if "sns.amazonaws.com" not in header_lower(msg, "from") and "x-amz-sns-message-id" not in msg.headers:
        return None
    text = msg.body_text().lstrip()
    if not text.startswith("{") or "notificationType" not in text[:MAX_JSON]:
        return None
    payload = _load(text)
    if payload is None:
        return None
    return _from_payload(payload)


def _load(text: str) -> dict | None:
    body = text[:MAX_JSON].split("\n--\n", 1)[0]
    body = _FOLD.sub("", body)
    try:
        data = json.loads(body)
        if isinstance(data, dict) and isinstance(data.get("Message"), str):
            data = json.loads(data["Message"])  # the SNS envelope around the SES payload
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _from_payload(p: dict) -> Detection | None:
    kind = str(p.get("notificationType") or p.get("eventType") or "")
    rows: list[RecipientResult] = []
    detection_kind = None
    if kind == "Bounce":
        o = _dict(p.get("bounce"))
        mta = strip_diagnostic_type(str(o.get("reportingMTA", "")))
        pair = (str(o.get("bounceType", "")).lower(), str(o.get("bounceSubType", "")).lower())
        reason = vendor.SES_SUBTYPES.get(pair, "")
        for e in _list(o.get("bouncedRecipients")):
            e = _dict(e)
            diag = one_line(strip_diagnostic_type(str(e.get("diagnosticCode", ""))))
            status = find_status(str(e.get("status", ""))) or find_status(diag)
            action = str(e.get("action", "")).lower()
            if not action:
                action = "delayed" if pair[0] == "transient" and status.startswith("4") else "failed"
            rows.append(_row(e.get("emailAddress"), action, status, diag, mta, reason))
    elif kind == "Complaint":
        o = _dict(p.get("complaint"))
        detection_kind = "complaint"
        for e in _list(o.get("complainedRecipients")):
            rows.append(_row(_dict(e).get("emailAddress"), "", "", "", "", "feedback"))
    elif kind == "Delivery":
        o = _dict(p.get("delivery"))
        diag = one_line(str(o.get("smtpResponse", "")))
        mta = str(o.get("reportingMTA", ""))
        for e in _list(o.get("recipients")):
            rows.append(_row(e, "delivered", find_status(diag), diag, mta, "delivered"))
    else:
        return None
    rows = [r for r in rows if r.recipient][:MAX_RECIPIENTS]
    if not rows:
        return None
    return Detection(rows, f"Amazon SES notification: {kind}", kind=detection_kind, original=_original(p))


def _row(addr: object, action: str, status: str, diag: str, mta: str, reason: str) -> RecipientResult:
    return RecipientResult(
        recipient=clean_address(str(addr or "")),
        action=action,
        status=status,
        reply_code=find_reply_code(diag),
        diagnostic=diag,
        remote_mta=mta,
        reason=reason,
    )


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _original(p: dict) -> OriginalMessage | None:
    mail = _dict(p.get("mail"))
    if not mail:
        return None
    common = _dict(mail.get("commonHeaders"))
    headers = {
        str(_dict(h).get("name", "")).lower(): str(_dict(h).get("value", "")) for h in _list(mail.get("headers"))
    }
    return OriginalMessage(
        message_id=headers.get("message-id", "") or str(common.get("messageId", "")),
        subject=str(common.get("subject", "") or headers.get("subject", "")),
        from_=", ".join(str(x) for x in _list(common.get("from"))) or headers.get("from", ""),
        to=", ".join(str(x) for x in _list(common.get("to"))) or headers.get("to", ""),
    )


_TEXT_START = ("An error occurred while trying to deliver the mail", "The following message to <")


def detect_text(msg: Message) -> Detection | None:
    """SES / WorkMail: 'An error occurred while trying to deliver the mail ...' + DSN fields as text."""
    if not (
        "x-ses-outgoing" in msg.headers
        or "x-aws-outgoing" in msg.headers
        or "amazonses.com" in header_lower(msg, "from")
    ):
        return None
    if dsn_part(msg) is not None:
        return None  # a real delivery-status part: the RFC 3464 reader has it
    text = msg.body_text()
    start = min((i for i in (text.find(s) for s in _TEXT_START) if i >= 0), default=-1)
    if start < 0 or "Final-Recipient" not in text:
        return None
    report = parse_fields(text[start:])
    per = report.per_message
    rows: list[RecipientResult] = []
    for group in report.groups[:MAX_RECIPIENTS]:
        addr = clean_address(group.get("final-recipient", "") or group.get("original-recipient", ""))
        if not addr:
            continue
        diag = one_line(strip_diagnostic_type(group.get("diagnostic-code", "") or per.get("diagnostic-code", "")))
        status = find_status(group.get("status", "") or per.get("status", "")) or find_status(diag)
        action = (group.get("action", "") or per.get("action", "")).strip().lower().split(" ")[0]
        rows.append(_row(addr, action, status, diag, strip_diagnostic_type(group.get("remote-mta", "")), ""))
    if not rows:
        return None
    return Detection(rows, f"Amazon SES/WorkMail: {_TEXT_START[0]} ... (DSN fields as text)")


def detect_receiving(msg: Message) -> Detection | None:
    """SES inbound bounce actions: 'This message could not be delivered.' + a DSN part."""
    if "x-ses-outgoing" not in msg.headers:
        return None
    if not msg.body_text().lstrip().startswith("This message could not be delivered."):
        return None
    part = dsn_part(msg)
    if part is None or "amazonaws.com" not in part.text[:400]:
        return None
    rows = dsn_rows(msg)
    for row in rows:
        # The template is the whole text after the codes: '550 5.1.1 Mailbox does not exist'.
        words = row.diagnostic.split(" ", 2)[-1] if row.reply_code and row.status else row.diagnostic
        row.reason = vendor.SES_RECEIVING_TEMPLATES.get(words.strip(), "")
    return Detection(rows, "Amazon SES inbound bounce action") if rows else None
