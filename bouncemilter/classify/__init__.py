"""Bounce classification: raw message bytes in, a typed `Classification` out. No I/O.

Order of decision, first match wins:
1. RFC 5965 feedback report, JMRP complaint     -> complaint (Feedback-Type: opt-out -> opt_out)
2. a non-standard format detector (formats/)    -> bounce / delay / delivered
3. an RFC 3464 / RFC 6533 delivery-status part  -> bounce / delay / delivered
4. a feedback report that is not RFC 5965 (X-ARF, complaint forwards, SpamCop reports, ARF
   fields in the text)                          -> complaint
5. a rejection sent as an MDN (RFC 5429 Sieve reject, Dovecot) -> bounce; then a read receipt (RFC 8098 MDN,
   Outlook "Read:"), a challenge-response / sender-verification /
   "whitelist me" request                       -> auto_reply
6. DSN fields written as text, then the generic text reader (only for mail that looks like
   a bounce: null-sender style From or a bounce subject)
7. an unsubscribe request recognisable alone    -> opt_out (Apple's X-Apple-Unsubscribe; optout.py)
8. RFC 3834 / non-standard auto-reply markers   -> auto_reply
9. anything else                                -> not_bounce
A bounce is never an auto-reply: bounces carry Auto-Submitted too, so markers are checked last.
Mail to a configured unsubscribe address gets one more rule after this order, from whoever knows the envelope
(`optout.for_unsubscribe_address`): what is still not_bounce is an opt-out.
"""

from __future__ import annotations

import re

from . import address, arf, autoreply, challenge, mdn_reject, optout, reasons, stage
from .dsn import original_recipients, parse_dsn, parse_inline_fields
from .formats import candidates
from .formats.base import Detection
from .formats.generic import detect as generic_detect
from .formats.generic import looks_like_bounce, report_text, still_trying, unmistakable_bounce
from .mime import Headers, Message, parse_message
from .model import (
    KINDS,
    Classification,
    Feedback,
    Kind,
    OriginalMessage,
    RecipientResult,
)
from .text import find_addresses, one_line

__all__ = [
    "KINDS",
    "Classification",
    "Feedback",
    "OriginalMessage",
    "RecipientResult",
    "classify",
    "classify_message",
]


def classify(raw: bytes) -> Classification:
    """Classify one raw message. Total: any bytes give a Classification, never an exception."""
    try:
        # every recipient of every detector through the one address check (address.py)
        return address.check_result(classify_message(parse_message(raw)))
    except Exception as exc:
        return Classification(
            kind="not_bounce", detector="error", evidence="classifier failed", error=f"{type(exc).__name__}: {exc}"
        )


def classify_message(msg: Message) -> Classification:
    complaint = arf.detect(msg)
    if complaint is not None:
        return _complaint(msg, complaint)

    for name, detect in candidates(msg):
        found = detect(msg)
        if found is not None and found.recipients:
            return _finish(msg, name, found)

    bounce_like = looks_like_bounce(msg)
    parsed = parse_dsn(msg, nested=bounce_like)
    if parsed is not None:
        report, rows = parsed
        rows = [r for r in rows if r.recipient]
        if rows:
            name = "rfc6533" if msg.find("message/global-delivery-status") else "rfc3464"
            _fill_from_text(msg, rows)
            evidence = f"{'message/global-delivery-status' if name == 'rfc6533' else 'message/delivery-status'} part"
            found = Detection(rows, evidence, reporting_mta=report.reporting_mta.split(" ", 1)[0])
            done = _finish(msg, name, found, report.envelope_id)
            done.truncated = report.truncated
            return done

    complaint = arf.detect_loose(msg)
    if complaint is not None:
        return _complaint(msg, complaint)
    rejection = mdn_reject.detect(msg)
    if rejection is not None:  # a Sieve / delivery-agent rejection sent as an MDN (RFC 5429)
        done = _finish(msg, "mdn-reject", rejection)
        for row in done.recipients:
            if row.reason in ("onhold", "undefined"):  # no words for a cause: the recipient's filter said no
                row.reason, row.reason_rule, row.hard = "filtered", mdn_reject.REASON_RULE, False
        return done
    receipt = challenge.read_receipt(msg)
    if receipt:
        return _not_a_failure(msg, "mdn", receipt)
    request = challenge.challenge(msg)
    if request:
        return _not_a_failure(msg, "challenge-response", request)

    if bounce_like:
        for part in msg.text_parts():
            inline = parse_inline_fields(part.text)
            if inline is not None:
                report, rows = inline
                return _finish(msg, "rfc3464-inline", Detection(rows, "DSN fields in a text part"), report.envelope_id)
        found = generic_detect(msg)
        if found is not None and found.recipients:
            return _finish(msg, "generic", found)
        # A bounce whose recipients cannot be read is still a bounce, never an auto-reply:
        # the milter can still record it (and name the recipient from a VERP address).
        evidence = unmistakable_bounce(msg)
        if evidence:
            kind: Kind = "delay" if still_trying(report_text(msg)) else "bounce"  # a warning names no failure
            return Classification(
                kind=kind, detector="unreadable-bounce", evidence=evidence, original=_original(msg, "")
            )

    request = optout.detect(msg)
    if request is not None:
        return request

    found_markers = autoreply.markers(msg)
    if autoreply.is_auto_reply(found_markers):
        sender = find_addresses(msg.headers.get("from"))
        row = RecipientResult(recipient=sender[0] if sender else "", reason="vacation")
        row.reason_rule = f"auto-reply:{found_markers[0]}"
        return Classification(
            kind="auto_reply",
            recipients=[row],
            detector="rfc3834",
            evidence=found_markers[0],
            original=_original(msg, ""),
            autoreply_markers=found_markers,
        )
    return Classification(kind="not_bounce", detector="", evidence="no bounce, complaint or auto-reply marker")


def _complaint(msg: Message, complaint: tuple[Feedback, list[RecipientResult], str]) -> Classification:
    feedback, rows, evidence = complaint
    if optout.is_opt_out_feedback(feedback):  # an unsubscribe request relayed by a provider, not a complaint
        return optout.from_feedback(feedback, rows, evidence, _original(msg, ""))
    for row in rows:
        row.reason_rule = f"feedback:{evidence}"
    return Classification(
        kind="complaint",
        recipients=rows,
        detector="arf",
        evidence=evidence,
        original=_original(msg, ""),
        feedback=feedback,
    )


def _not_a_failure(msg: Message, detector: str, marker: str) -> Classification:
    """Automated mail that says the address is alive (a challenge, a read receipt): an auto-reply."""
    markers = [marker, *autoreply.markers(msg)]
    sender = find_addresses(msg.headers.get("from"))
    row = RecipientResult(recipient=sender[0] if sender else "", reason="vacation", reason_rule=marker)
    return Classification(
        kind="auto_reply",
        recipients=[row],
        detector=detector,
        evidence=marker,
        original=_original(msg, ""),
        autoreply_markers=markers,
    )


def _finish(msg: Message, detector: str, found: Detection, envelope_id: str = "") -> Classification:
    reporter = _reporter(msg)
    for row in found.recipients:
        row.diagnostic, tagged = stage.split(one_line(row.diagnostic))
        row.smtp_command = row.smtp_command or tagged
        if not row.status or row.status.endswith(".0.0"):
            row.status = reasons.effective_status(row.status, row.diagnostic)
        if not row.action:
            row.action = _action_from_status(row.status) or "failed"
        if row.reason and row.reason not in reasons.WEAK and not row.status.startswith("2."):
            # The detector read the reason from the bounce's structure (decide's step 2, without the call).
            row.reason_rule = row.reason_rule or f"preset:{detector}"
            row.hard = reasons.is_hard(row.reason, row.status, row.reply_code, row.diagnostic)
            continue
        row.reason, row.reason_rule = reasons.decide(
            row.status,
            row.reply_code,
            row.diagnostic,
            action=row.action,
            remote_mta=row.remote_mta or found.reporting_mta,
            recipient=row.recipient,
            smtp_command=row.smtp_command,
            diagnostic_type=row.diagnostic_type,
            preset=row.reason,
            preset_rule=row.reason_rule,
            detector=detector,
            reporter=reporter,
        )
        row.hard = reasons.is_hard(row.reason, row.status, row.reply_code, row.diagnostic)
    if detector not in ("rfc3464", "rfc6533") and msg.find("message/delivery-status", "message/global-delivery-status"):
        originals = original_recipients(msg)  # a format detector's rows: the report's Original-Recipient
        for row in found.recipients:
            if not row.original_recipient and originals.get(row.recipient, row.recipient) != row.recipient:
                row.original_recipient = originals[row.recipient]
    kind = found.kind or _kind_from_actions(found.recipients)
    original = found.original or _original(msg, envelope_id)
    # positional (kind, recipients, detector, evidence, original): keywords cost ~2,000 instructions more
    return Classification(kind, found.recipients, detector, found.evidence, original)


def _reporter(msg: Message) -> str:
    """The provider that wrote the bounce, by its sender's domain (MAILER-DAEMON@aol.com -> aol.com),
    when it is one whose own sentences reasons/vendor.py knows."""
    return reasons.vendor.reporter(msg.headers.get("from"))


def _action_from_status(status: str) -> str:
    return {"2": "delivered", "4": "delayed", "5": "failed"}.get(status[:1], "")


def _kind_from_actions(rows: list[RecipientResult]) -> Kind:
    actions = {r.action for r in rows}
    if "failed" in actions:
        return "bounce"
    if "delayed" in actions:
        return "delay"
    if actions & {"delivered", "relayed", "expanded"}:
        return "delivered"
    return "bounce"


def _fill_from_text(msg: Message, rows: list[RecipientResult]) -> None:
    """Some MTAs leave Diagnostic-Code out of the DSN and say it only in the text part."""
    if all(r.diagnostic for r in rows):
        return
    text = msg.body_text()
    if not text:
        return
    from .formats.generic import diagnostic_for

    for row in rows:
        if not row.diagnostic:
            row.diagnostic = diagnostic_for(text, row.recipient)


_MESSAGE_ID_LINE = re.compile(r"^Message-I[Dd]:\s*(<[^>\s]+>)", re.M)
_SUBJECT_LINE = re.compile(r"^Subject:\s*(.*)$", re.M)


def _original(msg: Message, envelope_id: str) -> OriginalMessage | None:
    headers: Headers | None = msg.original_headers()
    if headers is not None and len(headers):
        # positional (message_id, subject, from_, to, envelope_id): keywords cost ~2,000 instructions more
        return OriginalMessage(
            headers.get("message-id").strip(),
            headers.decoded("subject"),
            headers.decoded("from"),
            headers.decoded("to"),
            envelope_id,
        )
    # Non-MIME bounces quote the original's headers inside the text.
    text = msg.body_text()
    m = _MESSAGE_ID_LINE.search(text)
    if m or envelope_id:
        subject = _SUBJECT_LINE.search(text[m.start() - 4000 if m else 0 :]) if m else None
        return OriginalMessage(
            message_id=m.group(1) if m else "",
            subject=subject.group(1).strip() if subject else "",
            envelope_id=envelope_id,
        )
    return None
