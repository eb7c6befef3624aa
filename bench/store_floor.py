"""The least any SQLite store of our schema can spend on a bounce: the rows alone, by callgrind.

    .venv/bin/python bench/store_floor.py [--records 200]

`bench/store_cost.py` counts `Store.record()` of a hard bounce: the rows, the idempotency check and the
suppression policy's reads and decisions. This counts only the writes that record() leaves behind, done as
plainly as Python's sqlite3 allows: one real record() writes a bounce first, then each measured iteration
inserts copies of the rows it wrote (the message, its recipient, the new suppression and its log row; the
feed's row comes from the schema's own trigger) with fresh unique values, in one transaction (BEGIN
IMMEDIATE ... COMMIT, WAL, synchronous=FULL, the store's indexes and triggers as they are). No reads, no
policy, no Python of ours between the statements: what the schema itself costs, the floor under the
store's share of issue #12's target. Needs valgrind (with its headers) and gcc; takes ~30 s.
"""

from __future__ import annotations

import ctypes
import sqlite3
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests" / "e2e"))

# the rows one bounce leaves, and the columns that must differ from one copy to the next (unique keys)
TABLES = {
    "messages": ("dedup_key", "queue_id", "message_id"),
    "recipients": ("address", "reported_address"),
    "suppressions": ("address",),
    "suppression_log": ("address",),
}


def _rows(conn: sqlite3.Connection) -> dict[str, dict[str, object]]:
    out = {}
    for table in TABLES:
        cur = conn.execute(f"SELECT * FROM {table} ORDER BY id DESC LIMIT 1")
        row = cur.fetchone()
        if row is None:
            raise RuntimeError(f"record() wrote no {table} row")
        out[table] = dict(zip([d[0] for d in cur.description], row, strict=True))
    return out


def run(records: int, helper: str, db: str) -> None:
    """Inside callgrind: one real record(), then the plain inserts of its rows, counting only those."""
    from store_cost import bounce

    from bouncemilter.suppressions import open_store

    probe = ctypes.CDLL(helper)
    store = open_store(db)
    meta, result = bounce(0)
    store.record(meta, result, "accept")
    store.close()

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    rows = _rows(conn)
    plans = []
    for table, row in rows.items():
        cols = [c for c in row if c != "id"]
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        plans.append((table, sql, cols))

    def one(k: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        msg_id = 0
        for table, sql, cols in plans:
            row = rows[table]
            values = [f"{k}.{row[c]}" if c in TABLES[table] else row[c] for c in cols]
            if table == "recipients":
                values[cols.index("message_id")] = msg_id
            cur = conn.execute(sql, values)
            if table == "messages":
                msg_id = cur.lastrowid
        conn.execute("COMMIT")

    for k in range(1, 21):
        one(k)
    probe.bm_zero()
    for k in range(21, 21 + records):
        one(k)
    probe.bm_dump(b"records")
    conn.close()


def main() -> int:
    from store_cost import cli

    return cli(
        __doc__,
        run,
        __file__,
        "the rows of one hard bounce, inserted plainly: {per:,} instructions\n({records} transactions after 20 "
        "warm-up; WAL, synchronous=FULL, the store's indexes and triggers)",
    )


if __name__ == "__main__":
    sys.exit(main())
