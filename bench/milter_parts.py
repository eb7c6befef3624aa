"""Where a session's instructions go in the milter process: per part, counted by valgrind (callgrind).

    .venv/bin/python bench/milter_parts.py [--sessions 50] [--traffic bounce]

`bench/milter_cost.py` gives the total per session; this splits it. It runs `bouncemilter run` under
callgrind with probes around the parts of a session (classification, the verdict, the store's
transaction, the suppression policy inside it, the log line, the Python callbacks, ...). A probe asks
callgrind to dump its counters (a client request from a tiny C helper built here with gcc and
valgrind's callgrind.h), labelled with the part that was running, so every instruction between two
dumps is charged to exactly one part; "outside" is pymilter's and libmilter's dispatch and whatever no
probe covers. The probes cost instructions themselves: each dump's share is measured (back-to-back
dumps) and taken off, so the parts add up to about what milter_cost.py counts without probes.
Needs valgrind (with its headers) and gcc; takes ~1-2 min.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from milter_cost import play, run_args  # noqa: E402

HELPER_C = r"""
#include <valgrind/callgrind.h>
void bm_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
void bm_zero(void) { CALLGRIND_ZERO_STATS; }
"""

# Run inside the milter process: wrap the parts, then start the milter as `bouncemilter run` does.
# (module, attribute path, label); nested parts are charged to themselves, not to their caller.
LAUNCHER = r"""
import ctypes, signal, sys, threading
helper = ctypes.CDLL(sys.argv.pop(1))
helper.bm_dump.argtypes = [ctypes.c_char_p]
import importlib
PARTS = [
    ("bouncemilter.milter", "BounceMilter.envfrom", "callbacks: envfrom/envrcpt/data"),
    ("bouncemilter.milter", "BounceMilter.envrcpt", "callbacks: envfrom/envrcpt/data"),
    ("bouncemilter.milter", "BounceMilter.data", "callbacks: envfrom/envrcpt/data"),
    ("bouncemilter.milter", "BounceMilter.header", "callbacks: header/eoh/body"),
    ("bouncemilter.milter", "BounceMilter.eoh", "callbacks: header/eoh/body"),
    ("bouncemilter.milter", "BounceMilter.body", "callbacks: header/eoh/body"),
    ("bouncemilter.milter", "BounceMilter.close", "callbacks: close/abort"),
    ("bouncemilter.milter", "BounceMilter.abort", "callbacks: close/abort"),
    ("bouncemilter.milter", "BounceMilter.negotiate", "callbacks: negotiate"),
    ("bouncemilter.milter", "BounceMilter.eom", "eom: the rest (glue, Envelope, reply)"),
    ("bouncemilter.ingest", "build_meta", "eom: row metadata (digests, key)"),
    ("bouncemilter.ingest", "classify_safely", "classify"),
    ("bouncemilter.verdict", "Verifier.apply", "verdict"),
    ("bouncemilter.milter", "GroupCommit.record", "store transaction (without the policy)"),
    ("bouncemilter.ingest", "action_for", "eom: action"),
    ("bouncemilter.suppressions", "SuppressionHook.recorded", "suppression policy"),
    ("bouncemilter.decide", "log_message", "log line"),
]
armed = False
stack = ["outside"]
segments = {}
def dump(label):
    segments[label] = segments.get(label, 0) + 1
    helper.bm_dump(label.encode())
def wrap(label, fn):
    def probe(*a, **k):
        if not armed:
            return fn(*a, **k)
        dump(stack[-1])
        stack.append(label)
        try:
            return fn(*a, **k)
        finally:
            dump(label)
            stack.pop()
    probe.__name__ = getattr(fn, "__name__", "probe")
    probe.__wrapped__ = fn
    return probe
for mod, path, label in PARTS:
    obj = importlib.import_module(mod)
    *owner, name = path.split(".")
    for part in owner:
        obj = getattr(obj, part)
    setattr(obj, name, wrap(label, getattr(obj, name)))
def arm(signum, frame):
    global armed
    helper.bm_zero()
    for _ in range(20):
        dump("calibration")
    helper.bm_zero()
    armed = True
def finish(signum, frame):
    dump(stack[-1])
    print("SEGMENTS " + repr(segments), file=sys.stderr, flush=True)
signal.signal(signal.SIGUSR1, arm)
signal.signal(signal.SIGUSR2, finish)
from bouncemilter.cli import main
sys.argv[0] = "bouncemilter"
main()
"""


def build_helper(work: Path) -> Path:
    src = work / "bm_probe.c"
    src.write_text(HELPER_C)
    lib = work / "bm_probe.so"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


def probed_totals(script: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, list[int]]:
    """Run `script ARGS --inside HELPER WORKDIR` under callgrind (this checkout first on its path); the totals of
    the dumps its probes asked for (`bm_dump(label)` of the helper), by label, in order. The script counts what it
    measures between `bm_zero()` and `bm_dump()`; WORKDIR is a fresh directory for its files. `env`: more variables
    for it."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        helper = build_helper(work)
        out = work / "callgrind.out"
        cmd = [sys.executable, script, *args, "--inside", str(helper), str(work)]
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        )
        totals: dict[str, list[int]] = defaultdict(list)
        for f in sorted(work.glob("callgrind.out.*"), key=lambda p: int(p.suffix[1:])):
            text = f.read_text(errors="replace")
            label = re.search(r"^desc: Trigger: Client Request: (.*)$", text, re.M)
            total = re.search(r"^summary: (\d+)", text, re.M)
            if label and total:
                totals[label.group(1)].append(int(total.group(1)))
        return totals


class Dumps:
    """Reads callgrind's dump files as they appear (and deletes them: there is one per probe)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.totals: dict[str, int] = defaultdict(int)
        self.seen = 0
        self.calibration: list[int] = []

    def collect(self, keep_last: bool) -> None:
        files = sorted(self.base.parent.glob(self.base.name + ".*"), key=lambda p: int(p.suffix[1:]))
        if keep_last and files:
            files = files[:-1]  # may still be written
        for f in files:
            text = f.read_text(errors="replace")
            label = re.search(r"^desc: Trigger: Client Request: (.*)$", text, re.M)
            total = re.search(r"^summary: (\d+)", text, re.M)
            if label and total and label.group(1) == "calibration":
                self.calibration.append(int(total.group(1)))
            elif label and total:
                self.totals[label.group(1)] += int(total.group(1))
            f.unlink()
            self.seen += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--traffic", default="bounce", choices=["bounce", "ordinary"])
    args = ap.parse_args()
    for tool in ("valgrind", "gcc"):
        if not shutil.which(tool):
            print(f"cannot run: {tool} not installed", file=sys.stderr)
            return 2
    work = Path(tempfile.mkdtemp(prefix="bm-parts-", dir="/tmp"))
    sock = work / "milter.sock"
    out = work / "callgrind.out"
    lib = build_helper(work)
    cmd = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-c",
        LAUNCHER,
        str(lib),
        *run_args(sock, work),
    ]
    err = open(work / "stderr", "w+")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=err)
    dumps = Dumps(out)
    try:
        deadline = time.monotonic() + 180
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("milter did not start under valgrind")
            time.sleep(0.5)
        counter = itertools.count()
        play(str(sock), args.traffic, 10, counter)  # warm up
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        # the first session after arming is not counted (the first dump carries what came before)
        play(str(sock), args.traffic, 1, counter)
        time.sleep(1)
        dumps.collect(keep_last=False)
        calibration = statistics.median(dumps.calibration[1:]) if len(dumps.calibration) > 1 else 0
        dumps.totals.clear()
        for _ in range(args.sessions):
            play(str(sock), args.traffic, 1, counter)
            dumps.collect(keep_last=True)
        time.sleep(0.5)
        proc.send_signal(signal.SIGUSR2)
        time.sleep(2)
        dumps.collect(keep_last=False)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        err.seek(0)
        log = err.read()
        shutil.rmtree(work, ignore_errors=True)
    m = re.search(r"^SEGMENTS (.*)$", log, re.M)
    segments: dict[str, int] = ast.literal_eval(m.group(1)) if m else {}
    n = args.sessions
    rows = []
    for label, total in dumps.totals.items():
        net = total - calibration * segments.get(label, 0)
        rows.append((label, net / n, total / n))
    all_net = sum(r[1] for r in rows)
    print(f"{args.traffic} session, {n} sessions under probes; each dump's own cost ({calibration:,.0f}) taken off")
    print(f"{'part':45s} {'instructions/session':>20s} {'share':>6s}")
    for label, net, _raw in sorted(rows, key=lambda r: -r[1]):
        print(f"{label:45s} {net:20,.0f} {net / all_net:6.1%}")
    print(f"{'total':45s} {all_net:20,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
