"""Instructions the milter process spends per SMTP session, counted by valgrind (callgrind).

    .venv/bin/python bench/milter_cost.py [--sessions 200] [--traffic ordinary,bounce] [--floor] [--python PATH]

Throughput on a small shared machine moves by 15 % from one minute to the next; an instruction
count does not. This runs `bouncemilter run` under callgrind, plays milter sessions the way
Postfix does (lean negotiation when offered, macros, no-reply events) from a small milter-protocol
client over a unix socket (miltertest, which the unit tests use, cannot decode a negotiation reply
that carries a macro list), one session at a time, and prints the milter's user-space instructions
per session: for ordinary mail (accepted at DATA) and for a DSN bounce (read, classified, committed
to SQLite, accepted). --floor measures bench/floor_pymilter.py the same way: a pymilter milter
that does no work. Kernel time (syscalls, fsync) is not counted. Needs valgrind; takes ~1-3 min.

--python runs both milters under another interpreter, with this checkout first on its path: e.g. the one
`deploy/setup.sh` installs the milter for (Debian's python3 and python3-milter, /opt/bouncemilter/venv/bin/python),
which is what an admin's milter runs on; the development .venv's interpreter is a different build.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import messages as M  # noqa: E402

# milter protocol bits (libmilter's mfdef.h)
NOCONNECT, NR_HELO, NR_MAIL, NR_RCPT, NR_HDR, NR_EOH = 0x1, 0x2000, 0x4000, 0x8000, 0x80, 0x40000
ALL_ACTIONS, ALL_PROTOCOL = 0x1FF, 0x1FFFFF


def packet(cmd: bytes, data: bytes = b"") -> bytes:
    return struct.pack("!I", len(data) + 1) + cmd + data


def strings(*items: str | bytes) -> bytes:
    return b"".join((i.encode() if isinstance(i, str) else i) + b"\0" for i in items)


class Session:
    """One MTA connection to the milter, speaking like Postfix 3.7."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.sock.sendall(packet(b"O", struct.pack("!III", 6, ALL_ACTIONS, ALL_PROTOCOL)))
        reply = self.recv()
        self.protocol = struct.unpack("!I", reply[9:13])[0]

    def recv(self) -> bytes:
        head = self._read(4)
        return self._read(struct.unpack("!I", head)[0])

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("milter closed the connection")
            buf += chunk
        return buf

    def send(self, cmd: bytes, data: bytes = b"", no_reply_bit: int = 0) -> bytes | None:
        self.sock.sendall(packet(cmd, data))
        return None if self.protocol & no_reply_bit else self.recv()

    def envelope(self, sender: str, rcpt: str, queue_id: str) -> bytes:
        if not self.protocol & NOCONNECT:
            self.send(b"C", b"mx.remote.example\0" + b"4" + struct.pack("!H", 25) + b"192.0.2.1\0", 0x1000)
        self.send(b"H", strings("mx.remote.example"), NR_HELO)
        client = strings("{client_addr}", "192.0.2.1", "{client_name}", "mx.remote.example", "{client_port}", "25")
        self.sock.sendall(packet(b"D", b"M" + client))
        self.send(b"M", strings(sender), NR_MAIL)
        self.send(b"R", strings(rcpt), NR_RCPT)
        self.sock.sendall(packet(b"D", b"T" + strings("i", queue_id)))
        reply = self.send(b"T")
        assert reply is not None
        return reply[:1]

    def content(self, raw: bytes) -> bytes:
        head, _, body = raw.partition(b"\r\n\r\n")
        fields = M.header_fields(head)
        for field in fields:
            name, _, value = field.partition(b":")
            self.send(b"L", name + b"\0" + value.strip() + b"\0", NR_HDR)
        self.send(b"N", b"", NR_EOH)
        self.send(b"B", body)
        self.sock.sendall(packet(b"E"))
        while True:
            reply = self.recv()
            if reply[:1] in (b"a", b"c", b"d", b"t", b"r"):
                return reply[:1]

    def close(self) -> None:
        self.sock.sendall(packet(b"Q"))
        self.sock.close()


def run_args(sock: Path, work: Path) -> list[str]:
    """`bouncemilter run`'s arguments for the benchmarks: embedded defaults, a unix socket and a store in `work`,
    every recipient at sink.test a bounce address."""
    return ["run", "--socket", f"unix:{sock}", "--db", str(work / "bounces.db"), "--bounce-address", "@sink.test"]


def play(path: str, traffic: str, n: int, counter: itertools.count) -> None:
    for _ in range(n):
        k = next(counter)
        s = Session(path)
        if traffic == "ordinary":
            assert s.envelope("<sender@example.net>", "<user@other.example>", f"QO{k}") == b"a"
        else:
            assert s.envelope("<>", f"<bounces{k}@sink.test>", f"QB{k}") == b"c"
            raw = M.hard_bounce(f"cost{k}", recipient=f"user{k}@example.org")
            assert s.content(raw) == b"a"
        s.close()


def measure(
    cmd: list[str], sock: Path, traffic: str, sessions: int, work: Path, env: dict[str, str] | None = None
) -> int:
    """Instructions per session of `cmd` (a milter listening on `sock`) for `sessions` sessions."""
    out = work / "callgrind.out"
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"milter did not start under valgrind: {' '.join(cmd)}")
            time.sleep(0.5)
        counter = itertools.count()
        play(str(sock), traffic, 10, counter)  # warm up: first imports, compiled patterns, the database
        subprocess.run(
            ["callgrind_control", "-z", str(proc.pid)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        play(str(sock), traffic, sessions, counter)
        subprocess.run(
            ["callgrind_control", "-d", str(proc.pid)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    dump = work / "callgrind.out.1"  # written by the -d above; the counters then restart for the file at exit
    summary = subprocess.run(["callgrind_annotate", str(dump)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"^([\d,]+) .*PROGRAM TOTALS", summary, re.M)
    if not m:
        raise RuntimeError("no totals in the callgrind output")
    return int(m.group(1).replace(",", "")) // sessions


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=200, help="sessions counted per traffic kind (default 200)")
    ap.add_argument("--traffic", default="ordinary,bounce")
    ap.add_argument("--floor", action="store_true", help="also measure bench/floor_pymilter.py")
    ap.add_argument("--python", default=sys.executable, help="the interpreter to run the milters (default: this one)")
    args = ap.parse_args()
    env = None
    if args.python != sys.executable:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        print(f"interpreter: {args.python}, with {REPO} first on its path")
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if not shutil.which(tool):
            print(f"cannot run: {tool} not installed (apt-get install valgrind)", file=sys.stderr)
            return 2
    milters = {"bouncemilter": None, "pymilter floor": None} if args.floor else {"bouncemilter": None}
    print(f"{'milter':16s} {'traffic':9s} {'instructions/session':>20s}")
    for name in milters:
        for traffic in args.traffic.split(","):
            work = Path(tempfile.mkdtemp(prefix="bm-cost-", dir="/tmp"))
            sock = work / "milter.sock"
            if name == "bouncemilter":
                cmd = [args.python, "-m", "bouncemilter.cli", *run_args(sock, work)]
            else:
                cmd = [args.python, str(REPO / "bench" / "floor_pymilter.py"), f"unix:{sock}", "@sink.test"]
            try:
                per = measure(cmd, sock, traffic, args.sessions, work, env)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            print(f"{name:16s} {traffic:9s} {per:20,d}", flush=True)
    print(
        f"({args.sessions} sessions each, one at a time, after 10 warm-up sessions; user-space instructions "
        "of the milter process, kernel excluded)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
