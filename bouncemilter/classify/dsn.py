"""RFC 3464 / RFC 6533 delivery status notifications, including the usual breakage.

Real DSNs bend the RFC: groups without blank lines between them, status only inside the
diagnostic, `Final-Recipient: rfc822; <addr>` with brackets, folded values, the fields sent as
text/plain instead of message/delivery-status. `parse_fields` reads a block of fields the way
a person would: a new group starts at each recipient field, whatever the blank lines say.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from .mime import Message, Part, decode_words, normalise_newlines
from .model import RecipientResult
from .reasons.vendor import POWERMTA_CATEGORIES
from .text import clean_address, find_reply_code, find_status, one_line, strip_diagnostic_type

DSN_PART_TYPES = ("message/delivery-status", "message/global-delivery-status")
RECIPIENT_FIELDS = ("final-recipient", "original-recipient", "x-actual-recipient")
_PER_MESSAGE = ("reporting-mta", "original-envelope-id", "arrival-date", "received-from-mta", "x-postfix-queue-id")
_ACTIONS = {
    "failed": "failed",
    "failure": "failed",
    "fail": "failed",
    "delayed": "delayed",
    "delay": "delayed",
    "delivered": "delivered",
    "relayed": "relayed",
    "expanded": "expanded",
    "deliverable": "delivered",
}


@dataclass(slots=True)
class DSNReport:
    per_message: dict[str, str] = field(default_factory=dict)
    groups: list[dict[str, str]] = field(default_factory=list)
    truncated: bool = False  # the part was longer than what is read (mime.MAX_TEXT): more groups followed

    @property
    def envelope_id(self) -> str:
        return self.per_message.get("original-envelope-id", "")

    @property
    def reporting_mta(self) -> str:
        return strip_diagnostic_type(self.per_message.get("reporting-mta", ""))


def parse_fields(text: str) -> DSNReport:
    """Read per-message and per-recipient field groups from a delivery-status body."""
    report = DSNReport()
    current: dict[str, str] | None = None
    last_key = ""
    for line in text.split("\n"):
        # A field is "Name: value" (a name of letters, digits and '-' starting with a letter, then blanks), read by a
        # partition and a memo of the names: a regex match of the line cost ~2,500 instructions (it reads every
        # character), the partition a third of that.
        head, sep, value = line.partition(":")
        key = _HEAD_KEYS.get(head) if sep else ""
        if key is None:
            key = _head_key(head)
        if not key:  # a blank line, a continuation line or no field (a field line is never blank)
            if line[:1] in (" ", "\t") and last_key and line.strip():
                target = current if current is not None and last_key in current else report.per_message
                if last_key in target:
                    target[last_key] += " " + line.strip()
                continue
            last_key = ""
            continue
        value = value.strip()
        last_key = key
        if key in RECIPIENT_FIELDS:
            # Original-Recipient may precede or follow Final-Recipient in the same group (Postfix
            # writes it after); it opens a new group only once the current one has its fields.
            complete = bool(current) and "final-recipient" in current and ("action" in current or "status" in current)
            if current is None or key in current or (key == "original-recipient" and complete):
                current = {}
                report.groups.append(current)
            current[key] = value
        elif current is not None and key not in _PER_MESSAGE:
            if key not in current:
                current[key] = value
        else:
            report.per_message.setdefault(key, value)
    return report


# What goes before a line's first ':' -> the field name it is, lower-cased ("" when it is none). Bounded: a message
# may carry any number of strange lines.
_HEAD_KEYS: dict[str, str] = {}
_HEAD_KEYS_MAX = 4096
_HEAD_KEY_LEN = 64  # longer than any field name a report uses (the text before a colon can be a whole line)
_FIELD_HEAD = re.compile(r"([A-Za-z][A-Za-z0-9\-]*)[ \t]*")


def _head_key(head: str) -> str:
    m = _FIELD_HEAD.fullmatch(head)
    key = m.group(1).lower() if m else ""
    if key and len(head) <= _HEAD_KEY_LEN and len(_HEAD_KEYS) < _HEAD_KEYS_MAX:  # field names, not free text
        _HEAD_KEYS[head] = key
    return key


def dsn_part(msg: Message, nested: bool = False) -> Part | None:
    """The delivery-status part of the outer report; with `nested`, also one inside an attached
    message (gateways that wrap the DSN they received). A person forwarding a bounce is not one."""
    best: Part | None = None
    for part in msg.parts:
        if part.ctype in DSN_PART_TYPES:
            if part.depth == 0:
                return part
            best = best or part
    return best if nested else None


def dsn_text(part: Part) -> str:
    # Headers of a delivery-status part are part of its fields when a broken MTA sends the
    # per-message group without the blank line that ends the MIME part headers.
    body = part.text
    if part.ctype == "message/global-delivery-status" or "=?" in body:
        body = "\n".join(decode_words(line) for line in body.split("\n"))
    if part.headers.get("reporting-mta") or part.headers.get("final-recipient"):
        head = "\n".join(f"{k}: {v}" for k, v in part.headers.items if k.lower() not in ("content-type",))
        body = head + "\n" + body
    return body


def recipients_from_report(report: DSNReport) -> list[RecipientResult]:
    out: list[RecipientResult] = []
    for group in report.groups:
        addr = (
            clean_address(group.get("final-recipient", ""))
            or clean_address(group.get("x-actual-recipient", ""))
            or clean_address(group.get("original-recipient", ""))
        )
        if addr and "." not in addr.rpartition("@")[2]:
            # A Final-Recipient in an internal, unroutable domain (a mailstore's own name) says
            # less than the address the sender used.
            addr = clean_address(group.get("original-recipient", "")) or addr
        original = clean_address(group.get("original-recipient", ""))
        raw_diagnostic = group.get("diagnostic-code", "")
        diagnostic = one_line(strip_diagnostic_type(raw_diagnostic))
        status = find_status(group.get("status", "")) or find_status(diagnostic)
        written = group.get("action", "")
        action = _ACTIONS.get(written) or _ACTIONS.get(written.strip().lower().split(" ")[0].strip("()"), "")
        if not action and status:
            action = {"2": "delivered", "4": "delayed", "5": "failed"}[status[0]]
        # Positional, in the field order (tests/test_model.py holds it): keyword arguments cost a DSN row ~4,000
        # instructions more.
        out.append(
            RecipientResult(
                addr,  # recipient
                action,
                status,
                find_reply_code(diagnostic),  # reply_code
                diagnostic,
                _host(group.get("remote-mta", "")),  # remote_mta
                _powermta(group),  # reason
                False,  # hard
                "",  # smtp_command
                diagnostic_type(raw_diagnostic),
                "",  # reason_rule
                original if original != addr else "",  # original_recipient
            )
        )
    return _merge_duplicates(out)


def _powermta(group: dict[str, str]) -> str:
    """PowerMTA's own category of the failure (a field it adds to each recipient group)."""
    category = group.get("x-powermta-bouncecategory")
    return POWERMTA_CATEGORIES.get(category.strip().lower(), "") if category else ""


def diagnostic_type(value: str) -> str:
    """'smtp; 550 ...' -> 'smtp', 'X-Unix; 127' -> 'x-unix' ("" when the value names no type)."""
    head, sep, _ = value.partition(";")
    head = head.strip()
    if sep and 0 < len(head) <= 40 and " " not in head:
        return head.lower()
    return ""


@lru_cache(maxsize=1024)  # the same remote MTAs come back bounce after bounce
def _host(value: str) -> str:
    """'dns; mx.example.org (192.0.2.1, the server for the domain.)' -> 'mx.example.org'."""
    value = strip_diagnostic_type(value).strip()
    return value.split(" ", 1)[0].strip("[]() ") if value else ""


def _merge_duplicates(rows: list[RecipientResult]) -> list[RecipientResult]:
    """One row per address: later groups for the same address fill what earlier ones lack."""
    by_addr: dict[str, RecipientResult] = {}
    ordered: list[RecipientResult] = []
    for row in rows:
        prev = by_addr.get(row.recipient)
        if prev is None or not row.recipient:
            by_addr[row.recipient] = row
            ordered.append(row)
            continue
        for name in ("action", "status", "reply_code", "diagnostic", "remote_mta", "diagnostic_type", "reason"):
            if not getattr(prev, name):
                setattr(prev, name, getattr(row, name))
    return ordered


def parse_dsn(msg: Message, nested: bool = False) -> tuple[DSNReport, list[RecipientResult]] | None:
    """The DSN fields of `msg`, or None when it has no delivery-status part (see dsn_part)."""
    part = dsn_part(msg, nested)
    if part is None:
        return None
    report = parse_fields(dsn_text(part))
    if part.cut:
        # the text stops somewhere inside a group: keep the groups before it, and say so
        report.truncated = True
        if len(report.groups) > 1:
            report.groups.pop()
        return report, recipients_from_report(report)
    rows = recipients_from_report(report)
    # what original_recipients() would read from the same part, taken now (callers change the rows they get):
    # it then need not parse the part a second time (~150,000 instructions for a Postfix DSN)
    msg.memo["dsn-originals"] = (part, _originals(rows))
    return report, rows


def parse_inline_fields(text: str) -> tuple[DSNReport, list[RecipientResult]] | None:
    """DSN fields written into a text part (broken MTAs); None when there are none."""
    if "Final-Recipient" not in text and "final-recipient" not in text.lower():
        return None
    report = parse_fields(normalise_newlines(text.encode("utf-8", "replace")).decode("utf-8", "replace"))
    rows = [r for r in recipients_from_report(report) if r.recipient]
    return (report, rows) if rows else None


def original_recipients(msg: Message) -> dict[str, str]:
    """Final recipient -> the address the sender used, from the delivery-status part's Original-Recipient fields
    (for the format detectors, which read the failure from the text and the recipients from wherever they are).
    Empty when the report has no such field that differs."""
    part = dsn_part(msg, False)
    if part is None or "original-recipient" not in part.text.lower():
        return {}
    seen = msg.memo.get("dsn-originals")
    if seen is not None and seen[0] is part:  # type: ignore[index]
        return dict(seen[1])  # type: ignore[index]
    return _originals(recipients_from_report(parse_fields(dsn_text(part))))


def _originals(rows: list[RecipientResult]) -> dict[str, str]:
    return {r.recipient: r.original_recipient for r in rows if r.original_recipient}
