"""Throughput of a real Postfix with and without bouncemilter (loopback only; run as root).

    .venv/bin/python bench/milter_throughput.py [--messages 1000] [--sessions 10] [--runs 2]

A private Postfix (tests/e2e/postfix_rig.py) relays everything to an smtp-sink on 127.0.0.1.
Postfix's smtp-source sends the load: 1 new SMTP connection per message, `--sessions` in parallel.

Traffic:
  ordinary  ~1 KiB messages to user@sink2.test - not a bounce address: the milter accepts at DATA
  bounce    a DSN from <> to NNNbounces@sink.test (smtp-source -N makes each recipient unique, so
            every message is a new row): classified, stored (SQLite, synchronous=FULL), accepted

Setups: no milter; bouncemilter on a unix socket; on TCP (with its TCP_NODELAY listener fix); and
on TCP without the fix (to show what the fix is worth).

Prints msgs/s (accepted by Postfix, and accepted+relayed until the queue is empty), the ratio to
"no milter", a one-session latency probe (ms per bounce message: a ~40 ms delayed-ACK stall shows
up plainly there, whatever the machine's load), and the milter's own per-message latency p50/p99
from its JSON log (`ms`: end of message to reply, i.e. classify + commit + actions; `total_ms`: MAIL
FROM to reply). The setups run interleaved, best run kept, because other load on a small machine
moves the numbers a lot. Takes about 2-4 minutes with the defaults. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import messages as M  # noqa: E402
from postfix_rig import Rig, free_port, postfix_available  # noqa: E402

# Runs `bouncemilter run` with the TCP_NODELAY listener fix switched off (for the comparison only).
NO_FIX = (
    "import sys, bouncemilter.milter as m; m.set_listener_nodelay = lambda port: 0; "
    "from bouncemilter.cli import main; sys.argv[0] = 'bouncemilter'; main()"
)


class Milter:
    def __init__(self, base: Path, socket_spec: str, fix: bool = True) -> None:
        self.base = base
        self.socket_spec = socket_spec
        n = len(list(base.glob("milter-*.log")))
        self.log = base / f"milter-{n}.log"
        conf = base / f"bench-{n}.toml"
        conf.write_text(
            "[milter]\n"
            f'socket = "{socket_spec}"\n'
            + ('socket_mode = "0666"\n' if socket_spec.startswith("unix:") else "")
            + f'[store]\ndb = "{base}/bench-{n}.db"\n'
            '[bounce]\naddresses = ["@sink.test"]\n'
            "[headers]\nadd = true\n"
        )
        head = [sys.executable, "-c", NO_FIX] if not fix else [sys.executable, "-m", "bouncemilter.cli"]
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen([*head, "run", "--config", str(conf)], cwd=base, stderr=err)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._listening():
                return
            time.sleep(0.05)
        raise RuntimeError(f"milter did not start: {self.log.read_text()}")

    def _listening(self) -> bool:
        kind, _, rest = self.socket_spec.partition(":")
        try:
            if kind == "unix":
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(rest)
            else:
                port, _, host = rest.partition("@")
                with socket.create_connection((host, int(port)), timeout=1):
                    pass
            return True
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(20)

    def latencies(self) -> tuple[list[float], list[float]]:
        ms: list[float] = []
        total: list[float] = []
        for line in self.log.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == "message":
                ms.append(float(rec["ms"]))
                total.append(float(rec.get("total_ms", 0)))
        return ms, total


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def run_load(rig: Rig, traffic: str, n: int, sessions: int, dsn_file: Path) -> tuple[float, float]:
    if traffic == "ordinary":
        args = ["-f", "sender@example.net", "-t", "user@sink2.test", "-l", "1024"]
    else:
        args = ["-f", "", "-t", "bounces@sink.test", "-N", "-F", str(dsn_file)]
    cmd = ["smtp-source", "-s", str(sessions), "-m", str(n), *args, f"127.0.0.1:{rig.smtp_port}"]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=600)
    accepted = time.monotonic() - t0
    if not rig.wait_queue(300):
        raise RuntimeError("queue did not drain")
    relayed = time.monotonic() - t0
    return n / accepted, n / relayed


def reconfigure(rig: Rig, spec_pf: str) -> None:
    rig.postconf(f"smtpd_milters = {spec_pf}", f"non_smtpd_milters = {spec_pf}")
    rig.postfix("reload")
    time.sleep(0.5)  # let the new smtpd processes replace the old ones


def latency_probe(rig: Rig, n: int, dsn_file: Path) -> float:
    """One session, one message at a time: ms per bounce message (delayed-ACK stalls show up here)."""
    t0 = time.monotonic()
    subprocess.run(
        [
            "smtp-source",
            "-s",
            "1",
            "-m",
            str(n),
            "-f",
            "",
            "-t",
            "bounces@sink.test",
            "-N",
            "-F",
            str(dsn_file),
            f"127.0.0.1:{rig.smtp_port}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=600,
    )
    return (time.monotonic() - t0) * 1000 / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=1000, help="messages per run (default 1000)")
    ap.add_argument("--sessions", type=int, default=10, help="parallel SMTP sessions (default 10)")
    ap.add_argument("--runs", type=int, default=3, help="rounds over all setups (interleaved); the best run is kept")
    ap.add_argument("--setups", default="none,unix,inet,inet-nofix")
    ap.add_argument("--traffic", default="ordinary,bounce")
    ap.add_argument("--probe", type=int, default=50, help="messages in the single-session latency probe (0: skip)")
    args = ap.parse_args()
    reason = postfix_available()
    if reason or not shutil.which("smtp-source"):
        print(f"cannot run: {reason or 'smtp-source not installed'}", file=sys.stderr)
        return 2

    base = Path(tempfile.mkdtemp(prefix="bm-bench-", dir="/tmp"))
    os.chmod(base, 0o755)
    dsn_file = base / "dsn.eml"
    # no Message-ID: Postfix adds a unique one; -N makes each recipient unique as well
    dsn = M.hard_bounce("bench").replace(b"\r\n", b"\n")
    dsn_file.write_bytes(b"\n".join(x for x in dsn.split(b"\n") if not x.startswith(b"Message-ID:")))
    sink_port = free_port()
    rig = Rig(
        base / "pf",
        sink_ok_port=sink_port,
        extra_transport=f"sink2.test smtp:[127.0.0.1]:{sink_port}\n",
        extra_main_cf={"smtpd_client_connection_count_limit": "0", "default_process_limit": "200"},
    )
    setups = args.setups.split(",")
    traffics = args.traffic.split(",")
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    probes: dict[str, float] = {}
    milters: dict[str, Milter] = {}
    specs: dict[str, str] = {"none": ""}
    try:
        # Every milter runs for the whole benchmark; Postfix is re-pointed between runs, and the
        # setups are interleaved so that a noisy neighbour does not favour one of them.
        for setup in setups:
            if setup == "none":
                continue
            if setup.endswith("unix"):
                spec = f"unix:{base}/{setup}.sock"
                specs[setup] = spec
            else:
                port = free_port()
                spec = f"inet:{port}@127.0.0.1"
                specs[setup] = f"inet:127.0.0.1:{port}"
            milters[setup] = Milter(base, spec, fix=setup != "inet-nofix")
        rig.start()
        for setup in setups:
            if args.probe:
                reconfigure(rig, specs[setup])
                latency_probe(rig, 5, dsn_file)  # warm up
                probes[setup] = latency_probe(rig, args.probe, dsn_file)
                print(f"{setup:12s} 1 session: {probes[setup]:6.1f} ms per bounce message", flush=True)
        for run in range(args.runs):
            for setup in setups:
                reconfigure(rig, specs[setup])
                for traffic in traffics:
                    r = run_load(rig, traffic, args.messages, args.sessions, dsn_file)
                    results.setdefault((setup, traffic), []).append(r)
                    print(
                        f"run {run + 1} {setup:12s} {traffic:9s} accepted {r[0]:7.1f} msg/s   "
                        f"+relayed {r[1]:7.1f} msg/s",
                        flush=True,
                    )
    finally:
        rig.stop()
        for m in milters.values():
            m.stop()
        lat = {setup: m.latencies() for setup, m in milters.items()}
        shutil.rmtree(base, ignore_errors=True)

    print()
    print(
        f"{args.messages} messages per run, best of {args.runs} interleaved runs, {args.sessions} parallel "
        f"sessions, 1 connection per message; load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(f"{'setup':12s} {'traffic':9s} {'accepted/s':>10s} {'ratio':>6s} {'relayed/s':>10s} {'ratio':>6s}  target")
    for (setup, traffic), runs in results.items():
        acc = max(r[0] for r in runs)
        rel = max(r[1] for r in runs)
        base_runs = results.get(("none", traffic))
        base_acc = max(r[0] for r in base_runs) if base_runs else float("nan")
        base_rel = max(r[1] for r in base_runs) if base_runs else float("nan")
        target = "" if setup == "none" else (">=0.80" if traffic == "bounce" else ">=0.95")
        print(f"{setup:12s} {traffic:9s} {acc:10.1f} {acc / base_acc:6.2f} {rel:10.1f} {rel / base_rel:6.2f}  {target}")
    if probes:
        print()
        print("one session, one bounce message at a time (ms per message, lower is better):")
        print("  " + "   ".join(f"{setup} {ms:.1f}" for setup, ms in probes.items()))
    print()
    print("milter latency per handled (bounce) message, from its JSON log:")
    for setup, (ms, total) in lat.items():
        print(
            f"  {setup:12s} n={len(ms):5d}  eom->reply p50 {pct(ms, 50):6.2f} ms  p99 {pct(ms, 99):6.2f} ms   "
            f"MAIL FROM->reply p50 {pct(total, 50):6.2f} ms  p99 {pct(total, 99):6.2f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
