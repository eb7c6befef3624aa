"""JSON log lines for the milter: one object per line, to stderr or syslog.

Every line is a JSON object with at least `time`, `level` and `event`, so a log shipper or a
one-line `jq` filter can alert on it. Per handled message the milter writes one `"event":
"message"` line (see `message_record`); operational events (start, stop, store errors) use
other `event` names.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

LOGGER_NAME = "bouncemilter"
SYSLOG_SOCKET = "/dev/log"


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line; structured fields come from `extra={"fields": {...}}`."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        out: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", "log"),
        }
        if isinstance(fields, Mapping):
            out.update(fields)
        msg = record.getMessage()
        if msg:
            out["msg"] = msg
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        # One physical line no matter what the values contain (json escapes newlines).
        return _ENCODER.encode(out)


# One encoder for every line: json.dumps() with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)
_second: tuple[int, str] = (-1, "")  # the last whole second formatted, reused by the lines within it


def _iso(ts: float) -> str:
    global _second
    whole = int(ts)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int(ts % 1 * 1000):03d}Z"


def setup(target: str = "stderr", level: str = "info") -> logging.Logger:
    """Point the bouncemilter logger at stderr, syslog (facility mail) or nowhere."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = False
    # The lines carry their own fields: skip what the logging module would otherwise work out for every
    # record (the caller's file and line by walking the stack, the multiprocessing process name), as the
    # logging documentation's "Optimization" section suggests for code that does not use it.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logMultiprocessing = False
    logging.logThreads = False
    logger.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    handler: logging.Handler
    if target == "none":
        handler = logging.NullHandler()
    elif target == "syslog" and os.path.exists(SYSLOG_SOCKET):
        handler = logging.handlers.SysLogHandler(
            address=SYSLOG_SOCKET, facility=logging.handlers.SysLogHandler.LOG_MAIL
        )
        handler.ident = "bouncemilter: "
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    if target == "syslog" and not os.path.exists(SYSLOG_SOCKET):
        event(logger, logging.WARNING, "log_fallback", f"{SYSLOG_SOCKET} does not exist; logging to stderr")
    return logger


def event(logger: logging.Logger, level: int, name: str, msg: str = "", exc_info: bool = False, **fields: Any) -> None:
    """Log one structured line: `event` names what happened, fields carry the facts."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"event": name, "fields": fields}, exc_info=exc_info)


def message_record(
    *,
    queue_id: str,
    kind: str,
    recipients: list[dict[str, Any]],
    action: str,
    ms: float,
    **more: Any,
) -> dict[str, Any]:
    """The per-message fields: kind, first reason, any hard failure, what was done, milter latency."""
    reasons = [r["reason"] for r in recipients if r.get("reason")]
    return {
        "queue_id": queue_id,
        "kind": kind,
        "reason": reasons[0] if reasons else "",
        "recipients": recipients,
        "hard": any(bool(r.get("hard")) for r in recipients),
        "action": action,
        "ms": round(ms, 3),
        **more,
    }
