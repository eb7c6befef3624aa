"""The issue's yardstick: the labelled sisimai-dev corpus, when it is beside the checkout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import CORPUS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def figures() -> dict:
    if not (CORPUS / "labels.jsonl").exists():
        pytest.skip(f"labelled corpus not found at {CORPUS}")
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "eval_corpus.py"), str(CORPUS), "--json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    return json.loads(out)["overall"]


def test_recipient_recall_and_precision(figures: dict) -> None:
    assert figures["recall"] >= 0.97, figures
    assert figures["precision"] >= 0.97, figures


def test_reason_accuracy(figures: dict) -> None:
    assert figures["reason_accuracy"] >= 0.95, figures


def test_hard_flag_agreement(figures: dict) -> None:
    assert figures["hard_agreement"] >= 0.98, figures


def test_no_exceptions_and_no_false_bounces(figures: dict) -> None:
    assert figures["exceptions"] == 0, figures
    assert figures["not_bounce_fp"] == 0, figures
