"""decide()'s shortcut for a status that names userunknown gives what the whole decision gives."""

from __future__ import annotations

import pytest

from bouncemilter.classify.reasons import TABLES, decide, engine

PHRASES = sorted({p for t in TABLES.values() for p in t.phrases} | {c for t in TABLES.values() for c in t.not_phrases})


def _texts() -> list[str]:
    out = ["", "550 5.1.1 <a@example.org>: Recipient address rejected: User unknown in virtual mailbox table"]
    for i, phrase in enumerate(PHRASES):
        out.append(f"550 5.1.1 <a@example.org>: {phrase}")
        out.append(f"{phrase} ({PHRASES[(i * 7) % len(PHRASES)]})")  # two reasons' words in one reply
    return out


@pytest.mark.parametrize("stage", ["", "RCPT", "MAIL", "DATA", "CONN", "HELO"])
@pytest.mark.parametrize("status", ["5.1.1", "5.1.0", "5.1.3"])
@pytest.mark.parametrize("dtype", ["smtp", "x-unix"])
def test_the_shortcut_agrees_with_the_whole_decision(
    stage: str, status: str, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert engine.status_reason(status) == "userunknown"
    args = [(text, code) for text in _texts() for code in ("550", "")]
    fast = [decide(status, code, text, smtp_command=stage, diagnostic_type=dtype) for text, code in args]
    monkeypatch.setattr(engine, "any_of", lambda *a: True)  # every rival "present": the whole first pass runs
    slow = [decide(status, code, text, smtp_command=stage, diagnostic_type=dtype) for text, code in args]
    assert fast == slow
    assert sum(d == ("userunknown", f"status:{status}") for d in fast) > 10  # the shortcut had work to do
