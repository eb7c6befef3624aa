"""Any byte string in -> a Classification out, quickly; a 50 MB message in bounded time and memory.

Seeds are our own hand-written bounces (tests/fixtures/robustness and tests/fixtures/cli); hypothesis
mutates them the ways real mail breaks: bit flips, truncation, line-ending swaps, damaged boundaries,
spliced garbage. parse_message is checked on its own too: it must not lean on classify's catch-all.
"""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bouncemilter.classify import KINDS, Classification, classify
from bouncemilter.classify.mime import parse_message

FIXTURES = Path(__file__).parent / "fixtures"
SEEDS = [p.read_bytes() for p in sorted((FIXTURES / "robustness").glob("*.eml"))] + [
    (FIXTURES / "cli" / "three.mbox").read_bytes()
]
LIMIT = 0.5  # seconds per message: generous for a shared CI machine (typical is well under 1 ms)
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def check(raw: bytes) -> Classification:
    start = time.perf_counter()
    msg = parse_message(raw)  # raises nothing by itself
    for part in msg.parts:
        assert isinstance(part.text, str)
    msg.body_text()
    msg.original_headers()
    result = classify(raw)
    elapsed = time.perf_counter() - start
    assert elapsed < LIMIT, f"{elapsed:.3f}s for {len(raw)} bytes"
    assert isinstance(result, Classification)
    assert result.kind in KINDS
    assert result.error == "", result.error  # the catch-all in classify() must not have been needed
    for row in result.recipients:
        assert row.recipient == row.recipient.lower()
        assert "\n" not in row.diagnostic
    return result


def test_seeds_are_bounces() -> None:
    assert len(SEEDS) >= 3
    for raw in SEEDS:
        assert check(raw).kind == "bounce"


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(raw: bytes) -> None:
    check(raw)


@FUZZ
@given(st.text(alphabet=st.sampled_from("From:\n\r\t -=?<>@.;\"abcB5012xX/"), max_size=2000))
def test_random_mail_like_text(text: str) -> None:
    check(text.encode())


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "eol", "boundary", "splice", "delete", "dup"]))
        n = len(raw)
        if n == 0:
            break
        at = draw(st.integers(0, n - 1))
        if op == "flip":
            for _ in range(draw(st.integers(1, 16))):
                i = draw(st.integers(0, n - 1))
                raw[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del raw[at:]
        elif op == "eol":
            old, new = draw(st.sampled_from([(b"\n", b"\r\n"), (b"\n", b"\r"), (b"\r\n", b"\n"), (b"\n", b"")]))
            raw = bytearray(bytes(raw).replace(old, new, draw(st.integers(1, 50))))
        elif op == "boundary":
            damaged = draw(st.sampled_from([b"-", b"", b"--", b"--X", b"\n--", b"boundary="]))
            raw = bytearray(bytes(raw).replace(b"--", damaged, draw(st.integers(1, 5))))
        elif op == "splice":
            raw[at:at] = draw(st.binary(max_size=200))
        elif op == "delete":
            del raw[at : at + draw(st.integers(1, 400))]
        else:
            raw[at:at] = raw[at : at + draw(st.integers(1, 2000))] * draw(st.integers(1, 20))
    return bytes(raw)


@FUZZ
@given(mutated())
def test_mutated_bounces(raw: bytes) -> None:
    check(raw)


def _fifty_megabytes() -> bytes:
    head = (FIXTURES / "robustness" / "postfix-dsn.eml").read_bytes()
    closing = head.rindex(b"--4XyZ1")
    attachment_line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\n"
    attachment = attachment_line * (50 * 1024 * 1024 // len(attachment_line))
    return b"".join(
        [
            head[:closing],
            b"--4XyZ1.1764151200/mx1.example.org\nContent-Type: application/octet-stream\n"
            b"Content-Transfer-Encoding: base64\n\n",
            attachment,
            b"\n--4XyZ1.1764151200/mx1.example.org\nContent-Type: message/rfc822\n\nSubject: huge\n\n",
            attachment,
            b"\n--4XyZ1.1764151200/mx1.example.org--\n",
        ]
    )


def test_fifty_megabyte_message_is_bounded() -> None:
    raw = _fifty_megabytes()
    assert len(raw) > 100 * 1024 * 1024 // 2
    classify(raw[:1000])  # warm up imports and caches outside the measurement
    tracemalloc.start()
    start = time.perf_counter()
    try:
        result = classify(raw)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0, elapsed
    assert peak < 32 * 1024 * 1024, peak  # a few copies of the 1 MB scanned, never of the 50 MB
    assert result.kind == "bounce"
    assert [r.recipient for r in result.recipients] == ["carol@example.net"]


def test_fifty_megabytes_of_one_line_and_of_newlines() -> None:
    for raw in (b"Subject: x\n\n" + b"A" * (50 * 1024 * 1024), b"\n" * (50 * 1024 * 1024), b"@" * (50 * 1024 * 1024)):
        start = time.perf_counter()
        assert classify(raw).kind == "not_bounce"
        assert time.perf_counter() - start < 2.0
