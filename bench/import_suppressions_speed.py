"""How fast `bouncemilter import-suppressions` loads an ESP export, and how fast a second (idempotent) run is.

Writes a CSV of N rows (default 100,000) in an ESP's shape (email, reason, created: a mix of unsubscribes,
bounces and complaints with ISO dates, and one unreadable row in 1,000), then runs the command twice against a
fresh database as a separate process (start-up included), and prints rows/s for both runs and for the feed read
after them (`suppressed --changes-since 0 --format jsonl`).

    .venv/bin/python bench/import_suppressions_speed.py [--rows 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REASONS = ("Unsubscribed", "hard bounce: 550 5.1.1 user unknown", "spam complaint", "List-Unsubscribe one-click")


def write_csv(path: Path, rows: int) -> int:
    """The file; returns how many rows are unreadable on purpose."""
    bad = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["email", "reason", "created"])
        for n in range(rows):
            if n % 1000 == 999:
                w.writerow([f"broken-{n}-example.org", REASONS[0], "2025-01-01"])
                bad += 1
                continue
            day = 1 + n % 28
            w.writerow([f"user{n}@d{n % 997}.example.org", REASONS[n % len(REASONS)], f"2025-03-{day:02d} 10:00:00"])
    return bad


def run(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bouncemilter.cli", *args],
        capture_output=True,
        text=True,
        env={"BOUNCEMILTER_CONFIG": "", "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
    )
    return time.perf_counter() - t0, proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--keep", metavar="DIR", help="work here and keep the files")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bm-supp-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        csv_path, db = work / "export.csv", work / "bench.db"
        for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            p.unlink(missing_ok=True)
        bad = write_csv(csv_path, args.rows)
        print(f"{args.rows} rows ({bad} unreadable on purpose), {csv_path.stat().st_size / 1e6:.1f} MB")
        for label in ("first run", "second run"):
            seconds, proc = run("import-suppressions", "--db", str(db), str(csv_path))
            if proc.returncode not in (0, 1) or "suppressed" not in proc.stdout:
                sys.exit(f"import-suppressions failed ({proc.returncode}): {proc.stderr[-2000:]}")
            print(f"{label}: {seconds:.2f} s, {args.rows / seconds:,.0f} rows/s: {proc.stdout.strip()}")
        seconds, proc = run("suppressed", "--db", str(db), "--changes-since", "0", "--format", "jsonl")
        if proc.returncode:
            sys.exit(f"suppressed failed ({proc.returncode}): {proc.stderr[-2000:]}")
        changes = len(proc.stdout.splitlines()) - 1
        print(f"feed from cursor 0: {changes} changes in {seconds:.2f} s, {changes / seconds:,.0f} changes/s")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
