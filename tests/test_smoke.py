from bouncemilter import classify
from bouncemilter.classify.mime import parse_message


def test_sample_bounce_is_hard_userunknown() -> None:
    from pathlib import Path

    raw = (Path(__file__).parents[1] / "bouncemilter" / "samples" / "hard-bounce.eml").read_bytes()
    result = classify(raw)
    assert result.kind == "bounce"
    assert [r.recipient for r in result.recipients] == ["alice@example.org"]
    assert result.recipients[0].reason == "userunknown"
    assert result.recipients[0].hard is True
    assert result.original is not None and result.original.subject == "November newsletter"


def test_empty_input_is_not_bounce() -> None:
    assert classify(b"").kind == "not_bounce"
    assert parse_message(b"").parts
