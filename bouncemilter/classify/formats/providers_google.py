"""Gmail and Google Groups bounces sent by mailer-daemon@googlemail.com.

Three shapes share the sender:
- the older text-only Gmail report: "Delivery to the following recipient failed permanently:"
  / "has been delayed:", the address indented on its own line, then "Technical details of
  permanent failure:" and often "The error that the other server returned was: <reply>";
- the newer "** Address not found **" style, normally a multipart/report that the RFC 3464
  reader handles; taken here only when its delivery-status part names nobody;
- Google Groups' "the group doesn't exist or you may not post" notice (in the sender's
  language), which names the group only in X-Failed-Recipients.
"""

from __future__ import annotations

import re

from ..mime import Message
from ..model import RecipientResult
from ..reasons import vendor
from ..text import find_addresses, one_line
from .base import Detection
from .providers_common import MAX_RECIPIENTS, cut, dsn_rows, header_lower, make_row

_ORIGINAL = ("----- Original message -----", "----- Message header follows -----")
_OLD_MARKER = "Delivery to the following recipient"
_INDENTED_ADDR = re.compile(r"^[ \t]+([^\s@]+@[^\s@]+)\s*$", re.M)
_DETAILS = re.compile(r"Technical details of (?:permanent|temporary) failure:\s*", re.I)
_RETURNED = re.compile(r"The error that the other server returned was:\s*", re.I)
_RESPONSE = re.compile(r"The response (?:from the remote server )?was:\s*", re.I)
_REMOTE = re.compile(r"\sby\s+([\w\-]+(?:\.[\w\-]+)+)\.?\s+\[[0-9.]+\]")
_BOILERPLATE = re.compile(
    # "{0,500}": "[^.]*?" scanned to the end of the text after every repetition of the phrase (quadratic)
    r"Google tried to deliver your message, but it was rejected by the [^.]{0,500}?(?:\[[0-9.]+\])?\.\s*"
    r"|We recommend contacting the other email provider for further information about the cause of this error\.\s*"
    r"|Learn more at https?://\S+\s*",
    re.I,
)
_STATE = re.compile(r"\(state (\d{1,2})\)\.?\s*$")  # Gmail's "(state N)": see vendor.GMAIL_STATES
# A specific status in the reply outranks the state's reason (it still gives the stage).
_SPECIFIC_STATUS = re.compile(r"\b[45]\.[1-7]\.[1-9]\b")
_HELP_TOPIC = re.compile(r"support\.google\.com/mail/\?p=(\w+)", re.I)


def _from_google(msg: Message) -> bool:
    sender = header_lower(msg, "from")
    return "mailer-daemon@googlemail.com" in sender or "mailer-daemon@google.com" in sender


def detect(msg: Message) -> Detection | None:
    if not _from_google(msg):
        return None
    text = cut(msg.body_text(), *_ORIGINAL)
    failed = find_addresses(msg.headers.get("x-failed-recipients"))[:MAX_RECIPIENTS]
    if _OLD_MARKER in text:
        return _old_style(text, failed)
    if failed and ("groups.google" in text or "Google Groups" in text):
        return _groups(text, failed)
    if dsn_rows(msg) or not failed:
        return None  # the RFC 3464 reader has it
    return _new_style(text, failed)


def _old_style(text: str, failed: list[str]) -> Detection | None:
    start = text.find(_OLD_MARKER)
    body = text[start:]
    action = "delayed" if "has been delayed" in body[:200] else "failed"
    details = _DETAILS.search(body)
    listed = body[: details.start()] if details else body
    addrs = [a.lower() for a in _INDENTED_ADDR.findall(listed)][:MAX_RECIPIENTS] or failed
    if not addrs:
        return None
    diagnostic, remote, reason, stage = "", "", "", ""
    if details:
        rest = body[details.end() :]
        remote_m = _REMOTE.search(rest)
        remote = remote_m.group(1) if remote_m else ""
        returned = _RETURNED.search(rest)
        if returned:
            diagnostic = rest[returned.end() :].split("\n\n", 1)[0]
        else:
            diagnostic = _BOILERPLATE.sub("", rest.split("\n\n", 1)[0])
        diagnostic = one_line(diagnostic).rstrip(".").strip() if returned else one_line(diagnostic)
        state = _STATE.search(diagnostic)
        if state and state.group(1) in vendor.GMAIL_STATES:
            stage, reason = vendor.GMAIL_STATES[state.group(1)]
            if _SPECIFIC_STATUS.search(diagnostic):
                reason = ""
    rows = [make_row(a, diagnostic, action=action, remote_mta=remote, reason=reason) for a in addrs]
    for row in rows:
        row.smtp_command = stage
        if reason and state:
            row.reason_rule = f"preset:google/(state {state.group(1)})"
    _dedupe_reply(rows)
    return Detection(rows, f"Gmail: {_OLD_MARKER} ...")


def _dedupe_reply(rows: list[RecipientResult]) -> None:
    # Gmail repeats the reply code ("554 554 5.7.0 ..."); keep the server's words once.
    for row in rows:
        code = row.reply_code
        if code and row.diagnostic.startswith(f"{code} {code} "):
            row.diagnostic = row.diagnostic[len(code) + 1 :]


def _groups(text: str, failed: list[str]) -> Detection:
    # The notice explains in prose after a greeting line; those paragraphs are the diagnostic.
    paragraphs = [p for p in text.strip().split("\n\n") if p.strip()][:4]
    if paragraphs and len(paragraphs[0]) < 100 and "@" in paragraphs[0]:
        paragraphs = paragraphs[1:]
    paragraphs = paragraphs[:2]
    diagnostic = one_line(" ".join(paragraphs))
    rows = [make_row(a, diagnostic, action="failed", reason="rejected") for a in failed]
    for row in rows:
        row.status = row.reply_code = ""  # prose, not a server reply
    return Detection(rows, "Google Groups: posting to the group refused")


def _new_style(text: str, failed: list[str]) -> Detection:
    response = _RESPONSE.search(text)
    diagnostic = one_line(text[response.end() :].split("\n\n", 1)[0]) if response else ""
    topic = _HELP_TOPIC.search(text)
    reason = vendor.GOOGLE_HELP_TOPICS.get(topic.group(1).lower(), "") if topic else ""
    action = "delayed" if "Delivery incomplete" in text[:300] else "failed"
    rows = [make_row(a, diagnostic, action=action, reason=reason) for a in failed]
    return Detection(rows, "Gmail: ** ... ** notice without delivery-status fields")
