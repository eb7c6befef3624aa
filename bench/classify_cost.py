"""Instructions one `classify()` spends, by callgrind: the benchmark bounce, and the median over a directory.

    .venv/bin/python bench/classify_cost.py [DIR] [--calls 200]

The classifier's share of `bench/milter_cost.py`, without the milter around it. Line 1: `classify()` of the
bounce the milter benchmarks use (`tests/e2e/messages.py: hard_bounce`, a Postfix-style DSN, CRLF as the
milter receives it), `--calls` of them (each to another recipient) after 20 warm-up calls, counted between a
zero and a dump of callgrind's counters (the client-request helper of `bench/milter_parts.py`). Line 2, when
DIR is given: every file of DIR is classified once to warm up, then once more each between a zero and a dump;
the median over the files, and their mean. Each dump's own cost (a zero and a dump back to back) is taken off.
Needs valgrind (with its headers) and gcc; takes ~1 min for 400 files.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "e2e"))

WARMUP = 20


def corpus_files(folder: Path) -> list[Path]:
    if (folder / "emails").is_dir():
        folder = folder / "emails"
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def run(calls: int, helper: str, folder: str) -> None:
    """Inside callgrind: one dump for the bench bounce's calls, then one per file of `folder`."""
    import messages as M

    from bouncemilter.classify import classify

    probe = ctypes.CDLL(helper)
    probe.bm_dump.argtypes = [ctypes.c_char_p]
    raws = [M.hard_bounce(f"cost{k}", recipient=f"user{k}@example.org") for k in range(calls + WARMUP)]
    for raw in raws[:WARMUP]:
        classify(raw)
    for _ in range(5):
        probe.bm_zero()
        probe.bm_dump(b"calibration")
    probe.bm_zero()
    for raw in raws[WARMUP:]:
        classify(raw)
    probe.bm_dump(b"bench")
    if not folder:
        return
    files = [p.read_bytes() for p in corpus_files(Path(folder))]
    for raw in files:
        classify(raw)
    for raw in files:
        probe.bm_zero()
        classify(raw)
        probe.bm_dump(b"file")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", nargs="?", default="", help="a folder of messages (or a corpus folder with emails/)")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--inside", nargs=2, help=argparse.SUPPRESS)  # helper, work directory: the run under callgrind
    args = ap.parse_args()
    if args.inside:
        run(args.calls, args.inside[0], args.dir)
        return 0
    from milter_parts import probed_totals

    cmd = [*([args.dir] if args.dir else []), "--calls", str(args.calls)]
    dumps = probed_totals(__file__, cmd, env={"PYTHONHASHSEED": "0"})
    if "bench" not in dumps:
        raise RuntimeError("no dump of the measured calls in the callgrind output")
    calibration = statistics.median(dumps.get("calibration", [0]))
    bench = (dumps["bench"][0] - calibration) / args.calls
    print(f"classify() of the bench bounce: {bench:,.0f} instructions ({args.calls} calls after {WARMUP} warm-up)")
    if args.dir:
        per_file = [n - calibration for n in dumps.get("file", [])]
        print(
            f"classify() over {len(per_file)} files of {args.dir}: median {statistics.median(per_file):,.0f}, "
            f"mean {statistics.fmean(per_file):,.0f} instructions"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
