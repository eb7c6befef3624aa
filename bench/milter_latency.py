"""Latency one bounce at a time through a real Postfix: what the milter adds, p50 and p99 (loopback only; as root).

    .venv/bin/python bench/milter_latency.py [--messages 300] [--sizes 1,10,100] [--setups none,unix,inet]

One SMTP session (smtplib, kept open) sends bounces one after another to a private Postfix
(tests/e2e/postfix_rig.py) that relays to an smtp-sink; each message is timed from MAIL FROM to the
reply to its end of data, which Postfix gives only after the milter answered end of message (the
bounce read, classified, committed with synchronous=FULL, logged). Bounces of about 1, 10 and 100 KB
(a DSN, its original attached and padded: tests/e2e/messages.big_bounce), a new recipient each (a new
row each). The setups take turns in rounds of 50 messages, so a noisy neighbour on a shared machine
hits all of them alike; "added" is a setup's percentile minus the no-milter one of the same size.
Issue #12's target: added p50 <= 2 ms, p99 <= 5 ms for bounces up to 100 KB. Takes ~2-4 minutes.
"""

from __future__ import annotations

import argparse
import shutil
import smtplib
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
sys.path.insert(0, str(REPO / "bench"))

import messages as M  # noqa: E402
from milter_throughput import FloorMilter, Milter, build_floor, pct, reconfigure  # noqa: E402
from postfix_rig import Rig, free_port, postfix_available  # noqa: E402

ROUND = 50  # messages per setup and size before the next setup's turn


def bounce_of(size_kb: int, token: str, recipient: str) -> bytes:
    if size_kb <= 2:
        return M.hard_bounce(token, recipient=recipient)
    base = len(M.big_bounce(token, size=0, recipient=recipient))
    return M.big_bounce(token, size=max(size_kb * 1024 - base, 0), recipient=recipient)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=300, help="messages per setup and size (default 300)")
    ap.add_argument("--sizes", default="1,10,100", help="bounce sizes in KB (default 1,10,100)")
    ap.add_argument(
        "--setups",
        default="none,unix,inet",
        help="none, unix, inet; floor-unix / floor-inet: the do-nothing C milter (bench/floor_milter.c), what any "
        "milter adds",
    )
    args = ap.parse_args()
    reason = postfix_available()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="bm-latency-", dir="/tmp"))
    base.chmod(0o755)
    sink_port = free_port()
    rig = Rig(base / "pf", sink_ok_port=sink_port, extra_main_cf={"smtpd_client_connection_count_limit": "0"})
    setups = args.setups.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    specs: dict[str, str] = {"none": ""}
    milters: dict[str, Milter] = {}
    times: dict[tuple[str, int], list[float]] = {}
    counter = 0
    try:
        floor_exe = build_floor(base) if any(s.startswith("floor") for s in setups) else None
        if floor_exe is None:
            setups = [s for s in setups if not s.startswith("floor")]
        for setup in setups:
            if setup == "none":
                continue
            if setup.endswith("unix"):
                spec = specs[setup] = f"unix:{base}/{setup}.sock"
            else:
                port = free_port()
                spec, specs[setup] = f"inet:{port}@127.0.0.1", f"inet:127.0.0.1:{port}"
            if setup.startswith("floor"):
                assert floor_exe is not None
                milters[setup] = FloorMilter(base, [str(floor_exe)], spec)
            else:
                milters[setup] = Milter(base, spec)
        rig.start()
        done = 0
        while done < args.messages:
            n = min(ROUND, args.messages - done)
            for setup in setups:
                reconfigure(rig, specs[setup])
                for size in sizes:
                    with smtplib.SMTP("127.0.0.1", rig.smtp_port, timeout=60) as smtp:
                        smtp.ehlo("latency.test")
                        for i in range(-3, n):  # 3 to warm up the session and the smtpd process
                            counter += 1
                            token = f"lat{counter}"
                            rcpt = f"{counter}bounces@sink.test"
                            raw = bounce_of(size, token, f"user{counter}@example.org")
                            t0 = time.perf_counter()
                            smtp.sendmail("", [rcpt], raw)
                            ms = (time.perf_counter() - t0) * 1000
                            if i >= 0:
                                times.setdefault((setup, size), []).append(ms)
            done += n
            print(f"{done}/{args.messages} messages per setup and size", file=sys.stderr, flush=True)
    finally:
        rig.stop()
        for m in milters.values():
            m.stop()
        shutil.rmtree(base, ignore_errors=True)

    print(f"one SMTP session, one bounce at a time, {args.messages} per setup and size, rounds of {ROUND}")
    print(f"{'setup':10s} {'size':>6s} {'p50 ms':>8s} {'p99 ms':>8s} {'added p50':>10s} {'added p99':>10s}  target")
    for size in sizes:
        ref = times.get(("none", size), [])
        for setup in setups:
            t = times[(setup, size)]
            p50, p99 = pct(t, 50), pct(t, 99)
            added = ""
            if setup != "none" and ref:
                a50, a99 = p50 - pct(ref, 50), p99 - pct(ref, 99)
                ok = "ok" if a50 <= 2 and a99 <= 5 else "MISSED"
                added = f"{a50:10.2f} {a99:10.2f}" + ("" if setup.startswith("floor") else f"  p50<=2 p99<=5 {ok}")
            print(f"{setup:10s} {size:4d}KB {p50:8.2f} {p99:8.2f} {added}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
