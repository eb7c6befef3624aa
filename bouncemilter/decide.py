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
ms3 = logjson.ms3  # (the milter rounds its classify_ms and store_ms as the line does)


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

    `logjson.message_record` makes the line; when it goes straight to our stream handler, into a dict that starts
    with `time`, `level` and `event` (no copy: the line took ~88,000 instructions when the facts were gathered in a
    dict, filtered into a second and copied into a third, bench/milter_parts.py)."""
    if not logger.isEnabledFor(level):
        return
    now = time.perf_counter()
    recipients = [
        {"recipient": r.recipient, "reason": r.reason, "hard": r.hard, "status": r.status} for r in result.recipients
    ]
    more = {
        "total_ms": ms3((now - t0) * 1000),
        "detector": result.detector,
        "envelope_from": envelope_from,
        "bounce_addresses": [m.address for m in matches],
        "verp_recipients": [m.verp_recipient for m in matches if m.verp_recipient],
        "message_id": message_id,
        "size": size,
        "truncated": truncated,
        "internal": internal,
        **facts,
    }
    if result.error:
        more["error"] = result.error
    kind = "unclassified" if result.error else result.kind
    handler = logjson.direct(logger, level)
    if handler is not None:
        out = {"time": "", "level": "", "event": "message"}
        logjson.message_record(queue_id, kind, recipients, action, (now - t_eom) * 1000, more, out)
        out["time"], out["level"] = logjson.head(level)
        handler.put(level, "message", "", out)
    else:
        out = logjson.message_record(queue_id, kind, recipients, action, (now - t_eom) * 1000, more)
        logjson.write(logger, level, "message", out)
