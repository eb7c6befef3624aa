#!/usr/bin/env python3
"""Compare the classifier with Sisimai on bounces that have no labels: your own, or another project's.

    .venv/bin/python bench/eval_vs_sisimai.py DIR [--failures]

A labelled corpus (bench/eval_corpus.py) measures rules on mail they may have been written against; this
measures them on mail they have never seen. Debian's Sisimai (`apt-get install libsisimai-perl`, Sisimai 4)
reads every file under DIR and its results are the reference: recipients found by both, reason agreement, and
hard-flag agreement with Sisimai 5's rule (userunknown, hostunknown, hasmoved, and notaccept unless 4xx are hard;
Sisimai 4 itself reports soft/hard differently). Sisimai 4's reason names predate a few of Sisimai 5's
(badreputation, speeding, ...): read a disagreement before acting on it.

Measured on the 115 test bounces of flufl.bounce 6.0.0 (`pip download --no-binary :all: flufl.bounce`; its
tests/data; nothing of it is in this repository): see docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bouncemilter.classify import classify

# One JSON line per file: Sisimai's recipients with their reason and status.
SISIMAI = r"""
use strict; use warnings; use Sisimai; use JSON::PP;
my $js = JSON::PP->new->canonical(1);
for my $f (@ARGV) {
    my $v = eval { Sisimai->make($f, 'delivered' => 1, 'vacation' => 1) } || [];
    my @out = map { { recipient => $_->recipient->address, reason => $_->reason,
                      status => $_->deliverystatus } } @$v;
    print $js->encode({ file => $f, expected => \@out }), "\n";
}
"""
HARD = {"userunknown", "hostunknown", "hasmoved"}
NOT_FAILURES = {"delivered", "vacation", "feedback"}


def sisimai_hard(reason: str, status: str) -> bool:
    return reason in HARD or (reason == "notaccept" and not status.startswith("4"))


def run_sisimai(files: list[Path]) -> list[dict]:
    if shutil.which("perl") is None:
        sys.exit("perl is not installed")
    with tempfile.NamedTemporaryFile("w", suffix=".pl", delete=False) as script:
        script.write(SISIMAI)
    try:
        done = subprocess.run(
            ["perl", script.name, *map(str, files)], capture_output=True, text=True, check=False, timeout=600
        )
    finally:
        Path(script.name).unlink()
    if done.returncode != 0 and not done.stdout:
        sys.exit(f"Sisimai failed (apt-get install libsisimai-perl): {done.stderr.strip()[:300]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", type=Path, help="a directory of message files (every file under it)")
    ap.add_argument("--failures", action="store_true", help="list every disagreement")
    args = ap.parse_args()
    files = sorted(p for p in args.dir.rglob("*") if p.is_file())
    if not files:
        sys.exit(f"no files under {args.dir}")
    tally: Counter[str] = Counter()
    notes: list[str] = []
    for ref in run_sisimai(files):
        path = Path(ref["file"])
        expected = {e["recipient"].lower(): e for e in ref["expected"] if e["reason"] not in NOT_FAILURES}
        result = classify(path.read_bytes())
        got = {r.recipient: r for r in result.recipients}
        tally["files"] += 1
        tally["sisimai"] += len(expected)
        for address, e in expected.items():
            row = got.get(address)
            if row is None:
                notes.append(f"missed {path.name} {address} ({e['reason']}): we found {sorted(got)} ({result.kind})")
                continue
            tally["both"] += 1
            if row.reason == e["reason"]:
                tally["reason"] += 1
            else:
                notes.append(
                    f"reason {path.name} {address}: ours {row.reason} [{row.reason_rule}], Sisimai {e['reason']}"
                )
            if row.hard == sisimai_hard(e["reason"], e["status"] or ""):
                tally["hard"] += 1
            else:
                notes.append(f"hard {path.name} {address}: ours {row.hard} ({row.reason}), Sisimai {e['reason']}")
    both = max(1, tally["both"])
    print(f"files {tally['files']}, recipients Sisimai found {tally['sisimai']}, found by both {tally['both']}")
    print(f"reason agreement {tally['reason'] / both:.3f}, hard-flag agreement {tally['hard'] / both:.3f}")
    if args.failures:
        print("\n".join(sorted(notes)))


if __name__ == "__main__":
    main()
