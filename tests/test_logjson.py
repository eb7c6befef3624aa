"""The JSON log lines: the direct path (no LogRecord) writes what the logging path writes."""

from __future__ import annotations

import io
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bouncemilter import logjson


@pytest.fixture
def logger():  # type: ignore[no-untyped-def]
    lg = logjson.setup("stderr", "debug")
    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="backslashreplace", write_through=True)
    lg.handlers[0].setStream(stream)
    yield lg
    logjson.setup("stderr", "info")


def lines(lg: logging.Logger) -> list[dict]:
    raw = lg.handlers[0].stream.buffer.getvalue().decode()
    return [json.loads(x) for x in raw.splitlines()]


def test_direct_and_logging_paths_write_the_same_fields(logger) -> None:  # type: ignore[no-untyped-def]
    fields = {
        "queue_id": "Q1",
        "n": 3,
        "ok": False,
        "none": None,
        "list": ["a", "é"],
        "path": Path("/x"),
        "when": datetime(2026, 1, 2, tzinfo=UTC),
    }
    logjson.event(logger, logging.INFO, "message", "hello", **fields)
    # a filter on the logger sends the line through the logging module (LogRecord, JsonFormatter)
    logger.addFilter(lambda record: True)
    try:
        logjson.event(logger, logging.INFO, "message", "hello", **fields)
    finally:
        logger.filters.clear()
    direct, via_logging = lines(logger)
    assert direct.pop("time")[:4] == via_logging.pop("time")[:4] == str(datetime.now(UTC).year)
    assert (
        direct
        == via_logging
        == {
            "level": "info",
            "event": "message",
            "queue_id": "Q1",
            "n": 3,
            "ok": False,
            "none": None,
            "list": ["a", "é"],
            "path": "/x",
            "when": "2026-01-02 00:00:00+00:00",  # str(), as the json module's default=str gave
            "msg": "hello",
        }
    )


def test_what_orjson_refuses_is_still_written(logger) -> None:  # type: ignore[no-untyped-def]
    logjson.event(logger, logging.WARNING, "odd", surrogate="x\udcff", big=2**70, when=datetime(2026, 1, 2, tzinfo=UTC))
    (line,) = lines(logger)
    assert line["surrogate"] == "x\udcff" and line["big"] == 2**70
    assert line["when"] == "2026-01-02 00:00:00+00:00"  # str(), as the json module's default=str gave
    assert line["level"] == "warning"


def test_time_is_iso_utc_with_milliseconds(logger) -> None:  # type: ignore[no-untyped-def]
    logjson.event(logger, logging.INFO, "tick")
    (line,) = lines(logger)
    stamp = datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
    assert logjson._iso(1_700_000_000.999_9) == "2023-11-14T22:13:20.999Z"
    assert logjson._iso(1_700_000_001.0) == "2023-11-14T22:13:21.000Z"


def test_message_record_keeps_documented_fields_and_leaves_out_empty_ones() -> None:
    rcpts = [
        {"recipient": "a@example.org", "reason": "", "hard": False, "status": "4.2.2"},
        {"recipient": "b@example.org", "reason": "userunknown", "hard": True, "status": "5.1.1"},
    ]
    more = {
        "total_ms": 0.5,
        "detector": "",
        "envelope_from": "",
        "bounce_addresses": [],
        "message_id": "",
        "verified": None,
        "store_error": "",
        "verification": "",
        "verp_recipients": [],
        "notes": {},
        "stored": False,
        "size": 0,
        "duplicate_of": None,
    }
    rec = logjson.message_record("Q9", "bounce", rcpts, "accept", 1.23456, more)
    assert rec["reason"] == "userunknown" and rec["hard"] is True and rec["ms"] == 1.235
    for key in (
        "queue_id",
        "kind",
        "recipients",
        "action",
        "total_ms",
        "detector",
        "envelope_from",
        "bounce_addresses",
        "message_id",
        "verified",
        "stored",
        "size",
    ):
        assert key in rec, key
    for key in ("store_error", "verification", "verp_recipients", "notes", "duplicate_of"):
        assert key not in rec, key


def test_a_line_that_cannot_be_written_does_not_raise(logger, capsys) -> None:  # type: ignore[no-untyped-def]
    logger.handlers[0].stream.close()
    raise_exceptions, logging.raiseExceptions = logging.raiseExceptions, False
    try:
        logjson.event(logger, logging.ERROR, "lost")  # handleError: silent without raiseExceptions
    finally:
        logging.raiseExceptions = raise_exceptions
    assert sys.stderr is not None


def test_message_line_is_message_record_on_both_paths(logger) -> None:  # type: ignore[no-untyped-def]
    from bouncemilter.classify import Classification, RecipientResult
    from bouncemilter.decide import log_message
    from bouncemilter.verp import Match

    result = Classification(
        kind="bounce",
        detector="postfix",
        recipients=[
            RecipientResult(recipient="a@example.org", status="4.2.2"),
            RecipientResult(recipient="b@example.org", reason="userunknown", hard=True, status="5.1.1"),
        ],
    )
    matches = [Match("bounces@sink.test", "@sink.test", ""), Match("b+x=y.test@sink.test", "@sink.test", "x@y.test")]
    more = {"stored": True, "store_error": "", "verified": None, "notes": {}, "recipients_dropped": 0}

    def log() -> None:
        log_message(
            logger, logging.INFO, result, "accept", t_eom=0.0, t0=0.0, queue_id="Q1", envelope_from="",
            matches=matches, message_id="", size=1, truncated=False, internal=False, facts=more,
        )  # fmt: skip

    log()
    logger.addFilter(lambda record: True)  # through the logging module: LogRecord, JsonFormatter
    try:
        log()
    finally:
        logger.filters.clear()
    direct, via_logging = lines(logger)
    recipients = [
        {"recipient": "a@example.org", "reason": "", "hard": False, "status": "4.2.2"},
        {"recipient": "b@example.org", "reason": "userunknown", "hard": True, "status": "5.1.1"},
    ]
    facts = {
        "total_ms": direct["total_ms"],
        "detector": "postfix",
        "envelope_from": "",
        "bounce_addresses": ["bounces@sink.test", "b+x=y.test@sink.test"],
        "verp_recipients": ["x@y.test"],
        "message_id": "",
        "size": 1,
        "truncated": False,
        "internal": False,
        **more,
    }
    expected = logjson.message_record("Q1", "bounce", recipients, "accept", direct["ms"], facts)
    for line in (direct, via_logging):
        assert line.pop("time") and line.pop("level") == "info" and line.pop("event") == "message"
        line["ms"], line["total_ms"] = direct["ms"], direct["total_ms"]
        assert list(line.items()) == list(expected.items())  # the same fields in the same order
    assert "store_error" not in expected and "notes" not in expected and expected["recipients_dropped"] == 0


def test_ms3_gives_three_decimals_like_round() -> None:
    from bouncemilter.decide import ms3

    for ms in (0.0, 0.0004, 0.0006, 1.23456, 2.5, 987.6543, 40000.1234567):
        assert abs(ms3(ms) - round(ms, 3)) <= 0.0005 + 1e-12
        assert len(repr(ms3(ms)).partition(".")[2]) <= 3
    assert ms3(1.23456) == 1.235 and ms3(0.0) == 0.0
