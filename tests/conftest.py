from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI must not fail by the luck of the draw: the same examples every run there (a found bug still
# fails every run); developers keep random exploration.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

FIXTURES = Path(__file__).parent / "fixtures"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "sisimai-dev"


@pytest.fixture
def fixture_bytes():
    def load(name: str) -> bytes:
        return (FIXTURES / name).read_bytes()

    return load
