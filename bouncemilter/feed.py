"""The suppression list as a feed: every change since a cursor (`bouncemilter suppressed --changes-since`).

Triggers on ``suppressions`` (store migration 9, store/schema_optout.py) write one ``suppression_changes`` row per
addition, removal, or change of source/category of a suppressed address, whatever changed it. Its id is the
cursor: AUTOINCREMENT ids are never reused, and SQLite's single writer commits them in order; on PostgreSQL the
hosts commit theirs side by side, and a reader reads no further than the last id whose transaction and every
earlier one's is over (`store.core.last_feed_id`, store migration 10). So a reader that saw id N has seen every
change up to N. A consumer keeps the last cursor it processed and asks for what came
after; the answer ends with the next cursor to keep. Cursor 0 is the beginning (the migration seeded an
addition for every address suppressed at the time).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from .store import sql as Q
from .store.core import has_table, last_feed_id

OPS = ("add", "remove", "update")
COLUMNS = Q.FEED_COLUMNS


class CursorError(ValueError):
    """A cursor that is not one, or one this database never gave (another or a restored database)."""


def parse_cursor(text: str | int) -> int:
    value = str(text).strip()
    if not value.isdigit() or len(value) > 18:
        raise CursorError(f"{text!r}: a cursor is the number the previous run printed as next_cursor (0 = start)")
    return int(value)


def last_id(conn: sqlite3.Connection) -> int:
    """The greatest cursor this database ever gave (0 before its first change)."""
    return last_feed_id(conn)


def has_feed(conn: sqlite3.Connection) -> bool:
    return has_table(conn, "suppression_changes")


def changes(
    conn: sqlite3.Connection, cursor: int, limit: int = 0, category: str = ""
) -> tuple[list[dict[str, Any]], int]:
    """The changes after `cursor`, oldest first (at most `limit`; 0 = all), and the next cursor.

    With `category`, only changes of that category are returned; the next cursor still covers every change
    looked at, so the consumer never sees the others again. Raises CursorError for a cursor from the future."""
    newest = last_id(conn)
    if cursor > newest:
        raise CursorError(
            f"cursor {cursor} is ahead of this database's feed (its last change is {newest}): another database, or "
            "one restored from a backup; sync everything again from cursor 0"
        )
    sql = Q.feed_changes(bool(limit))
    # no further than `newest`: every id up to it is final, a later one may still have a smaller one in flight
    params: list[Any] = [cursor, newest, limit] if limit else [cursor, newest]
    # one statement: one snapshot of the database, however long the consumer takes to read it
    rows = [dict(zip(COLUMNS, r, strict=True)) for r in conn.execute(sql, params).fetchall()]
    next_cursor = rows[-1]["id"] if rows else cursor
    if category:
        rows = [r for r in rows if r["category"] == category]
    return rows, next_cursor


def as_record(row: dict[str, Any]) -> dict[str, Any]:
    """A change as the feed prints it: `cursor` is the id to resume after."""
    out = {"cursor": row["id"], **{k: row[k] for k in COLUMNS if k != "id"}}
    return out
