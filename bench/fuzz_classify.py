"""Fuzz the classifier: seeded mutations of the project's own fixtures, a million cases by default.

Corpus: every message under tests/fixtures/ plus the builders of tests/e2e/messages.py (all written for this
project; nothing from ../shared). Each case applies 1-3 mutators, chosen and driven by a random generator seeded
from (--seed, case number), so any case can be rebuilt alone (--case N --dump FILE).

Reports:
- exceptions: classify() raising, or returning with `error` set (it catches its own failures);
- broken invariants: a recipient that is not canonical (classify/address.py) or holds a control character;
- the slowest cases (case number, mutators, size, milliseconds);
- peak resident memory of the process (ru_maxrss).

    .venv/bin/python bench/fuzz_classify.py                       # 1,000,000 cases, seed 15
    .venv/bin/python bench/fuzz_classify.py --cases 20000 --seed 7
    .venv/bin/python bench/fuzz_classify.py --case 123456 --dump /tmp/case.eml

A benchmark, not a test: it prints figures (README, "Hostile input and limits").
"""

from __future__ import annotations

import argparse
import base64
import heapq
import random
import resource
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from bouncemilter.classify import classify  # noqa: E402
from bouncemilter.classify.address import canonical  # noqa: E402

INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u202e", "\u2066", "\ufeff", "\u00ad", "\x1b[2J", "\x00", "\x07", "\x85"]
CHARSETS = [b"utf-8", b"iso-2022-jp", b"shift_jis", b"utf-16", b"utf-7", b"x-bogus", b"", b'"', b"cp1252", b"koi8-r"]


def corpus() -> list[bytes]:
    import messages as M  # tests/e2e/messages.py

    items = [p.read_bytes() for p in sorted((REPO / "tests" / "fixtures").rglob("*.eml"))]
    items += [p.read_bytes() for p in sorted((REPO / "tests" / "fixtures").rglob("*.mbox"))]
    items += [
        M.hard_bounce("fz"),
        M.soft_bounce("fz"),
        M.delay_warning("fz"),
        M.qmail_bounce("fz"),
        M.arf_complaint("fz"),
        M.auto_reply("fz"),
        M.ordinary("fz"),
    ]
    return items


# -- mutators: (rng, message, corpus) -> message ----------------------------------------------------------------


def _pos(rng: random.Random, data: bytes) -> int:
    return rng.randrange(len(data) + 1)


def flip_bytes(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        if b:
            b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)


def invisible_in_address(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    ats = [i for i in range(len(data)) if data[i] == 0x40][:200]
    if not ats:
        return data
    at = rng.choice(ats)
    where = max(0, at - rng.randint(1, 8)) if rng.random() < 0.6 else min(len(data), at + rng.randint(1, 8))
    return data[:where] + rng.choice(INVISIBLE).encode() + data[where:]


def long_local_part(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    ats = [i for i in range(len(data)) if data[i] == 0x40][:200]
    if not ats:
        return data
    at = rng.choice(ats)
    return data[:at] + b"x" * rng.choice([65, 300, 5010, 70_000]) + data[at:]


def repeat_slice(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    if not data:
        return data
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.randint(1, 200))
    return data[:a] + data[a:b] * rng.choice([2, 10, 100, 2000]) + data[b:]


def delete_slice(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    if not data:
        return data
    a = rng.randrange(len(data))
    return data[:a] + data[a + rng.randint(1, 400) :]


def truncate(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    return data[: _pos(rng, data)]


def splice(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    other = rng.choice(pool)
    return data[: _pos(rng, data)] + other[_pos(rng, other) :]


def mangle_boundaries(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:
        return data.replace(b"--\r\n", b"\r\n").replace(b"--\n", b"\n")  # no closing boundary
    if choice == 1:
        return data.replace(b"boundary=", b"boundary=x", 1)
    if choice == 2:
        return data.replace(b"multipart/", b"multipart/" * rng.randint(1, 3))
    return data.replace(b"Content-Type: ", b'Content-Type: multipart/mixed; boundary=""\r\nX: ', 1)


def fold_bomb(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    end = data.find(b"\n\n")
    end = data.find(b"\r\n\r\n") if end < 0 else end
    at = max(end, 0)
    fold = b"X-Fold: a" + b"\r\n " * rng.choice([10, 1000, 20_000]) + b"b\r\n"
    return data[:at] + b"\r\n" + fold + data[at:]


def charset_swap(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    return data.replace(b"charset=", b"charset=" + rng.choice(CHARSETS) + b";x=", rng.randint(1, 3))


def line_endings(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    mode = rng.randrange(3)
    if mode == 0:
        return data.replace(b"\r\n", b"\n")
    if mode == 1:
        return data.replace(b"\r\n", b"\r")
    return data.replace(b"\n", b"\r\n")


def nest(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    for n in range(rng.randint(1, 40)):
        data = (
            b"From: MAILER-DAEMON@x.example\r\nSubject: Undelivered Mail\r\nContent-Type: multipart/report; "
            b"report-type=delivery-status; boundary=b%d\r\n\r\n--b%d\r\nContent-Type: message/rfc822\r\n\r\n"
            % (n, n)
            + data
            + b"\r\n--b%d--\r\n" % n
        )
    return data


def encode_body(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data
    head, body = data[:end], data[end + 4 :]
    if rng.random() < 0.5:
        return head + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(body)
    return head + b"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + body.replace(b"=", b"=3D=\r\n")


def status_codes(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    for old in (b"5.1.1", b"4.2.2", b"550", b"452", b"5.7.1"):
        if old in data:
            new = ".".join(str(rng.randrange(10 ** rng.randint(1, 4))) for _ in range(3)).encode()
            data = data.replace(old, new[: rng.randint(1, len(new))], 1)
    return data


def random_bytes(rng: random.Random, data: bytes, _: list[bytes]) -> bytes:
    return data[: _pos(rng, data)] + rng.randbytes(rng.randint(1, 4096)) + data[_pos(rng, data) :]


MUTATORS: list[Callable[[random.Random, bytes, list[bytes]], bytes]] = [
    flip_bytes,
    invisible_in_address,
    long_local_part,
    repeat_slice,
    delete_slice,
    truncate,
    splice,
    mangle_boundaries,
    fold_bomb,
    charset_swap,
    line_endings,
    nest,
    encode_body,
    status_codes,
    random_bytes,
]


def make_case(seed: int, n: int, pool: list[bytes]) -> tuple[bytes, list[str]]:
    rng = random.Random(seed * 1_000_003 + n)
    data = rng.choice(pool)
    names = []
    for _ in range(rng.randint(1, 3)):
        mutate = rng.choice(MUTATORS)
        data = mutate(rng, data, pool)
        names.append(mutate.__name__)
    return data, names


def broken_invariant(result: object) -> str:
    for r in getattr(result, "recipients", []):
        addr = r.recipient
        if addr and canonical(addr).address != addr:
            return f"recipient not canonical: {addr!r}"
        if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in addr):
            return f"control character in recipient: {addr!r}"
    return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--slowest", type=int, default=10)
    ap.add_argument("--case", type=int, help="rebuild one case (with --dump) instead of running")
    ap.add_argument("--dump", type=Path, help="write the rebuilt case here")
    args = ap.parse_args()
    pool = corpus()
    if args.case is not None:
        data, names = make_case(args.seed, args.case, pool)
        if args.dump:
            args.dump.write_bytes(data)
        t0 = time.perf_counter()
        result = classify(data)
        print(f"case {args.case}: {names}, {len(data):,} bytes, {(time.perf_counter() - t0) * 1000:.1f} ms, "
              f"kind {result.kind}, error {result.error!r}")  # fmt: skip
        return

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    slow: list[tuple[float, int, list[str], int]] = []
    exceptions: list[tuple[int, str]] = []
    invariants: list[tuple[int, str]] = []
    kinds: dict[str, int] = {}
    total_bytes = 0
    t_start = time.perf_counter()
    classify_s = 0.0
    for n in range(args.cases):
        data, names = make_case(args.seed, n, pool)
        total_bytes += len(data)
        t0 = time.perf_counter()
        try:
            result = classify(data)
        except Exception:  # classify() promises never to raise
            exceptions.append((n, traceback.format_exc(limit=3)))
            continue
        took = time.perf_counter() - t0
        classify_s += took
        if result.error:
            exceptions.append((n, result.error))
        bad = broken_invariant(result)
        if bad:
            invariants.append((n, bad))
        kinds[result.kind] = kinds.get(result.kind, 0) + 1
        entry = (took, n, names, len(data))
        if len(slow) < args.slowest:
            heapq.heappush(slow, entry)
        elif took > slow[0][0]:
            heapq.heapreplace(slow, entry)
        if n and n % 100_000 == 0:
            print(f"  {n:,} cases, {time.perf_counter() - t_start:.0f} s", file=sys.stderr)
    wall = time.perf_counter() - t_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"seed {args.seed}: {args.cases:,} cases from {len(pool)} fixtures, {total_bytes / 1e6:,.0f} MB of input")
    print(f"wall {wall:.0f} s, classify {classify_s:.0f} s ({args.cases / classify_s:,.0f} cases/s)")
    print(f"exceptions: {len(exceptions)}; broken invariants: {len(invariants)}")
    for n, text in (exceptions + invariants)[:10]:
        print(f"  case {n}: {text.strip().splitlines()[-1][:200]}")
    print("kinds: " + ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])))
    print(f"peak RSS {peak / 1024:.1f} MiB (at start {rss0 / 1024:.1f} MiB)")
    print("slowest cases (ms in the run; best of 3 timed again alone, which a busy machine does not inflate;")
    print("rebuild one with --case N --dump FILE):")
    for took, n, names, size in sorted(slow, reverse=True):
        data, _ = make_case(args.seed, n, pool)
        alone = min(_timed(data) for _ in range(3))
        print(f"  case {n}: {took * 1000:.1f} ms, alone {alone * 1000:.1f} ms, {size:,} bytes, {' + '.join(names)}")


def _timed(data: bytes) -> float:
    t0 = time.perf_counter()
    classify(data)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
