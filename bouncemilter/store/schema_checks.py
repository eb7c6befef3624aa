"""SQLite store migration 14 (issue #12): CHECK constraints written as comparisons instead of IN lists.

SQLite evaluates ``CHECK (x IN ('a', 'b', 'c'))`` (three constants or more) by building a temporary b-tree of the
list on every statement that writes the row: ~20,000 instructions each time. Every new suppression paid it twice
(``suppressions.source``, and ``suppression_changes.op`` through the feed trigger). ``x = 'a' OR x = 'b' OR
x = 'c'`` accepts exactly the same rows and costs a few comparisons. SQLite cannot alter a CHECK in place, so the
two tables are rebuilt from their own SQL (as migration 9 did), keeping their rows, ids, indexes and triggers,
and the feed's AUTOINCREMENT counter (a cursor a consumer holds must never be given again). PostgreSQL evaluates
its CHECKs without that cost: nothing to do there.
"""

from __future__ import annotations

import re
import sqlite3

_CHECK_IN = re.compile(r"CHECK\s*\(\s*(\w+)\s+IN\s*\(([^)]*)\)\s*\)", re.I)
TABLES = ("suppressions", "suppression_changes")


def comparisons(create: str) -> str:
    """`create` (a CREATE TABLE) with each CHECK (col IN (three or more literals)) as an OR of comparisons."""

    def rewrite(m: re.Match[str]) -> str:
        values = re.findall(r"'(?:[^']|'')*'", m.group(2))
        if len(values) < 3:
            return m.group(0)  # SQLite compares a list of one or two without a temporary b-tree
        return "CHECK (" + " OR ".join(f"{m.group(1)} = {v}" for v in values) + ")"

    return _CHECK_IN.sub(rewrite, create)


def migrate_v14(conn: sqlite3.Connection) -> None:
    tables = {
        name: sql
        for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
        if name in TABLES and comparisons(sql) != sql
    }
    if not tables:
        return
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'suppression_changes'").fetchone()
    # the triggers and views name these tables (a rename next to a dropped table they name fails): out and back in
    others = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE type IN ('trigger', 'view') AND sql IS NOT NULL ORDER BY rowid"
    ).fetchall()
    for kind, name, _ in others:
        conn.execute(f'DROP {kind.upper()} "{name}"')
    for name, sql in tables.items():
        indexes = [
            s
            for (s,) in conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (name,)
            )
        ]
        create = re.sub(rf'^CREATE TABLE\s+(?:"{name}"|{name}\b)', f"CREATE TABLE {name}_new", comparisons(sql))
        conn.execute(create)
        conn.execute(f"INSERT INTO {name}_new SELECT * FROM {name}")
        conn.execute(f"DROP TABLE {name}")
        conn.execute(f"ALTER TABLE {name}_new RENAME TO {name}")
        for s in indexes:
            conn.execute(s)
    if seq is not None:  # ids the feed gave (and pruned since) are never given again
        conn.execute("DELETE FROM sqlite_sequence WHERE name = 'suppression_changes'")
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('suppression_changes', ?)", (seq[0],))
    for _, _, sql in others:
        conn.execute(sql)
