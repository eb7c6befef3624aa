"""feedback: a spam complaint (ARF / JMRP feedback report, kind complaint)."""

from ._base import ReasonTable

TABLE = ReasonTable(name="feedback", summary="a spam complaint (ARF / JMRP feedback report), not a failure")
