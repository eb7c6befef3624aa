"""Records per second and commit latency of the two store backends, SQLite and PostgreSQL, in one run.

    .venv/bin/python bench/store_backends.py [--messages 2000] [--writers 1,10]

For each backend and each number of concurrent writers (threads sharing one Store, as the milter's sessions
do), every writer records its share of distinct hard bounces with `Store.record()` (one transaction per
bounce, the suppression policy included), and the time each record() takes until COMMIT returned is its commit
latency. The "group commit" rows write the same way the milter does, through its GroupCommit: writers that
arrive together share one transaction, each still returning only after its rows are committed. The
classification is done before the clock starts: this measures the store only.

"group N/s": the group commit again, with the bounces arriving at N per second (open loop: each is due at its
time, whether or not the store keeps up, and its latency counts from then), the latency at a given load
rather than at saturation (the closed loop rows: writers that never pause).

SQLite: a file in a temp dir (WAL, synchronous=FULL). PostgreSQL: a private server (tests/pg_rig.py) started
for the run with fsync ON and synchronous_commit on (the durable settings), on a loopback TCP port.
Target (issue #10): PostgreSQL p99 <= 10 ms per bounce at 10 writers.

Where the time goes, per record: "client CPU" is this process's CPU time (all writer threads: the store's
Python, the driver, the kernel's share for its sockets; SQLite's whole engine runs here too), "server CPU" that
of the private PostgreSQL's processes (its backends, WAL writer, ...), and "others" the cores the rest of the
machine kept busy meanwhile (other jobs on this shared machine), from /proc. With 10 writers on 2 cores the
sum of the first two per record sets the throughput, and the throughput sets the latency (p50 ~ writers / rate).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bouncemilter.classify import classify  # noqa: E402
from bouncemilter.milter import GroupCommit  # noqa: E402
from bouncemilter.store import INSERT_MESSAGE  # noqa: E402
from bouncemilter.store.core import _capped, _json_list  # noqa: E402
from bouncemilter.suppressions import open_store  # noqa: E402
from tests.conftest import make_meta  # noqa: E402
from tests.e2e import messages as M  # noqa: E402
from tests.pg_rig import PgServer  # noqa: E402


def workload(n: int, offset: int) -> list[tuple]:
    template = classify(M.hard_bounce("bench", recipient="user@example.org"))
    out = []
    for i in range(n):
        k = offset + i
        result = classify(M.hard_bounce(f"bench{k}", recipient=f"user{k}@example.org")) if i < 50 else None
        if result is None:  # same shape as a classified bounce, another address (classify is not under test)
            result = _retarget(template, f"user{k}@example.org")
        out.append((make_meta(k), result, "accept"))
    return out


def _retarget(template, address: str):
    import dataclasses

    rcpt = dataclasses.replace(template.recipients[0], recipient=address)
    return dataclasses.replace(template, recipients=[rcpt])


def _ticks(path: str, fields: slice) -> float:
    try:
        with open(path) as fh:
            return sum(int(x) for x in fh.read().rsplit(")", 1)[-1].split()[fields]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return 0.0


def _server_cpu(server: PgServer | None) -> float:
    """CPU seconds of the private PostgreSQL's processes (the postmaster's children: backends, WAL writer, ...)."""
    if server is None:
        return 0.0
    try:
        with open(os.path.join(server.data, "postmaster.pid")) as fh:
            postmaster = fh.readline().strip()
    except OSError:
        return 0.0
    total = 0.0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    ppid = fh.read().rsplit(")", 1)[-1].split()[1]
            except (OSError, IndexError):
                continue
            if ppid == postmaster:
                total += _ticks(f"/proc/{pid}/stat", slice(11, 13))  # utime, stime
    return total


def _machine_cpu() -> float:
    """CPU seconds every core spent busy (user, nice, system, irq, softirq, steal), from /proc/stat."""
    try:
        with open("/proc/stat") as fh:
            values = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    busy = values[0] + values[1] + values[2] + sum(values[5:8])
    return busy / os.sysconf("SC_CLK_TCK")


def timed(
    writers: int, jobs: list[list[Callable[[], object]]], server: PgServer | None = None, rate: float = 0.0
) -> dict:
    """Start `writers` threads together, each calling its jobs back to back; the latency of each call in ms,
    and the CPU time per call of this process, of the PostgreSQL `server` and of the rest of the machine.

    `rate` > 0: open loop instead, bounces arrive at that rate in all (writer w's kth is due at
    (k * writers + w) / rate seconds), as mail arrives whether or not the store keeps up; a call's latency
    counts from when it was due, so falling behind shows."""
    latencies: list[list[float]] = [[] for _ in range(writers)]
    start = threading.Barrier(writers + 1)
    began = [0.0]

    def writer(w: int) -> None:
        start.wait()
        lat = latencies[w]
        for k, job in enumerate(jobs[w]):
            t0 = time.perf_counter()
            if rate > 0:
                due = began[0] + (k * writers + w) / rate
                if due > t0:
                    time.sleep(due - t0)
                t0 = due
            job()
            lat.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    cpu0, server0, machine0 = time.process_time(), _server_cpu(server), _machine_cpu()
    began[0] = time.perf_counter() + 0.01
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    client = time.process_time() - cpu0
    served = _server_cpu(server) - server0
    others = max(_machine_cpu() - machine0 - client - served, 0.0)
    lat = sorted(x * 1000 for one in latencies for x in one)
    return {
        "records": len(lat),
        "per_s": len(lat) / elapsed,
        "p50": statistics.median(lat),
        "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "client_ms": client / len(lat) * 1000,
        "server_ms": served / len(lat) * 1000,
        "others": others / elapsed,
    }


def run(
    db: str,
    writers: int,
    messages: int,
    offset: int,
    group: bool = False,
    server: PgServer | None = None,
    rate: float = 0.0,
) -> dict:
    store = open_store(db, timeout=10.0)
    # group: through the milter's GroupCommit, as the milter writes (sessions that reach end of message together
    # share one transaction); else each writer calls Store.record() itself, one transaction per bounce
    sink = GroupCommit(store, 10.0) if group else store
    per = messages // writers
    jobs = [workload(per, offset + w * per) for w in range(writers)]
    store.record(*workload(1, offset + 10**7)[0])  # connect and warm up outside the clock
    try:
        return timed(writers, [[functools.partial(sink.record, *item) for item in job] for job in jobs], server, rate)
    finally:
        store.close()


def floor(db: str, writers: int, messages: int, offset: int, server: PgServer | None = None) -> dict:
    """The cheapest durable transaction on the same store, pool and writers: one INSERT of a bounce's messages
    row (same columns, same values, a new idempotency key each) and its COMMIT, without the recipients, the
    suppression policy or any lock. What record() takes above this is our work; this much is the machine (the
    round trip, the engine's CPU, the commit's fsync, the writers sharing 2 cores)."""
    store = open_store(db, timeout=10.0)
    if store.dialect == "postgres":
        from bouncemilter.store.postgres import translate

        text = translate(INSERT_MESSAGE)
        pool = store._pool.pool

        def one(p: tuple) -> None:  # autocommit: the INSERT is its own transaction, committed (fsync) on return
            with pool.connection() as conn:
                conn.execute(text, p, prepare=True).fetchone()

    else:
        lock = store._lock

        def one(p: tuple) -> None:  # the store's writer lock and connection: BEGIN IMMEDIATE, INSERT, COMMIT
            with lock:
                conn = store._conn
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(INSERT_MESSAGE, p)
                conn.execute("COMMIT")

    per = messages // writers
    jobs = [[functools.partial(one, floor_row(offset + w * per + i)) for i in range(per)] for w in range(writers)]
    one(floor_row(offset + 10**7))  # connect and warm up outside the clock
    try:
        return timed(writers, jobs, server)
    finally:
        store.close()


def floor_row(k: int) -> tuple:
    """A messages row like the one record() writes for the kth workload bounce (its own key)."""
    meta = make_meta(k)
    return _capped(
        "2026-05-09T07:35:25.123Z", meta.queue_id, meta.client_addr, meta.client_name, meta.helo, meta.envelope_from,
        _json_list(meta.bounce_addresses), _json_list(meta.verp_recipients), meta.message_id, meta.size, "bounce",
        "dsn", "multipart/report; report-type=delivery-status", "accept", 0.7, "", f"<orig-{k}@example.com>",
        "Newsletter", "news@example.com", f"user{k}@example.org", "", "", "", "[]", 1, f"floor{k}", None, "", 0, 0,
    )  # fmt: skip


def sqlite_utils_cost(rows: int = 3000) -> tuple[float, float]:
    """Microseconds per messages row: plain sqlite3 (the milter's write path) vs sqlite-utils' Table.insert,
    same rows, same database settings, in one transaction each (so the fsync is not what is compared)."""
    import sqlite3

    import sqlite_utils

    out = []
    with tempfile.TemporaryDirectory(prefix="bm-bench-") as tmp:
        for way in ("sqlite3", "sqlite-utils"):
            path = str(Path(tmp) / f"{way}.db")
            open_store(path).close()
            conn = sqlite3.connect(path, isolation_level=None)
            names = [c.strip() for c in INSERT_MESSAGE.split("(", 1)[1].split(")", 1)[0].split(",")]
            params = [
                tuple(f"k{i}" if n == "dedup_key" else (0 if n in ("size", "verified") else "x") for n in names)
                for i in range(rows)
            ]
            db = sqlite_utils.Database(conn)
            table = db["messages"]
            conn.execute("BEGIN")
            t0 = time.perf_counter()
            if way == "sqlite3":
                for p in params:
                    conn.execute(INSERT_MESSAGE, p)
            else:
                for p in params:
                    table.insert(dict(zip(names, p, strict=True)))
            out.append((time.perf_counter() - t0) / rows * 1e6)
            conn.execute("COMMIT")
            conn.close()
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000, help="bounces per backend and writer count")
    ap.add_argument("--writers", default="1,10", help="comma-separated numbers of concurrent writers")
    ap.add_argument(
        "--rate",
        type=float,
        default=500.0,
        help="also the group commit at the most writers with bounces arriving at this rate (per second, open "
        "loop; 0: not)",
    )
    args = ap.parse_args()
    counts = [int(x) for x in args.writers.split(",")]
    pg = PgServer(durable=True)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="bm-bench-") as tmp:
            for way in ("record", "group commit", "floor"):
                for i, writers in enumerate(counts):
                    if way == "group commit" and writers == 1:
                        continue  # one writer: the group commit is the direct call
                    for backend in ("sqlite", "postgresql"):
                        db = str(Path(tmp) / f"b{i}{way}.db") if backend == "sqlite" else pg.new_schema()
                        offset = i * 10**6 + ("record", "group commit", "floor").index(way) * 10**5
                        server = pg if backend == "postgresql" else None
                        if way == "floor":
                            r = floor(db, writers, args.messages, offset, server)
                        else:
                            r = run(db, writers, args.messages, offset, way == "group commit", server)
                        rows.append((backend, way, writers, r))
            if args.rate > 0:  # the milter's way at a given arrival rate: latency when not saturated
                for backend in ("sqlite", "postgresql"):
                    db = str(Path(tmp) / "rate.db") if backend == "sqlite" else pg.new_schema()
                    server = pg if backend == "postgresql" else None
                    r = run(db, max(counts), args.messages, 9 * 10**6, True, server, args.rate)
                    rows.append((backend, f"group {args.rate:g}/s", max(counts), r))
    finally:
        pg.close()
    print(
        f"{'backend':<11} {'how':<13} {'writers':>7} {'records':>8} {'records/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'client CPU':>11} {'server CPU':>11} {'others':>7}"
    )
    for backend, way, writers, r in sorted(rows, key=lambda x: (x[2], x[0], x[1])):
        print(
            f"{backend:<11} {way:<13} {writers:>7} {r['records']:>8} {r['per_s']:>10.0f} {r['p50']:>8.2f} "
            f"{r['p99']:>8.2f} {r['client_ms']:>8.3f} ms {r['server_ms']:>8.3f} ms {r['others']:>7.2f}"
        )
    plain, utils = sqlite_utils_cost()
    print(f"SQLite hot path, one messages row: plain sqlite3 {plain:.1f} us, sqlite-utils Table.insert {utils:.1f} us")
    print("(one record() = one transaction with the suppression policy, timed until COMMIT returned; "
          "SQLite synchronous=FULL, PostgreSQL fsync=on, loopback TCP; CPU per record; others: cores busy with "
          f"other work meanwhile, of {os.cpu_count()})")  # fmt: skip


if __name__ == "__main__":
    main()
