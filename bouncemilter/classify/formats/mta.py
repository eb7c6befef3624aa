"""Classic MTA bounce formats: Exim, qmail, Postfix, Sendmail, OpenSMTPD, dma, Courier, James, X1-X6, FML.

Each detector lives in its own module (mta_*.py) and rejects a foreign message on a header or a
marker line before reading the body.
"""

from __future__ import annotations

from . import mta_exim

DETECTORS: list = [
    ("exim", mta_exim.detect),
]
