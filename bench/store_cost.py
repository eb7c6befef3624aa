"""Instructions one `Store.record()` of a hard bounce spends (SQLite, the suppression policy included), by callgrind.

    .venv/bin/python bench/store_cost.py [--records 200]

The store's share of `bench/milter_cost.py`, without the milter around it: the bounces are classified first,
then `--records` of them (each to a new address from one SMTP client, as a bounce run delivers them) are
recorded after 20 warm-up records, and only those are counted (callgrind's counters zeroed and dumped around
them by a client request, the helper of `bench/milter_parts.py`). The per-client cap counts the client's
suppressions of the last hour as in the milter bench (from store migration 15 on, per minute bucket: its cost no
longer grows with them). `bench/store_floor.py` gives the least the same rows cost without reads or policy.
Needs valgrind (with its headers) and gcc; takes ~30 s.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "e2e"))


def bounce(k: int) -> tuple[Any, Any]:
    """(MessageMeta, Classification) of the k-th hard bounce of the bench: a new address, one SMTP client."""
    import messages as M

    from bouncemilter.classify import classify
    from bouncemilter.store.core import MessageMeta

    raw = M.hard_bounce(f"cost{k}", recipient=f"user{k}@example.org").replace(b"\r\n", b"\n")
    meta = MessageMeta(
        queue_id=f"QB{k}",
        client_addr="192.0.2.1",
        client_name="mx.remote.example",
        helo="mx.remote.example",
        envelope_from="",
        bounce_addresses=[f"bounces{k}@sink.test"],
        verp_recipients=[],
        message_id=f"<cost{k}@example.net>",
        size=len(raw),
        processing_ms=1.0,
        body_digest=f"digest{k}",
    )
    return meta, classify(raw)


def run(records: int, helper: str, db: str) -> None:
    """Inside callgrind: record the bounces, counting only the measured ones."""
    from bouncemilter.suppressions import open_store

    probe = ctypes.CDLL(helper)
    store = open_store(db)
    items = [bounce(k) for k in range(records + 20)]
    for meta, result in items[:20]:
        store.record(meta, result, "accept")
    probe.bm_zero()
    for meta, result in items[20:]:
        store.record(meta, result, "accept")
    probe.bm_dump(b"records")
    store.close()


def cli(doc: str, run: Callable[[int, str, str], None], script: str, say: str) -> int:
    """The command line of this bench and of bench/store_floor.py: `run` counts `--records` under callgrind."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--inside", nargs=2, help=argparse.SUPPRESS)  # helper, work directory: the run under callgrind
    args = ap.parse_args()
    if args.inside:
        run(args.records, args.inside[0], str(Path(args.inside[1]) / "b.db"))
        return 0
    from milter_parts import probed_totals

    measured = probed_totals(script, ["--records", str(args.records)]).get("records")
    if not measured:
        raise RuntimeError("no dump of the measured records in the callgrind output")
    print(say.format(per=measured[0] // args.records, records=args.records))
    return 0


def main() -> int:
    return cli(
        __doc__,
        run,
        __file__,
        "Store.record() of a hard bounce: {per:,} instructions\n({records} records after 20 warm-up; SQLite, "
        "synchronous=FULL, the suppression policy included)",
    )


if __name__ == "__main__":
    sys.exit(main())
