"""Classic MTA bounce formats: Exim, qmail, Postfix, Sendmail, OpenSMTPD, dma, Courier, James, X1-X6.

Each detector lives in its own module (mta_*.py) and rejects a foreign message on a header or a
marker line before reading the body.
"""

from __future__ import annotations

from . import mta_exim, mta_misc, mta_postfix, mta_qmail, mta_sendmail

DETECTORS: list = [
    ("postfix", mta_postfix.detect),
    ("sendmail", mta_sendmail.detect),
    ("exim", mta_exim.detect),
    ("qmail", mta_qmail.detect),
    ("dma", mta_misc.detect_dma),
    ("opensmtpd", mta_misc.detect_opensmtpd),
    ("courier", mta_misc.detect_courier),
    ("apache-james", mta_misc.detect_james),
    ("x1", mta_misc.detect_x1),
    ("x3", mta_misc.detect_x3),
    ("x6", mta_misc.detect_x6),
]
