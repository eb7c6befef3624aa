"""Per-message decisions of the milter, kept apart from the MTA plumbing in milter.py.

Pure functions over the classification and the envelope: which X-Bounce-* headers to add, which
recipients to delete or whether to discard the whole message, and the JSON log record. They are
tested without an MTA; milter.py only turns them into libmilter calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from . import logjson
from .classify import Classification

HEADER_VALUE_MAX = 200


def bare(addr: str) -> str:
    """`<a@b>` / `a@b` / `<>` -> `a@b` / `a@b` / ``."""
    if addr[:1] == "<" and addr[-1:] == ">":  # as the MTA passes it: one slice, no strip() of the whole
        return addr[1:-1].strip()
    addr = addr.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1]
    return addr.strip()


def one_line(value: str, limit: int = HEADER_VALUE_MAX) -> str:
    return " ".join(str(value).split())[:limit]


def bounce_headers(result: Classification, prefix: str) -> list[tuple[str, str]]:
    """The (name, value) header fields to add to a delivered copy; empty values are left out."""
    failed = [r for r in result.recipients if r.recipient]
    values = {
        "Kind": "unclassified" if result.error else result.kind,
        "Reason": ", ".join(dict.fromkeys(r.reason for r in failed if r.reason)),
        "Recipient": ", ".join(dict.fromkeys(r.recipient for r in failed)),
        "Status": ", ".join(dict.fromkeys(r.status for r in failed if r.status)),
    }
    out = []
    for suffix, value in values.items():
        value = one_line(value)
        if value:
            out.append((prefix + suffix, value))
    return out


def discard_plan(action: str, matched: Sequence[str], others: Sequence[str]) -> tuple[str, list[str], bool]:
    """(action to log, recipients to delete, discard the whole message).

    `discard` drops only our copy: with other recipients the message still goes to them, so just
    the bounce addresses are deleted; with none, the whole message is discarded.
    """
    if action != "discard":
        return action, [], False
    if others or not matched:
        return ("discard" if matched else "accept"), list(matched), False
    return "discard", [], True


_NO_FACTS: Mapping[str, Any] = {}


def ms3(ms: float) -> float:
    """Milliseconds to three decimals, as round(ms, 3) gives them for the log (round() of a float formats it with
    snprintf: ~2,500 instructions; this is ~300). Half a microsecond either way is not a fact anyone reads."""
    return int(ms * 1000 + 0.5) / 1000 if ms >= 0 else -int(-ms * 1000 + 0.5) / 1000


def log_message(
    logger: logging.Logger,
    level: int,
    result: Classification,
    action: str,
    *,
    t_eom: float,
    t0: float,
    queue_id: str,
    envelope_from: str,
    matches: Sequence[Any],
    message_id: str,
    size: int,
    truncated: bool,
    internal: bool,
    facts: Mapping[str, Any] = _NO_FACTS,
) -> None:
    """The one JSON line per handled message (`matches`: the verp.Match of each bounce recipient; `facts`: the
    other fields, in a mapping rather than as keywords: matching a dozen extra keywords against the parameters took
    ~9,000 instructions).

    The fields of `logjson.message_record`, in its order, built in one dict (`time`, `level`, `event` first when the
    line goes straight to our stream handler): the line took ~88,000 instructions when the facts were gathered in a
    dict, filtered into a second and copied into a third (bench/milter_parts.py)."""
    if not logger.isEnabledFor(level):
        return
    now = time.perf_counter()
    reason = ""
    hard = False
    recipients = []
    for r in result.recipients:
        recipients.append({"recipient": r.recipient, "reason": r.reason, "hard": r.hard, "status": r.status})
        if not reason and r.reason:
            reason = r.reason
        if r.hard:
            hard = True
    handler = logjson.direct(logger, level)
    out: dict[str, Any] = {"time": "", "level": "", "event": "message"} if handler is not None else {}
    out["queue_id"] = queue_id
    out["kind"] = "unclassified" if result.error else result.kind
    out["reason"] = reason
    out["recipients"] = recipients
    out["hard"] = hard
    out["action"] = action
    out["ms"] = ms3((now - t_eom) * 1000)
    out["total_ms"] = ms3((now - t0) * 1000)
    out["detector"] = result.detector
    out["envelope_from"] = envelope_from
    out["bounce_addresses"] = [m.address for m in matches]
    verps = [m.verp_recipient for m in matches if m.verp_recipient]
    if verps:
        out["verp_recipients"] = verps
    out["message_id"] = message_id
    out["size"] = size
    out["truncated"] = truncated
    out["internal"] = internal
    always, empty_types = logjson.ALWAYS, logjson.EMPTY_TYPES
    for key, value in facts.items():
        if (value is None or (not value and type(value) in empty_types)) and key not in always:
            out.pop(key, None)
            continue
        out[key] = value
    if result.error:
        out["error"] = result.error
    if handler is not None:
        out["time"], out["level"] = logjson.head(level)
        handler.put(level, "message", "", out)
    else:
        logjson.write(logger, level, "message", out)
