#!/usr/bin/env python3
"""Classifier throughput, side by side with flufl.bounce, in one run on the same files.

Usage: bench/classify_speed.py DIR [--rounds N] [--json]

DIR is a folder of messages (one per file), or a corpus folder holding `emails/`. Every file is
read into memory first, so only classification is timed. Both engines get the raw bytes:
bouncemilter runs `classify(raw)`; flufl.bounce runs `scan_message(email.message_from_bytes(raw))`,
which includes the stdlib parse it needs. The two alternate within each round (the machine is
shared and noisy), and the figures are medians over the rounds.

flufl.bounce is not a dependency of bouncemilter; install it in a bench environment:
    python3 -m venv /tmp/bench-venv && /tmp/bench-venv/bin/pip install -e '.[bench]'
    /tmp/bench-venv/bin/python bench/classify_speed.py /path/to/corpus
"""

from __future__ import annotations

import argparse
import email
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bouncemilter.classify import classify


def load(folder: Path) -> list[bytes]:
    if (folder / "emails").is_dir():
        folder = folder / "emails"
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    return [p.read_bytes() for p in files]


def flufl_engine() -> Callable[[bytes], object] | None:
    try:
        from flufl.bounce import scan_message
    except ImportError:
        return None

    def run(raw: bytes) -> object:
        return scan_message(email.message_from_bytes(raw))

    return run


def one_pass(engine: Callable[[bytes], object], messages: list[bytes]) -> tuple[float, int]:
    """Seconds for one pass over all messages, and how many raised."""
    errors = 0
    start = time.perf_counter()
    for raw in messages:
        try:
            engine(raw)
        except Exception:
            errors += 1
    return time.perf_counter() - start, errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--rounds", type=int, default=7, help="passes per engine; medians are reported (default 7)")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args()

    messages = load(args.dir)
    if not messages:
        print(f"classify_speed: no messages under {args.dir}", file=sys.stderr)
        return 2
    engines: dict[str, Callable[[bytes], object]] = {"bouncemilter": classify}
    flufl = flufl_engine()
    if flufl is None:
        print(
            "classify_speed: flufl.bounce is not installed in this Python; measuring bouncemilter only.\n"
            "  install it in a bench venv: pip install -e '.[bench]'",
            file=sys.stderr,
        )
    else:
        engines["flufl.bounce"] = flufl

    for engine in engines.values():  # warm up: imports, regex compilation, caches
        one_pass(engine, messages[:50])
    times: dict[str, list[float]] = {name: [] for name in engines}
    errors: dict[str, int] = dict.fromkeys(engines, 0)
    for _ in range(max(1, args.rounds)):
        for name, engine in engines.items():
            seconds, failed = one_pass(engine, messages)
            times[name].append(seconds)
            errors[name] = max(errors[name], failed)

    n = len(messages)
    rates = {name: n / statistics.median(t) for name, t in times.items()}
    figures: dict[str, object] = {
        "messages": n,
        "bytes": sum(map(len, messages)),
        "rounds": max(1, args.rounds),
        "msgs_per_sec": {name: round(r) for name, r in rates.items()},
        "best_msgs_per_sec": {name: round(n / min(t)) for name, t in times.items()},
        "exceptions": errors,
    }
    if "flufl.bounce" in rates:
        figures["ratio"] = round(rates["bouncemilter"] / rates["flufl.bounce"], 2)
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"{n} messages ({figures['bytes'] / 1e6:.1f} MB), median of {figures['rounds']} rounds")
    for name, rate in rates.items():
        best = figures["best_msgs_per_sec"][name]  # type: ignore[index]
        print(f"  {name:14s} {rate:9.0f} msgs/s  (best {best}, exceptions {errors[name]})")
    if "ratio" in figures:
        print(f"  ratio bouncemilter / flufl.bounce: {figures['ratio']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
