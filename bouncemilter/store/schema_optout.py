"""Store migration 9 (issue #11): opt-outs, the suppression feed and the webhook outbox.

Kept beside store.py (which lists it in MIGRATIONS) because it is long; it imports nothing of the package.

- ``suppressions.source`` may be ``opt-out``: the subscriber's own request (by mail, or `suppress --source
  opt-out` from the handler of a one-click unsubscribe). SQLite cannot change a CHECK constraint in place, so the
  table is rebuilt from its own CREATE statement with the one constraint widened (whatever columns other
  migrations added), with its indexes; the views, which name it, are dropped first and re-created after.
- ``suppression_changes``: one row per change of the list (``add``, ``remove``, or ``update`` when a suppressed
  address changes source or category), written by triggers on ``suppressions``, so every path that changes the
  list (the policy hook, manual commands, rebuild, approve, prune, imports) feeds it without knowing about it.
  Its AUTOINCREMENT id is the feed's cursor: ids are never reused, and SQLite's one writer commits them in
  order. Seeded with an ``add`` for every address suppressed when the migration runs, so a consumer starting at
  cursor 0 gets the whole list.
- ``notify_outbox`` and ``notify_state``: the webhook's durable queue and its position in the changes
  (bouncemilter.notify).
- views: ``recent_opt_outs``; ``domain_rates`` gains an ``opt_outs`` column (counted apart from complaints,
  keeping migration 8's ``unverified``);
  ``suppression_categories`` counts the list by category and source.
"""

from __future__ import annotations

import re
import sqlite3

_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
_CHECK_SOURCE = re.compile(r"CHECK\s*\(\s*source\s+IN\s*\(([^)]*)\)\s*\)", re.I)

_CHANGE_COLUMNS = "at, address, op, source, category, reason, summary, suppressed_at"
FEED_DDL = [
    """CREATE TABLE suppression_changes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        address TEXT NOT NULL,
        op TEXT NOT NULL CHECK (op IN ('add', 'remove', 'update')),
        source TEXT NOT NULL DEFAULT '',
        category TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        summary TEXT NOT NULL DEFAULT '',
        suppressed_at TEXT,
        notify INTEGER NOT NULL DEFAULT 1
    )""",
    "CREATE INDEX idx_suppression_changes_address ON suppression_changes (address, id)",
    f"""CREATE TRIGGER suppressions_feed_insert AFTER INSERT ON suppressions WHEN NEW.state = 'suppressed'
        BEGIN
            INSERT INTO suppression_changes ({_CHANGE_COLUMNS})
            VALUES ({_NOW}, NEW.address, 'add', NEW.source, NEW.category, NEW.reason, NEW.summary, NEW.suppressed_at);
        END""",
    f"""CREATE TRIGGER suppressions_feed_update AFTER UPDATE ON suppressions
        WHEN OLD.state IS NOT NEW.state
          OR (NEW.state = 'suppressed' AND (OLD.source IS NOT NEW.source OR OLD.category IS NOT NEW.category))
        BEGIN
            INSERT INTO suppression_changes ({_CHANGE_COLUMNS})
            VALUES ({_NOW}, NEW.address,
                    CASE WHEN NEW.state != 'suppressed' THEN 'remove'
                         WHEN OLD.state != 'suppressed' THEN 'add' ELSE 'update' END,
                    NEW.source, NEW.category, NEW.reason, NEW.summary, NEW.suppressed_at);
        END""",
    f"""CREATE TRIGGER suppressions_feed_delete AFTER DELETE ON suppressions WHEN OLD.state = 'suppressed'
        BEGIN
            INSERT INTO suppression_changes ({_CHANGE_COLUMNS})
            VALUES ({_NOW}, OLD.address, 'remove', OLD.source, OLD.category, OLD.reason, OLD.summary,
                    OLD.suppressed_at);
        END""",
    f"""INSERT INTO suppression_changes ({_CHANGE_COLUMNS}, notify)
        SELECT {_NOW}, address, 'add', source, category, reason, summary, suppressed_at, 0 FROM suppressions
        WHERE state = 'suppressed' ORDER BY COALESCE(suppressed_at, created_at), address""",
]

OUTBOX_DDL = [
    """CREATE TABLE notify_outbox (
        id INTEGER PRIMARY KEY,
        address TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        claimed_until TEXT,
        last_attempt_at TEXT,
        last_error TEXT NOT NULL DEFAULT '',
        delivered_at TEXT
    )""",
    "CREATE INDEX idx_notify_outbox_due ON notify_outbox (delivered_at, next_attempt_at)",
    "CREATE TABLE notify_state (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
]

_NOW_MINUS = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '{}')"
VIEWS_DDL = [
    f"""CREATE VIEW recent_opt_outs AS
        SELECT r.received_at, r.address, r.domain, r.verified, m.verification, m.detector, m.evidence,
               m.envelope_from, m.bounce_addresses, m.feedback_type, m.queue_id, m.id AS message_row,
               r.id AS recipient_row
        FROM recipients r JOIN messages m ON m.id = r.message_id
        WHERE r.kind = 'opt_out' AND r.received_at >= {_NOW_MINUS.format("-30 days")}
        ORDER BY r.received_at DESC, r.id DESC""",
    "DROP VIEW domain_rates",
    f"""CREATE VIEW domain_rates AS
        SELECT r.domain,
               SUM(r.kind = 'bounce') AS bounces,
               SUM(r.kind = 'bounce' AND r.hard) AS hard,
               SUM(r.kind = 'bounce' AND NOT r.hard) AS soft,
               ROUND(1.0 * SUM(r.kind = 'bounce' AND r.hard) / MAX(SUM(r.kind = 'bounce'), 1), 3) AS hard_rate,
               SUM(r.kind = 'delay') AS delays,
               SUM(r.kind = 'complaint') AS complaints,
               SUM(r.kind = 'opt_out') AS opt_outs,
               SUM(r.verified = 0) AS unverified,
               COUNT(DISTINCT r.address) AS addresses,
               (SELECT COUNT(*) FROM suppressions s WHERE s.domain = r.domain AND s.state = 'suppressed')
                   AS suppressed,
               MAX(r.received_at) AS last_seen
        FROM recipients r
        WHERE r.kind IN ('bounce', 'delay', 'complaint', 'opt_out') AND r.domain != ''
          AND r.received_at >= {_NOW_MINUS.format("-7 days")}
        GROUP BY r.domain
        ORDER BY bounces DESC, complaints DESC, opt_outs DESC, r.domain""",
    """CREATE VIEW suppression_categories AS
        SELECT category, source, COUNT(*) AS addresses, MAX(suppressed_at) AS latest
        FROM suppressions WHERE state = 'suppressed' GROUP BY category, source ORDER BY addresses DESC, category""",
]


def widen_source_check(conn: sqlite3.Connection) -> None:
    """Let suppressions.source be 'opt-out': rebuild the table from its own SQL with the CHECK widened."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'suppressions'").fetchone()
    m = _CHECK_SOURCE.search(row[0]) if row else None
    if m is None or "'opt-out'" in m.group(1):
        return
    create = row[0][: m.end(1)] + ", 'opt-out'" + row[0][m.end(1) :]
    create = re.sub(r"^CREATE TABLE\s+(?:\"suppressions\"|suppressions)", "CREATE TABLE suppressions_new", create)
    indexes = [
        sql
        for (sql,) in conn.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'suppressions' AND type IN ('index', 'trigger')"
            " AND sql IS NOT NULL"
        )
    ]
    # every view may name the table (a view over a dropped table would make the rename fail): out and back in
    views = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'view' ORDER BY rowid").fetchall()
    for name, _ in views:
        conn.execute(f'DROP VIEW "{name}"')
    conn.execute(create)
    conn.execute("INSERT INTO suppressions_new SELECT * FROM suppressions")
    conn.execute("DROP TABLE suppressions")
    conn.execute("ALTER TABLE suppressions_new RENAME TO suppressions")
    for sql in indexes:
        conn.execute(sql)
    for _, sql in views:
        conn.execute(sql)


def migrate_v9(conn: sqlite3.Connection) -> None:
    widen_source_check(conn)
    for sql in (*FEED_DDL, *OUTBOX_DDL, *VIEWS_DDL):
        conn.execute(sql)
