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

import orjson

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
        return dumps(out)


# What json.dumps(ensure_ascii=False, default=str) gave, at a tenth of the instructions (bench/milter_parts.py:
# the message line's encoding took 79,000 with the json module, 10,000 with orjson): datetimes and dataclasses
# still go through str() as before, dict keys that are not strings are written as strings.
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
# The fallback for what orjson refuses (a lone surrogate from a header that was not UTF-8, an int past 64 bits).
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":"))


def dumps(obj: dict[str, Any]) -> str:
    """One physical line no matter what the values contain (JSON escapes newlines)."""
    try:
        return orjson.dumps(obj, default=str, option=_ORJSON_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError
        return _ENCODER.encode(obj)


class JsonStreamHandler(logging.StreamHandler):
    """The stderr handler of `setup()`. `event()` hands it a line's fields directly: the logging module's
    LogRecord, filters and formatter cost a line as much again as the encoding (bench/milter_parts.py)."""

    def line(self, level: int, name: str, msg: str, fields: Mapping[str, Any]) -> None:
        out: dict[str, Any] = {"time": _iso(time.time()), "level": _LEVEL_NAMES[level], "event": name, **fields}
        if msg:
            out["msg"] = msg
        self.put(level, name, msg, out)

    def put(self, level: int, name: str, msg: str, out: dict[str, Any]) -> None:
        """Write a line whose fields are all there, `time`, `level` and `event` first (see `direct()`)."""
        try:
            data: bytes | None = orjson.dumps(out, default=str, option=_ORJSON_LINE)
        except TypeError:  # orjson.JSONEncodeError: the text layer writes what orjson refused, as before
            data = None
        with self.lock:  # type: ignore[union-attr]  # (created by Handler.__init__)
            try:
                stream = self.stream
                raw = getattr(stream, "buffer", None)
                if data is not None and raw is not None:
                    # UTF-8 bytes as they are; the text layer holds nothing (every line is flushed)
                    raw.write(data)
                    raw.flush()
                else:
                    stream.write(data.decode() if data is not None else _ENCODER.encode(out) + "\n")
                    stream.flush()
            except Exception:
                self.handleError(_record(level, name, msg))


_ORJSON_LINE = _ORJSON_OPTIONS | orjson.OPT_APPEND_NEWLINE
_LEVEL_NAMES = {level: logging.getLevelName(level).lower() for level in (10, 20, 30, 40, 50)}


def _record(level: int, name: str, msg: str) -> logging.LogRecord:
    """A LogRecord for handleError's report of a line that could not be written."""
    return logging.LogRecord(LOGGER_NAME, level, "", 0, msg or name, (), None)


_second: tuple[int, str] = (-1, "")  # the last whole second formatted, reused by the lines within it


def _iso(ts: float) -> str:
    global _second
    whole = int(ts)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return _second[1] + _MILLIS[int((ts - whole) * 1000)]


_MILLIS = [f".{n:03d}Z" for n in range(1001)]  # (1001: a float a hair below the next second)


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
        handler = JsonStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    if target == "syslog" and not os.path.exists(SYSLOG_SOCKET):
        event(logger, logging.WARNING, "log_fallback", f"{SYSLOG_SOCKET} does not exist; logging to stderr")
    return logger


def event(logger: logging.Logger, level: int, name: str, msg: str = "", exc_info: bool = False, **fields: Any) -> None:
    """Log one structured line: `event` names what happened, fields carry the facts."""
    if logger.isEnabledFor(level):
        write(logger, level, name, fields, msg, exc_info)


def write(
    logger: logging.Logger, level: int, name: str, fields: Mapping[str, Any], msg: str = "", exc_info: bool = False
) -> None:
    """`event()` with the fields as a mapping (the caller checked `logger.isEnabledFor(level)`)."""
    handler = None if exc_info else direct(logger, level)
    if handler is not None:
        handler.line(level, name, msg, fields)
    else:
        logger.log(level, msg, extra={"event": name, "fields": fields}, exc_info=exc_info)


def direct(logger: logging.Logger, level: int) -> JsonStreamHandler | None:
    """Our own stream handler when a line at `level` goes to it alone and nothing else would see the record: the
    line is then written without a LogRecord (`JsonStreamHandler.line`, or `.put` for a caller that builds the whole
    line itself, as the milter's message line does); None when the line must go through the logging module."""
    handlers = logger.handlers
    if (
        len(handlers) == 1
        and type(handlers[0]) is JsonStreamHandler
        and level in _LEVEL_NAMES
        and not logger.filters
        and not handlers[0].filters
        and level >= handlers[0].level
    ):
        return handlers[0]
    return None


def head(level: int) -> tuple[str, str]:
    """(`time`, `level`) of a line written now, for `JsonStreamHandler.put`."""
    return _iso(time.time()), _LEVEL_NAMES[level]


def message_record(
    queue_id: str,
    kind: str,
    recipients: list[dict[str, Any]],
    action: str,
    ms: float,
    more: Mapping[str, Any],
    out: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The per-message fields: kind, first reason, any hard failure, what was done, milter latency.

    These (and ALWAYS) are always there; of the other facts (`more`) an empty one ("", None, [] or {}) is left
    out: a shorter line to write and to read. False and 0 are facts and stay. `out`: a dict to add them to
    (the milter's line starts with `time`, `level` and `event`); a new one by default."""
    reason = ""
    hard = False
    for r in recipients:
        if not reason and r["reason"]:
            reason = r["reason"]
        if r["hard"]:
            hard = True
    if out is None:
        out = {}
    out["queue_id"] = queue_id
    out["kind"] = kind
    out["reason"] = reason
    out["recipients"] = recipients
    out["hard"] = hard
    out["action"] = action
    out["ms"] = ms3(ms)
    for key, value in more.items():
        if (value is None or (not value and type(value) in EMPTY_TYPES)) and key not in ALWAYS:
            continue
        out[key] = value
    return out


def ms3(ms: float) -> float:
    """Milliseconds to three decimals, as round(ms, 3) gives them for the log (round() of a float formats it with
    snprintf: ~2,500 instructions; this is ~300). Half a microsecond either way is not a fact anyone reads."""
    return int(ms * 1000 + 0.5) / 1000 if ms >= 0 else -int(-ms * 1000 + 0.5) / 1000


# written even when empty ("verified": null says "not checked")
ALWAYS = frozenset({"total_ms", "detector", "envelope_from", "bounce_addresses", "message_id", "verified"})
EMPTY_TYPES = (str, list, dict, tuple)
