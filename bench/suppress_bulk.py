"""Bulk `bouncemilter suppress -`: addresses per second through the real command (one process, one transaction).

.venv/bin/python bench/suppress_bulk.py [COUNT]      (default 50,000 addresses, 3 runs; prints each rate)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    text = "".join(f"subscriber{n}@list{n % 97}.example.com\n" for n in range(count)).encode()
    env = {**os.environ, "BOUNCEMILTER_CONFIG": ""}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(3):
            db = Path(tmp) / f"b{run}.db"
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    f"from bouncemilter.suppressions import open_store; open_store({str(db)!r}).close()",
                ]
            )
            t0 = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "bouncemilter.cli", "suppress", "--db", str(db), "-", "--reason", "bench"],
                input=text,
                capture_output=True,
                env=env,
                check=True,
            )
            seconds = time.perf_counter() - t0
            print(
                f"run {run + 1}: {count} addresses in {seconds:.2f} s = {count / seconds:,.0f}/s "
                f"({out.stdout.decode().strip()})"
            )
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "bouncemilter.cli", "suppress", "--db", str(db), "one@example.org"],
            capture_output=True,
            env=env,
            check=True,
        )
        print(f"one address, one process: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
