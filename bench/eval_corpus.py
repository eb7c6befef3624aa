#!/usr/bin/env python3
"""Measure the classifier against a labelled corpus.

Usage: bench/eval_corpus.py DIR [--engine NAME] [--failures] [--json]

DIR holds `emails/*.eml` and `labels.jsonl` (the format of the sisimai-dev corpus). Prints, overall
and per engine: recipient recall and precision, reason accuracy and hard-flag agreement (over
matched recipients), not-bounce false positives, exceptions and messages/second.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bouncemilter.classify import classify


@dataclass
class Tally:
    files: int = 0
    expected: int = 0
    got: int = 0
    matched: int = 0
    reason_ok: int = 0
    hard_ok: int = 0
    not_bounce_files: int = 0
    not_bounce_fp: int = 0
    exceptions: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        for name in ("files", "expected", "got", "matched", "reason_ok", "hard_ok", "not_bounce_files",
                     "not_bounce_fp", "exceptions"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def figures(self) -> dict[str, float | int]:
        def ratio(a: int, b: int) -> float:
            return round(a / b, 4) if b else 1.0

        return {
            "files": self.files,
            "recall": ratio(self.matched, self.expected),
            "precision": ratio(self.matched, self.got),
            "reason_accuracy": ratio(self.reason_ok, self.matched),
            "hard_agreement": ratio(self.hard_ok, self.matched),
            "not_bounce_fp": self.not_bounce_fp,
            "exceptions": self.exceptions,
        }


def evaluate(label: dict, raw: bytes) -> tuple[Tally, float]:
    t = Tally(files=1)
    start = time.perf_counter()
    try:
        result = classify(raw)
    except Exception as exc:
        t.exceptions = 1
        t.failures.append(f"{label['file']}: exception {exc!r}")
        return t, time.perf_counter() - start
    elapsed = time.perf_counter() - start
    if result.error:
        t.exceptions = 1
        t.failures.append(f"{label['file']}: error {result.error}")
    if not label["is_bounce"]:
        t.not_bounce_files = 1
        if result.kind != "not_bounce":
            t.not_bounce_fp = 1
            t.failures.append(f"{label['file']}: not a bounce, classified {result.kind}")
        return t, elapsed
    got = [] if result.kind == "not_bounce" else list(result.recipients)
    t.expected = len(label["expected"])
    t.got = len(got)
    unmatched = list(got)
    for addr, exp in zip(label["recipients"], label["expected"], strict=False):
        hit = next((r for r in unmatched if r.recipient == addr.lower()), None)
        if hit is None:
            t.failures.append(f"{label['file']}: missed {addr} ({exp['reason']}); got kind={result.kind} "
                              f"{[r.recipient for r in got]} via {result.detector}")
            continue
        unmatched.remove(hit)
        t.matched += 1
        if hit.reason == exp["reason"]:
            t.reason_ok += 1
        else:
            t.failures.append(f"{label['file']}: reason {hit.reason} != {exp['reason']} for {addr} "
                              f"[{hit.status} {hit.reply_code}] {hit.diagnostic[:100]!r} via {result.detector}")
        if hit.hard == bool(exp["hard"]):
            t.hard_ok += 1
        else:
            t.failures.append(f"{label['file']}: hard {hit.hard} != {exp['hard']} ({hit.reason})")
    for extra in unmatched:
        t.failures.append(f"{label['file']}: extra recipient {extra.recipient!r} via {result.detector}")
    return t, elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--engine", help="only this engine")
    ap.add_argument("--failures", action="store_true", help="list every miss")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()

    labels = [json.loads(line) for line in (args.corpus / "labels.jsonl").read_text().splitlines() if line.strip()]
    if args.engine:
        labels = [lb for lb in labels if str(lb["engine"]).lower() == args.engine.lower()]
    total = Tally()
    per_engine: dict[str, Tally] = defaultdict(Tally)
    seconds = 0.0
    for label in labels:
        raw = (args.corpus / "emails" / label["file"]).read_bytes()
        t, elapsed = evaluate(label, raw)
        seconds += elapsed
        per_engine[str(label["engine"])].add(t)
        total.add(t)
        total.failures.extend(t.failures)

    figures = total.figures()
    figures["messages_per_second"] = round(len(labels) / seconds, 1) if seconds else 0.0
    if args.json:
        print(json.dumps({"overall": figures, "engines": {k: v.figures() for k, v in per_engine.items()}}, indent=2))
        return 0
    cols = ("files", "recall", "precision", "reason_accuracy", "hard_agreement", "not_bounce_fp", "exceptions")
    print(f"{'engine':<18}" + "".join(f"{c:>16}" for c in cols))
    for name in sorted(per_engine, key=lambda n: (-per_engine[n].files, n)):
        f = per_engine[name].figures()
        print(f"{name:<18}" + "".join(f"{f[c]!s:>16}" for c in cols))
    print(f"{'OVERALL':<18}" + "".join(f"{figures[c]!s:>16}" for c in cols))
    print(f"messages/second: {figures['messages_per_second']} (classify only, {len(labels)} messages)")
    if args.failures:
        print("\n".join(total.failures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
