"""How fast `bouncemilter import` records a big mbox, and how fast a second (idempotent) run is.

Builds an mbox of N messages (default 10,000) from the hand-written fixtures under tests/fixtures/
(each copy gets a unique Message-ID and, for every other message, an X-Original-To VERP address),
then runs `bouncemilter import` on it twice against a fresh database, as a separate process (start-up
included), and prints messages/s for both runs.

    .venv/bin/python bench/import_speed.py [--messages 10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
BOUNCE_ADDRESS = "bounces+*@example.com"

_MESSAGE_ID = re.compile(rb"^Message-ID:[^\n]*\n(?:[ \t][^\n]*\n)*", re.I | re.M)
_FROM_LINE = re.compile(rb"^(>*From )", re.M)


def fixture_messages(root: Path = FIXTURES) -> list[bytes]:
    """Every hand-written .eml fixture, LF line endings, headers and body separated by an empty line."""
    out = []
    for path in sorted(root.rglob("*.eml")):
        raw = path.read_bytes().replace(b"\r\n", b"\n")
        if b"\n\n" in raw:
            out.append(raw)
    return out


def build_mbox(path: Path, count: int, root: Path = FIXTURES) -> int:
    """Write `count` messages cycling through the fixtures, each with a unique Message-ID (mboxrd quoting)."""
    messages = fixture_messages(root)
    with open(path, "wb") as fh:
        for n in range(count):
            raw = messages[n % len(messages)]
            head, _, body = raw.partition(b"\n\n")
            head = _MESSAGE_ID.sub(b"", head + b"\n").rstrip(b"\n")
            extra = f"Message-ID: <import-{n}@bench.example.com>\n"
            if n % 2:
                extra += f"X-Original-To: bounces+user{n % 997}=example.org@example.com\n"
            message = extra.encode() + head + b"\n\n" + body.rstrip(b"\n") + b"\n"
            fh.write(b"From MAILER-DAEMON Thu Nov 26 10:00:00 2026\n")
            fh.write(_FROM_LINE.sub(rb">\1", message))
            fh.write(b"\n")
    return count


def run_import(mbox: Path, db: Path) -> tuple[float, str]:
    cmd = [str(Path(sys.executable).parent / "bouncemilter"), "import", "--db", str(db)]
    cmd += ["--bounce-address", BOUNCE_ADDRESS, str(mbox)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"import failed ({proc.returncode}): {proc.stderr.strip()}")
    return seconds, proc.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--keep", metavar="DIR", help="build in DIR and keep the mbox and database")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="import-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        mbox, db = work / "bounces.mbox", work / "bounces.db"
        db.unlink(missing_ok=True)
        n = build_mbox(mbox, args.messages)
        print(f"mbox: {n} messages, {mbox.stat().st_size / 1e6:.1f} MB")
        first, out1 = run_import(mbox, db)
        print(f"first run:  {out1}\n            {first:.2f} s, {n / first:,.0f} messages/s (process start included)")
        second, out2 = run_import(mbox, db)
        print(f"second run: {out2}\n            {second:.2f} s, {n / second:,.0f} messages/s")
        with sqlite3.connect(db) as conn:
            m, r, s = conn.execute(
                "SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM recipients),"
                " (SELECT COUNT(*) FROM suppressions WHERE state = 'suppressed')"
            ).fetchone()
        print(f"database: {m} messages, {r} recipients, {s} suppressed addresses")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
