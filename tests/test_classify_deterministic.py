"""The classifier says the same thing in every process: no answer, reason_rule included, depends on hash
randomisation (PYTHONHASHSEED changes the order of sets). A reason's words are its longest phrase found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bouncemilter.classify.reasons import decide

ROOT = Path(__file__).resolve().parents[1]
# several phrases of one reason in one reply: which one reason_rule names must not depend on the process
REPLIES = [
    "550 5.7.1 Client host rejected: blocked using zen.spamhaus.org; part of their network is on our block list",
    "550 No PTR record found. Reverse DNS required; we do not accept mail from hosts with no reverse DNS",
    "552 Delivery failed: over quota; mailbox over quota; user is over quota",
    "554 Message scored as spam: this message was classified as spam",
    "451 Message expired: connection timed out, message expired after 5 days",
]
SCRIPT = """
import json, sys
from bouncemilter.classify.reasons import decide
print(json.dumps([list(decide("", line[:3], line)) for line in json.loads(sys.argv[1])]))
"""


def _run(seed: str) -> list:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(REPLIES)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(done.stdout)


def test_same_reason_rule_under_different_hash_seeds() -> None:
    runs = [_run(seed) for seed in ("0", "1", "2", "3", "4", "5")]
    assert all(run == runs[0] for run in runs[1:]), runs


def test_the_longest_phrase_names_the_rule() -> None:
    decision = decide("", "550", REPLIES[0])
    assert decision.rule.endswith('"part of their network is on our block list"'), decision
