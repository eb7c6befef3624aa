"""Non-standard bounce formats: one small detector per MTA or provider.

A detector is a function `detect(msg: Message) -> Detection | None`: it returns None quickly
when the message is not in its format. Detectors are tried in `DETECTORS` order before the
generic RFC 3464 reader, so a format whose delivery-status part is misleading can take over.
Each family module exports its own `DETECTORS` list; the order of families is fixed here.
"""

from __future__ import annotations

from collections.abc import Callable

from ..mime import Message
from .base import Detection

Detector = tuple[str, Callable[[Message], Detection | None]]


def _load() -> list[Detector]:
    detectors: list[Detector] = []
    from . import gateways, mta, providers

    for family in (providers, gateways, mta):
        detectors.extend(family.DETECTORS)
    return detectors


DETECTORS: list[Detector] = _load()
