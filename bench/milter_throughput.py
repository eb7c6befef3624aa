"""Throughput of a real Postfix with and without bouncemilter (loopback only; run as root).

    .venv/bin/python bench/milter_throughput.py [--messages 1000] [--sessions 10] [--runs 3]

A private Postfix (tests/e2e/postfix_rig.py) relays everything to an smtp-sink on 127.0.0.1.
Postfix's smtp-source sends the load: 1 new SMTP connection per message, `--sessions` in parallel.

Traffic:
  ordinary  ~1 KiB messages to user@sink2.test - not a bounce address: the milter accepts at DATA
  bounce    a DSN from <> to NNNbounces@sink.test (smtp-source -N makes each recipient unique, so
            every message is a new row): classified, stored (SQLite, synchronous=FULL), accepted;
            with --add-headers also given four X-Bounce-* headers (off by default, as shipped)

Setups: no milter; bouncemilter on a unix socket; on TCP (with its TCP_NODELAY listener fix); on
TCP without the fix (always adding X-Bounce-* headers, so that its replies are several packets:
the case the fix is for); and "floor-unix" / "floor-inet", a milter in C
(bench/floor_milter.c, built here with gcc and libmilter) that negotiates the same session and
makes the same accept decisions but does no work at all. The floor is what any libmilter milter
costs Postfix on this machine: no milter can do better, so it tells how much of the gap to "no
milter" is ours. Optional setups "pyfloor-unix" / "pyfloor-inet" run its twin in pymilter
(bench/floor_pymilter.py): the price of any pymilter milter.

Prints msgs/s (accepted by Postfix, and accepted+relayed until the queue is empty), the ratio to
"no milter", the milter process's CPU per message (from /proc), a one-session latency probe (ms
per bounce message: a ~40 ms delayed-ACK stall shows up plainly there, whatever the machine's
load), and bouncemilter's own per-message latency p50/p99 from its JSON log (`ms`: end of message
to reply, i.e. classify + commit + actions; `total_ms`: MAIL FROM to reply). The setups run
interleaved and each is compared with the "no milter" run of its own round, because other load on
a small shared machine moves the numbers a lot; the CPU ratio (the machine's CPU per message
without the milter over with it) is the figure that other guests' load moves least.
Takes about 4-6 minutes with the defaults. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
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


def cpu_seconds(pid: int) -> float:
    """user+system CPU of a process and its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU time this machine spent on work so far (all CPUs): user, nice, system, irq, softirq.
    Idle, iowait and steal (time the hypervisor gave to other guests) are left out."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def build_floor(base: Path) -> Path | None:
    """Compile bench/floor_milter.c; None (and a note) when gcc or libmilter's headers are missing."""
    exe = base / "floor_milter"
    cmd = ["gcc", "-O2", "-o", str(exe), str(REPO / "bench" / "floor_milter.c"), "-lmilter", "-lpthread"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        print(f"floor milter not built: {exc}", file=sys.stderr)
        return None
    if res.returncode != 0:
        print(f"floor milter not built (needs gcc and libmilter-dev): {res.stderr.strip()[:300]}", file=sys.stderr)
        return None
    return exe


class Milter:
    def __init__(self, base: Path, socket_spec: str, fix: bool = True, add_headers: bool = False) -> None:
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
            f"[headers]\nadd = {'true' if add_headers else 'false'}\n"
        )
        head = [sys.executable, "-c", NO_FIX] if not fix else [sys.executable, "-m", "bouncemilter.cli"]
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen([*head, "run", "--config", str(conf)], cwd=base, stderr=err)
        self._wait_listening()

    def _wait_listening(self) -> None:
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


class FloorMilter(Milter):
    """bench/floor_milter.c (or floor_pymilter.py): the same session and decisions as bouncemilter, no work."""

    def __init__(self, base: Path, cmd: list[str], socket_spec: str) -> None:
        self.base = base
        self.socket_spec = socket_spec
        self.log = base / f"floor-{len(list(base.glob('floor-*.log')))}.log"
        args = [*cmd, socket_spec, "@sink.test"]
        if not socket_spec.startswith("unix:"):
            args.append("reply")  # like bouncemilter on TCP: a reply to every event
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(args, cwd=base, stderr=err)
        if socket_spec.startswith("unix:"):
            path = socket_spec.partition(":")[2]
            deadline = time.monotonic() + 15
            while not os.path.exists(path) and time.monotonic() < deadline:
                time.sleep(0.05)
            os.chmod(path, 0o666)  # Postfix runs as another user
        self._wait_listening()

    def latencies(self) -> tuple[list[float], list[float]]:
        return [], []


@dataclass(frozen=True)
class Run:
    accepted: float  # messages/s accepted by Postfix
    relayed: float  # messages/s accepted and relayed (queue empty)
    machine_ms: float  # the whole machine's CPU per message (Postfix, load generator, sink, milter, kernel)
    milter_ms: float  # the milter process's CPU per message


def median_ratio(top: list[float], bottom: list[float]) -> float:
    """Median of top[i] / bottom[i] over the rounds both have."""
    pairs = [(t, b) for t, b in zip(top, bottom, strict=False) if b]
    return statistics.median(t / b for t, b in pairs) if pairs else float("nan")


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
    ap.add_argument("--runs", type=int, default=3, help="interleaved rounds over all setups")
    ap.add_argument("--setups", default="none,floor-unix,unix,floor-inet,inet,inet-nofix")
    ap.add_argument("--traffic", default="ordinary,bounce")
    ap.add_argument("--add-headers", action="store_true", help="bouncemilter adds X-Bounce-* headers ([headers] add)")
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
    results: dict[tuple[str, str], list[Run]] = {}
    probes: dict[str, float] = {}
    milters: dict[str, Milter] = {}
    specs: dict[str, str] = {"none": ""}
    floor_exe = build_floor(base) if any(s.startswith("floor") for s in setups) else None
    if floor_exe is None:
        setups = [s for s in setups if not s.startswith("floor")]
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
            if setup.startswith("floor"):
                assert floor_exe is not None
                milters[setup] = FloorMilter(base, [str(floor_exe)], spec)
            elif setup.startswith("pyfloor"):
                milters[setup] = FloorMilter(base, [sys.executable, str(REPO / "bench" / "floor_pymilter.py")], spec)
            else:
                # inet-nofix always adds headers: a reply of several packets is what the fix is for
                nofix = setup == "inet-nofix"
                milters[setup] = Milter(base, spec, fix=not nofix, add_headers=args.add_headers or nofix)
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
                    proc = milters[setup].proc if setup in milters else None
                    c0 = cpu_seconds(proc.pid) if proc else 0.0
                    b0 = busy_seconds()
                    acc, rel = run_load(rig, traffic, args.messages, args.sessions, dsn_file)
                    b1 = busy_seconds()
                    c1 = cpu_seconds(proc.pid) if proc else 0.0
                    r = Run(acc, rel, (b1 - b0) * 1000 / args.messages, (c1 - c0) * 1000 / args.messages)
                    results.setdefault((setup, traffic), []).append(r)
                    print(
                        f"run {run + 1} {setup:12s} {traffic:9s} accepted {r.accepted:7.1f} msg/s   "
                        f"+relayed {r.relayed:7.1f} msg/s   machine CPU {r.machine_ms:.2f} ms/msg   "
                        f"milter CPU {r.milter_ms:.2f} ms/msg",
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
        f"{args.messages} messages per run, {args.runs} interleaved runs, {args.sessions} parallel sessions, "
        f"1 connection per message; load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"{'setup':12s} {'traffic':9s} {'best acc/s':>10s} {'ratio':>6s} {'rel. ratio':>10s} {'CPU ratio':>9s} "
        f"{'machine CPU':>11s} {'milter CPU':>10s} {'vs floor':>8s}  target"
    )
    for (setup, traffic), runs in results.items():
        base_runs = results.get(("none", traffic), [])
        # each run against the "no milter" run of the same round (same minute, same neighbours)
        acc_ratio = median_ratio([r.accepted for r in runs], [b.accepted for b in base_runs])
        rel_ratio = median_ratio([r.relayed for r in runs], [b.relayed for b in base_runs])
        cpu_ratio = median_ratio([b.machine_ms for b in base_runs], [r.machine_ms for r in runs])
        floor = "floor-unix" if "unix" in setup else "floor-inet" if "inet" in setup else ""
        floor = "" if setup.startswith("floor") else floor
        floor_runs = results.get((floor, traffic), [])
        vs_floor = median_ratio([r.accepted for r in runs], [f.accepted for f in floor_runs])
        milter_ms = statistics.median(r.milter_ms for r in runs)
        target = "" if setup == "none" else (">=0.80" if traffic == "bounce" else ">=0.95")
        print(
            f"{setup:12s} {traffic:9s} {max(r.accepted for r in runs):10.1f} {acc_ratio:6.2f} {rel_ratio:10.2f} "
            f"{cpu_ratio:9.2f} {statistics.median(r.machine_ms for r in runs):8.2f} ms "
            + (f"{milter_ms:7.2f} ms" if setup != "none" else " " * 10)
            + (f" {vs_floor:8.2f}" if floor_runs else " " * 9)
            + f"  {target}"
        )
    print(
        "ratio / rel. ratio: messages/s accepted / accepted and relayed, to no milter in the same round (median\n"
        "of rounds); CPU ratio: the machine's CPU per message without the milter over with it (median of rounds),\n"
        "i.e. the throughput ratio of a machine that is CPU-bound, unmoved by other guests' load; machine and\n"
        "milter CPU: per message, median; vs floor: accepted/s to the C floor milter's on the same socket kind."
    )
    if probes:
        print()
        print("one session, one bounce message at a time (ms per message, lower is better):")
        print("  " + "   ".join(f"{setup} {ms:.1f}" for setup, ms in probes.items()))
    print()
    print("milter latency per handled (bounce) message, from its JSON log:")
    for setup, (ms, total) in lat.items():
        if "floor" in setup:
            continue
        print(
            f"  {setup:12s} n={len(ms):5d}  eom->reply p50 {pct(ms, 50):6.2f} ms  p99 {pct(ms, 99):6.2f} ms   "
            f"MAIL FROM->reply p50 {pct(total, 50):6.2f} ms  p99 {pct(total, 99):6.2f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
