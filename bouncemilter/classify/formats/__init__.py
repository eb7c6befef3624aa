"""Non-standard bounce formats: one small detector per MTA or provider.

A detector is a function `detect(msg: Message) -> Detection | None`: it returns None quickly
when the message is not in its format. Detectors are tried in `DETECTORS` order before the
generic RFC 3464 reader, so a format whose delivery-status part is misleading can take over.
Each family module exports its own `DETECTORS` list and the `GATES` of its detectors (gate.py);
the order of families is fixed here. `candidates(msg)` yields the detectors whose gate is open.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..mime import Message
from .base import Detection
from .gate import Gate, Gates

Detector = tuple[str, Callable[[Message], Detection | None]]


def _load() -> tuple[list[Detector], dict[str, Gate]]:
    detectors: list[Detector] = []
    gates: dict[str, Gate] = {}
    from . import gateways, mta, providers

    for family in (providers, gateways, mta):
        detectors.extend(family.DETECTORS)
        gates.update(family.GATES)
    return detectors, gates


DETECTORS, _GATES = _load()
_INDEX = Gates(DETECTORS, _GATES)


def candidates(msg: Message) -> Iterator[Detector]:
    """The detectors of DETECTORS whose gate is open for `msg`, in order (the others cannot match it)."""
    return _INDEX.candidates(msg)
