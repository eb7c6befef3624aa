"""The milter's memory under many slow sessions, with and without the memory budget ([limits] memory).

Starts `bouncemilter run` on a unix socket and plays an MTA with the milter protocol (miltertest): first N idle
connections (what one connection costs), then N sessions that each send a bounce's headers and a large body
but never end the message (a slow or hostile sender holds them open). Prints the milter process's resident
memory (VmRSS, and the peak VmHWM) at each step and how many sessions were deferred (4xx) by the budget.

    .venv/bin/python bench/memory_budget.py                        # 200 sessions of 1.1 MB; budget 64 MiB vs none
    .venv/bin/python bench/memory_budget.py --sessions 400 --size 500000 --budget 33554432

A benchmark, not a test: it prints figures (README, "Limits").
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import miltertest
from miltertest import constants as C

CONFIG = """\
[milter]
socket = "unix:{sock}"
socket_mode = "0600"

[store]
db = "{db}"

[bounce]
addresses = ["bounces@example.com"]

[log]
level = "warning"

[limits]
memory = {budget}
"""

HEADERS = [
    ("From", "MAILER-DAEMON@mx.example.net"),
    ("To", "bounces@example.com"),
    ("Subject", "Undelivered Mail Returned to Sender"),
    ("Message-ID", "<bench@mx.example.net>"),
    ("Content-Type", "text/plain"),
]


def rss_kib(pid: int) -> tuple[int, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.split()[0] if value.split() else "0"
    return int(fields.get("VmRSS", 0)), int(fields.get("VmHWM", 0))


def open_session(sock_path: Path) -> tuple[miltertest.MilterConnection, int, socket.socket]:
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(sock_path))
    conn = miltertest.MilterConnection(s)
    # the classic sequence (miltertest cannot read a negotiation reply with macro lists)
    _, proto = conn.optneg_mta(actions=C.SMFI_V6_ACTS & ~C.SMFIF_SETSYMLIST)
    step(conn, proto, C.SMFIC_CONNECT, hostname="mx.example.net", family="4", port=25, address="192.0.2.1")
    step(conn, proto, C.SMFIC_HELO, helo="mx.example.net")
    return conn, proto, s


def step(conn: miltertest.MilterConnection, proto: int, cmd: bytes, **kw: object) -> bytes:
    no_reply = {
        C.SMFIC_CONNECT: C.SMFIP_NR_CONN,
        C.SMFIC_HELO: C.SMFIP_NR_HELO,
        C.SMFIC_MAIL: C.SMFIP_NR_MAIL,
        C.SMFIC_RCPT: C.SMFIP_NR_RCPT,
        C.SMFIC_HEADER: C.SMFIP_NR_HDR,
        C.SMFIC_EOH: C.SMFIP_NR_EOH,
    }.get(cmd, 0)
    if proto & no_reply:
        conn._send(cmd, **kw)
        return C.SMFIR_CONTINUE
    return conn.send_ar(cmd, **kw)[0]


def hold_message(conn: miltertest.MilterConnection, proto: int, n: int, size: int) -> str:
    """A bounce up to its body, then `size` bytes of body and no end of message. Returns how it ended."""
    for cmd, kw in (
        (C.SMFIC_MAIL, {"args": ["<>"]}),
        (C.SMFIC_RCPT, {"args": ["<bounces@example.com>"]}),
    ):
        if step(conn, proto, cmd, **kw) != C.SMFIR_CONTINUE:
            return "refused"
    conn.send_macro(C.SMFIC_DATA, i=f"Q{n}")
    if step(conn, proto, C.SMFIC_DATA) != C.SMFIR_CONTINUE:
        return "deferred at DATA"
    for name, value in HEADERS:
        step(conn, proto, C.SMFIC_HEADER, name=name, value=value)
    step(conn, proto, C.SMFIC_EOH)
    chunk = "x" * 65000 + "\r\n"  # miltertest encodes str
    sent = 0
    while sent < size:
        reply = conn.send_get(C.SMFIC_BODY, buf=chunk)[0]
        sent += len(chunk)
        if reply == C.SMFIR_TEMPFAIL:
            return "deferred while buffering"
        if reply != C.SMFIR_CONTINUE:
            return "held (body cap reached)"
    return "held"


def run(budget: int, sessions: int, size: int) -> dict[str, object]:
    base = Path(tempfile.mkdtemp(prefix="bm-mem-", dir="/tmp"))
    sock_path, db = base / "milter.sock", base / "bench.db"
    conf = base / "bench.toml"
    conf.write_text(CONFIG.format(sock=sock_path, db=db, budget=budget))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bouncemilter.cli", "run", "--config", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    held: list[tuple[miltertest.MilterConnection, int, socket.socket]] = []
    try:
        deadline = time.monotonic() + 15
        while not sock_path.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the milter did not start")
            time.sleep(0.05)
        time.sleep(0.3)
        start, _ = rss_kib(proc.pid)
        idle = [open_session(sock_path) for _ in range(sessions)]
        time.sleep(0.5)
        with_idle, _ = rss_kib(proc.pid)
        for _, _, s in idle:
            s.close()
        time.sleep(1.0)
        outcomes: dict[str, int] = {}
        for n in range(sessions):
            conn, proto, s = open_session(sock_path)
            how = hold_message(conn, proto, n, size)
            outcomes[how] = outcomes.get(how, 0) + 1
            held.append((conn, proto, s))
        time.sleep(0.5)
        loaded, peak = rss_kib(proc.pid)
        return {
            "budget": budget,
            "rss_start_mib": start / 1024,
            "per_idle_connection_kib": (with_idle - start) / sessions,
            "rss_holding_mib": loaded / 1024,
            "peak_mib": peak / 1024,
            "outcomes": outcomes,
        }
    finally:
        for _, _, s in held:
            with contextlib.suppress(OSError):
                s.close()
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--size", type=int, default=1_100_000, help="body bytes each session sends (default 1.1 MB)")
    ap.add_argument(
        "--budget", type=int, action="append", help="[limits] memory in bytes (repeatable; default 64 MiB and 64 GiB)"
    )
    args = ap.parse_args()
    budgets = args.budget or [64 << 20, 1 << 36]
    print(f"{args.sessions} sessions, {args.size:,} body bytes each, never ending the message")
    for budget in budgets:
        r = run(budget, args.sessions, args.size)
        print(
            f"budget {budget / (1 << 20):,.0f} MiB: RSS {r['rss_start_mib']:.1f} MiB at start, "
            f"{r['per_idle_connection_kib']:.0f} KiB per idle connection, {r['rss_holding_mib']:.1f} MiB holding "
            f"the sessions (peak {r['peak_mib']:.1f} MiB); sessions: {r['outcomes']}"
        )


if __name__ == "__main__":
    main()
