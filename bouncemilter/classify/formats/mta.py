"""mta bounce formats."""

from __future__ import annotations

DETECTORS: list = []
