"""Detector gates (formats/gate.py): a gate may be looser than its detector, never stricter."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from bouncemilter.classify import formats
from bouncemilter.classify.formats.gate import Gate, Gates
from bouncemilter.classify.mime import parse_message
from tests.e2e import messages

FIXTURES = sorted(p for p in (Path(__file__).parent / "fixtures").rglob("*") if p.is_file())


def _builders() -> list[bytes]:
    out = []
    for name, fn in inspect.getmembers(messages, inspect.isfunction):
        params = inspect.signature(fn).parameters
        if name.startswith("_") or list(params)[:1] != ["token"]:
            continue
        if any(p.default is inspect.Parameter.empty for p in list(params.values())[1:]):
            continue
        out.append(fn("gate"))
    return out


SAMPLES = [p.read_bytes() for p in FIXTURES] + _builders()


def _open(index: Gates, msg, i: int) -> bool:
    return i in index.opened(msg) or (i in index.checks and index.checks[i](msg))


@pytest.mark.parametrize("raw", SAMPLES)
def test_every_detector_that_reads_a_message_has_its_gate_open(raw: bytes) -> None:
    index = formats._INDEX
    for i, (name, detect) in enumerate(formats.DETECTORS):
        found = detect(parse_message(raw))
        if found is not None:
            assert _open(index, parse_message(raw), i), name


def test_the_fixtures_reach_most_detectors() -> None:
    """The test above proves something only for detectors some sample reaches."""
    reached = set()
    for raw in SAMPLES:
        for name, detect in formats.DETECTORS:
            if detect(parse_message(raw)) is not None:
                reached.add(name)
    assert len(reached) >= 0.8 * len(formats.DETECTORS), sorted({n for n, _ in formats.DETECTORS} - reached)


def test_candidates_skip_closed_gates_and_keep_order() -> None:
    calls = []

    def det(name):
        return name, lambda msg: calls.append(name)

    index = Gates(
        [det("a"), det("b"), det("c"), det("d"), det("e")],
        {
            "a": Gate(from_has=("example.org",)),
            "b": Gate(subject_starts=("undeliverable",), headers=("x-nothing",)),
            "c": Gate(headers=("x-mailer",), received_has=("(qmail ",)),
            "d": Gate(check=lambda msg: True),
        },
    )
    msg = parse_message(b"From: Someone <a@example.net>\nSubject: Hello\nX-Mailer: m\n\nbody\n")
    assert [name for name, _ in index.candidates(msg)] == ["c", "d", "e"]
    msg = parse_message(b"From: <>\nSubject:  UNDELIVERABLE: x\nReceived: (qmail 1 invoked for bounce)\n\n")
    assert [name for name, _ in index.candidates(msg)] == ["b", "c", "d", "e"]


def test_a_gate_for_an_unknown_detector_is_refused() -> None:
    with pytest.raises(ValueError):
        Gates([("a", lambda msg: None)], {"b": Gate()})
