"""Ordinary mail that talks about bounces, quotes them or looks automated is never a bounce."""

from __future__ import annotations

from pathlib import Path

import pytest

from bouncemilter import classify

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "not_bounce").glob("*.eml"))


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_ordinary_mail_is_not_bounce(path: Path) -> None:
    result = classify(path.read_bytes())
    assert result.kind == "not_bounce", (result.detector, result.evidence)
    assert result.recipients == []


def test_there_are_fixtures() -> None:
    assert len(FIXTURES) >= 7
