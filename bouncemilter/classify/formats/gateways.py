"""Bounce formats of enterprise servers, mail gateways / filters and Japanese mobile carriers.

Each detector gates on a header or two (From, Subject, X-Mailer, Received) before reading the
body, so mail in another format costs a few dictionary look-ups.
"""

from __future__ import annotations

from . import gateways_filters, gateways_jp, gateways_ms

DETECTORS: list = [*gateways_ms.DETECTORS, *gateways_jp.DETECTORS, *gateways_filters.DETECTORS]
