"""Snapshot the classifier's full output over message files, and compare two snapshots.

    .venv/bin/python bench/classify_snapshot.py save OUT.jsonl DIR_OR_FILE...
    .venv/bin/python bench/classify_snapshot.py compare BEFORE.jsonl AFTER.jsonl

A speed change to the classifier must not change what it says: save a snapshot before the change
(e.g. over ../shared/corpus/sisimai-dev and tests/fixtures), save one after, compare. Each line is one
file (path relative to the directory given) with `Classification.as_dict()` in full: kind, detector,
evidence, every recipient field, the original, feedback, markers, error, truncated. `compare` prints
every file whose output differs (field by field) and exits 1 if any does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bouncemilter.classify import classify

SUFFIXES = {".eml", ".msg", ".txt", ""}


def files(roots: list[str]) -> list[tuple[str, Path]]:
    out = []
    for root in roots:
        base = Path(root)
        if base.is_file():
            out.append((base.name, base))
            continue
        for p in sorted(base.rglob("*")):
            if p.is_file() and p.suffix in SUFFIXES and not p.name.startswith("."):
                out.append((f"{base.name}/{p.relative_to(base)}", p))
    return out


def save(out: str, roots: list[str]) -> int:
    n = 0
    with open(out, "w") as f:
        for name, path in files(roots):
            result = classify(path.read_bytes()).as_dict()
            f.write(json.dumps({"file": name, "result": result}, sort_keys=True) + "\n")
            n += 1
    print(f"{n} files classified into {out}")
    return 0


def _load(path: str) -> dict[str, dict]:
    with open(path) as f:
        return {rec["file"]: rec["result"] for rec in map(json.loads, f)}


def _diff(a: object, b: object, where: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            _diff(a.get(k), b.get(k), f"{where}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _diff(x, y, f"{where}[{i}]", out)
    elif a != b:
        out.append(f"  {where}: {a!r} -> {b!r}")


def compare(before: str, after: str) -> int:
    a, b = _load(before), _load(after)
    changed = 0
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            print(f"{name}: only in {'after' if name in b else 'before'}")
            changed += 1
            continue
        lines: list[str] = []
        _diff(a[name], b[name], "", lines)
        if lines:
            changed += 1
            print(name)
            print("\n".join(lines))
    print(f"{len(set(a) & set(b))} files in both, {changed} differ")
    return 1 if changed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save")
    s.add_argument("out")
    s.add_argument("roots", nargs="+")
    c = sub.add_parser("compare")
    c.add_argument("before")
    c.add_argument("after")
    args = ap.parse_args()
    return save(args.out, args.roots) if args.cmd == "save" else compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
