"""The bounce store: SQLite (WAL) with one writer connection, ordered migrations and idempotent inserts.

Schema (version 1)
------------------
``messages``: one row per handled message.
  id, received_at (ISO-8601 UTC, ``2026-05-09T07:35:25.123Z``), queue_id, client_addr, client_name, helo,
  envelope_from, bounce_addresses (JSON list of matched recipients), verp_recipients (JSON list), message_id, size,
  kind, detector, evidence, action (accept|discard|...), processing_ms, error (classifier failure, "" if none),
  original_message_id, original_subject, original_from, original_to, feedback_type, feedback_user_agent,
  feedback_source_ip, autoreply_markers (JSON list), recipient_count, dedup_key (unique).
``recipients``: one row per affected address.
  id, message_id (-> messages.id), received_at, kind (copied from the message), address (the subscriber: the
  VERP-decoded address when the message came to a single VERP address, else the reported one), reported_address
  (as the report names it, "" when it names none), verp_address, domain (of address), action (failed|delayed|
  delivered|...), status (5.1.1), reply_code (550), reason (Sisimai's name), hard (0/1), diagnostic, remote_mta,
  original_message_id.
``schema_version``: version, applied_at — one row per applied migration.

Schema (version 2): ``suppressions`` and ``suppression_log``, kept by `bouncemilter.suppressions` (see there);
its `SuppressionHook` is in ``Store.hooks`` by default.

Schema (version 3): views ``recent_bounces``, ``suppression_list``, ``domain_rates``, ``daily_counts`` (for
Datasette and sqlite3; deploy/datasette/metadata.json describes them).

Schema (version 7): ``recipients.reason_rule``, the classifier rule that decided the reason (NULL before).

Schema (version 8, signed return paths): ``messages.verified`` and ``recipients.verified`` (1 proven to answer
our mail, 0 not, NULL not checked: signing off), ``messages.verification`` (why), ``messages.truncated`` (the
report had more recipients than were read), ``recipients.note`` (e.g. why a hard claim counts as soft); the
``sent`` table (the optional sent log, `bouncemilter.sentlog`); the views gain the verified split.

Why these choices:
- Durability before the SMTP reply: every record() is one ``BEGIN IMMEDIATE`` ... ``COMMIT`` with
  ``synchronous=FULL``; only when COMMIT returned does record() return. Anything else raises StoreError and the
  milter answers TEMPFAIL, so the sending MTA keeps the message and retries.
- A removed or replaced database file would otherwise swallow writes silently (SQLite keeps writing to the
  unlinked inode), so each record() checks that the path still names the file we hold open, before and after
  the commit, and reopens it when the directory has been repaired.
- Idempotency: Postfix gives a retried message a NEW queue id, so (queue id, Message-ID) would not recognise a
  retry. The key is the Message-ID and the report's body digest (`MessageMeta.body_digest`: a different report
  may reuse a Message-ID) with the envelope sender and the matched bounce addresses (what a retry keeps);
  without a Message-ID, `MessageMeta.digest` (a content hash the caller computes over something a retry keeps,
  e.g. the message minus the receiving MTA's own Received: header) in place of the Message-ID; without either,
  the queue id.
- One writer: a lock around one connection (check_same_thread=False); the lock wait and SQLite's busy wait share
  one deadline (`timeout`) so a storm of connections cannot stack up N x timeout.
- Extension points: append to MIGRATIONS (e.g. ``(2, [...CREATE TABLE suppressions...])``) and to
  ``Store.hooks`` (``hook(conn, messages_id, meta, classification, action)``, run inside record()'s transaction,
  so e.g. a suppression update commits or rolls back together with the bounce that caused it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter, length_hint
from typing import TYPE_CHECKING, Any

from ..classify.address import canonical, lookalike
from .schema_checks import migrate_v14
from .schema_optout import migrate_v9
from .sql import policy_reads_function

if TYPE_CHECKING:
    import sqlite_utils

    from ..classify.model import Classification, RecipientResult


class StoreError(Exception):
    """The rows could not be committed durably (locked past the timeout, read-only, disk full, directory gone)."""

    committed = 0  # record_many(): how many items earlier batches committed before this failure


@dataclass
class MessageMeta:
    queue_id: str
    client_addr: str
    client_name: str
    helo: str
    envelope_from: str
    bounce_addresses: list[str]  # matched recipients
    verp_recipients: list[str]  # decoded VERP addresses ("" entries allowed)
    message_id: str
    size: int
    processing_ms: float
    received_at: str = ""  # ISO-8601 UTC; filled by record() when empty
    digest: str = ""  # optional content hash, the idempotency key when there is no Message-ID
    # signed return paths (bouncemilter.verdict): None = not checked; per recipient by recipients.address
    verified: bool | None = None
    verification: str = ""
    recipient_verified: dict[str, bool] = field(default_factory=dict)
    recipient_notes: dict[str, str] = field(default_factory=dict)  # per recipients.address, e.g. the DNS check
    internal: bool = False  # Postfix's own (non_smtpd) path: not an outside client, no per-client cap
    body_digest: str = ""  # the report's content (`report_digest`): tells a retry from another report
    recipients_dropped: int = 0  # recipients past [limits] recipients_per_message: counted, not stored
    unsubscribe: bool = False  # sent to an [unsubscribe] address: what is not a bounce or auto-reply is an opt-out


BUSY_SLACK_MS = 50  # the busy timeout is reset only when the remaining time differs by more than this


_D2 = tuple(f"{i:02d}" for i in range(100))
_D3 = tuple(f"{i:03d}" for i in range(1000))


def fmt_time(dt: datetime) -> str:
    """The store's timestamp text, 2026-05-09T07:35:25.123Z: UTC, so that text order is time order in SQL.
    A naive datetime is taken as UTC. What isoformat(timespec="milliseconds") gives (the fraction truncated), from
    tables: isoformat formats through C's printf, ~21,000 instructions a call, and a bounce's store transaction
    made seven of them (issue #12; this is ~5,500)."""
    tz = dt.tzinfo
    if tz is not None and tz is not UTC:
        dt = dt.astimezone(UTC)
    y = dt.year
    return (
        f"{y if y >= 1000 else f'{y:04d}'}-{_D2[dt.month]}-{_D2[dt.day]}T{_D2[dt.hour]}:{_D2[dt.minute]}:"
        f"{_D2[dt.second]}.{_D3[dt.microsecond // 1000]}Z"
    )


_second: tuple[int, str] = (-1, "")  # (a second of the clock, its text up to the fraction's dot)


def utc_now() -> str:
    """The time now as fmt_time writes it. The text up to the second is kept while the second lasts: a recorded
    bounce asks twice (its received_at and the policy's clock), ~9,000 instructions each through datetime."""
    global _second
    sec, ns = divmod(time.time_ns(), 1_000_000_000)
    second = _second  # one read: another thread may replace it meanwhile
    if second[0] != sec:
        second = _second = (sec, fmt_time(datetime.fromtimestamp(sec, UTC))[:20])
    return second[1] + _D3[ns // 1_000_000] + "Z"


# ---------------------------------------------------------------------------------------------------- migrations

_V1 = [
    """CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        received_at TEXT NOT NULL,
        queue_id TEXT NOT NULL DEFAULT '',
        client_addr TEXT NOT NULL DEFAULT '',
        client_name TEXT NOT NULL DEFAULT '',
        helo TEXT NOT NULL DEFAULT '',
        envelope_from TEXT NOT NULL DEFAULT '',
        bounce_addresses TEXT NOT NULL DEFAULT '[]',
        verp_recipients TEXT NOT NULL DEFAULT '[]',
        message_id TEXT NOT NULL DEFAULT '',
        size INTEGER NOT NULL DEFAULT 0,
        kind TEXT NOT NULL,
        detector TEXT NOT NULL DEFAULT '',
        evidence TEXT NOT NULL DEFAULT '',
        action TEXT NOT NULL DEFAULT '',
        processing_ms REAL NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        original_message_id TEXT NOT NULL DEFAULT '',
        original_subject TEXT NOT NULL DEFAULT '',
        original_from TEXT NOT NULL DEFAULT '',
        original_to TEXT NOT NULL DEFAULT '',
        feedback_type TEXT NOT NULL DEFAULT '',
        feedback_user_agent TEXT NOT NULL DEFAULT '',
        feedback_source_ip TEXT NOT NULL DEFAULT '',
        autoreply_markers TEXT NOT NULL DEFAULT '[]',
        recipient_count INTEGER NOT NULL DEFAULT 0,
        dedup_key TEXT
    )""",
    "CREATE UNIQUE INDEX idx_messages_dedup_key ON messages (dedup_key)",
    "CREATE INDEX idx_messages_received_at ON messages (received_at)",
    "CREATE INDEX idx_messages_kind_received_at ON messages (kind, received_at)",
    "CREATE INDEX idx_messages_queue_id ON messages (queue_id)",
    "CREATE INDEX idx_messages_message_id ON messages (message_id)",
    """CREATE TABLE recipients (
        id INTEGER PRIMARY KEY,
        message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        received_at TEXT NOT NULL,
        kind TEXT NOT NULL,
        address TEXT NOT NULL DEFAULT '',
        reported_address TEXT NOT NULL DEFAULT '',
        verp_address TEXT NOT NULL DEFAULT '',
        domain TEXT NOT NULL DEFAULT '',
        action TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT '',
        reply_code TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        hard INTEGER NOT NULL DEFAULT 0,
        diagnostic TEXT NOT NULL DEFAULT '',
        remote_mta TEXT NOT NULL DEFAULT '',
        original_message_id TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX idx_recipients_message_id ON recipients (message_id)",
    "CREATE INDEX idx_recipients_address ON recipients (address, received_at)",
    "CREATE INDEX idx_recipients_reported_address ON recipients (reported_address)",
    "CREATE INDEX idx_recipients_received_at ON recipients (received_at)",
    "CREATE INDEX idx_recipients_reason ON recipients (reason, received_at)",
    "CREATE INDEX idx_recipients_domain ON recipients (domain, received_at)",
]

# Version 2: the suppression list (bouncemilter.suppressions keeps it; bouncemilter.policy decides).
_V2 = [
    """CREATE TABLE suppressions (
        id INTEGER PRIMARY KEY,
        address TEXT NOT NULL UNIQUE,
        domain TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL CHECK (state IN ('suppressed', 'unsuppressed')),
        source TEXT NOT NULL CHECK (source IN ('policy', 'manual')),
        category TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT '',
        summary TEXT NOT NULL DEFAULT '',
        suppressed_at TEXT,
        first_evidence_at TEXT,
        last_evidence_at TEXT,
        evidence TEXT NOT NULL DEFAULT '[]',
        soft_score INTEGER NOT NULL DEFAULT 0,
        soft_days TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        manual_by TEXT NOT NULL DEFAULT '',
        manual_reason TEXT NOT NULL DEFAULT '',
        manual_at TEXT
    )""",
    "CREATE INDEX idx_suppressions_state ON suppressions (state, suppressed_at)",
    "CREATE INDEX idx_suppressions_domain ON suppressions (domain)",
    """CREATE TABLE suppression_log (
        id INTEGER PRIMARY KEY,
        address TEXT NOT NULL,
        at TEXT NOT NULL,
        action TEXT NOT NULL,
        source TEXT NOT NULL,
        by TEXT NOT NULL DEFAULT '',
        why TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX idx_suppression_log_address ON suppression_log (address, at)",
]

# Version 3: named views for people reading the database (Datasette, sqlite3); deploy/datasette/metadata.json
# describes them. Views rather than Datasette canned queries so that every SQLite client sees the same names.
# The "now"-relative windows use the store's timestamp text format, which compares correctly as text.
# To change a view later, append a migration that drops and re-creates it.
_NOW_MINUS = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '{}')"
_V3 = [
    # bounces, delays and complaints of the last 30 days, one row per address, newest first
    f"""CREATE VIEW recent_bounces AS
        SELECT r.received_at, r.kind, r.address, r.domain, r.reason, r.hard, r.status, r.reply_code, r.action,
               r.diagnostic, r.remote_mta, r.reported_address, m.feedback_type, m.original_subject,
               m.original_message_id, m.detector, m.queue_id, m.client_name, m.id AS message_row, r.id AS recipient_row
        FROM recipients r JOIN messages m ON m.id = r.message_id
        WHERE r.kind IN ('bounce', 'delay', 'complaint') AND r.received_at >= {_NOW_MINUS.format("-30 days")}
        ORDER BY r.received_at DESC, r.id DESC""",
    # the addresses we must stop mailing (what `bouncemilter suppressed` prints)
    """CREATE VIEW suppression_list AS
        SELECT address, domain, category, reason, status, summary, source, suppressed_at, first_evidence_at,
               last_evidence_at, json_array_length(evidence) AS evidence_count, soft_score, manual_by,
               manual_reason, manual_at
        FROM suppressions WHERE state = 'suppressed'
        ORDER BY suppressed_at DESC, address""",
    # per recipient domain over the last 7 days: who bounces, how hard, and how many of its addresses are dead
    f"""CREATE VIEW domain_rates AS
        SELECT r.domain,
               SUM(r.kind = 'bounce') AS bounces,
               SUM(r.kind = 'bounce' AND r.hard) AS hard,
               SUM(r.kind = 'bounce' AND NOT r.hard) AS soft,
               ROUND(1.0 * SUM(r.kind = 'bounce' AND r.hard) / MAX(SUM(r.kind = 'bounce'), 1), 3) AS hard_rate,
               SUM(r.kind = 'delay') AS delays,
               SUM(r.kind = 'complaint') AS complaints,
               COUNT(DISTINCT r.address) AS addresses,
               (SELECT COUNT(*) FROM suppressions s WHERE s.domain = r.domain AND s.state = 'suppressed')
                   AS suppressed,
               MAX(r.received_at) AS last_seen
        FROM recipients r
        WHERE r.kind IN ('bounce', 'delay', 'complaint') AND r.domain != ''
          AND r.received_at >= {_NOW_MINUS.format("-7 days")}
        GROUP BY r.domain
        ORDER BY bounces DESC, complaints DESC, r.domain""",
    # per UTC day and kind: messages and affected addresses (a chart in Datasette, a quick look in sqlite3)
    """CREATE VIEW daily_counts AS
        SELECT SUBSTR(received_at, 1, 10) AS day, kind, COUNT(*) AS messages, SUM(recipient_count) AS recipients
        FROM messages GROUP BY day, kind ORDER BY day DESC, messages DESC""",
]

# Ordered migrations: (version, statements or a callable taking the open connection inside the transaction).
# Append new versions; never edit an applied one.
Migration = tuple[int, list[str] | Callable[[sqlite3.Connection], None]]
# Version 4 (issue #15): mixed-script look-alike addresses are kept but flagged ("lookalike"), on the recipients
# row and on the suppression it causes (classify/address.py decides).
_V4 = [
    "ALTER TABLE recipients ADD COLUMN flags TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE suppressions ADD COLUMN flags TEXT NOT NULL DEFAULT ''",
]

# Version 5 (issue #15): defence in depth against one forged report suppressing thousands. New suppressions past
# the caps ([limits] in the configuration) are held in pending_suppressions until `bouncemilter approve` or
# `reject`; suppression_log records the client each policy suppression came from (the per-client hourly cap
# counts them); messages.recipients_dropped counts the recipients a report named past recipients_per_message.
_V5 = [
    """CREATE TABLE pending_suppressions (
        id INTEGER PRIMARY KEY,
        address TEXT NOT NULL UNIQUE,
        domain TEXT NOT NULL DEFAULT '',
        category TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT '',
        summary TEXT NOT NULL DEFAULT '',
        suppressed_at TEXT,
        first_evidence_at TEXT,
        last_evidence_at TEXT,
        evidence TEXT NOT NULL DEFAULT '[]',
        soft_score INTEGER NOT NULL DEFAULT 0,
        soft_days TEXT NOT NULL DEFAULT '[]',
        held_because TEXT NOT NULL DEFAULT '',
        client_addr TEXT NOT NULL DEFAULT '',
        message_row INTEGER,
        flags TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX idx_pending_suppressions_client ON pending_suppressions (client_addr, created_at)",
    "CREATE INDEX idx_pending_suppressions_message ON pending_suppressions (message_row)",
    "ALTER TABLE suppression_log ADD COLUMN client_addr TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX idx_suppression_log_client ON suppression_log (client_addr, at)",
    "ALTER TABLE messages ADD COLUMN recipients_dropped INTEGER NOT NULL DEFAULT 0",
]

# Version 6 (issue #15): the idempotency key of a message with a Message-ID also covers its content
# (`dedup_key`), so that a different report reusing a Message-ID is stored. Rows stored before keep the key of
# the old formula; dedup_legacy remembers the last of them, and only those are looked up by the old key.
_V6 = [
    "CREATE TABLE dedup_legacy (last_id INTEGER NOT NULL)",
    "INSERT INTO dedup_legacy (last_id) SELECT COALESCE(MAX(id), 0) FROM messages",
]

# Version 7 (issue #8): the classifier rule that decided each recipient's reason ("status:5.1.1",
# "rhost:google/...", 'phrase:userunknown/"no such user"'); NULL for rows stored before, and where no rule applies.
_V7 = ["ALTER TABLE recipients ADD COLUMN reason_rule TEXT"]

# Version 8: signed return paths (issue #9). NULL verified = not checked (signing off, or a row from before):
# such rows count as they always did. The views are re-created with the verified split (keeping what versions
# 4-7 added: recipients.flags and reason_rule, messages.recipients_dropped).
_V8 = [
    "ALTER TABLE messages ADD COLUMN verified INTEGER",
    "ALTER TABLE messages ADD COLUMN verification TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE messages ADD COLUMN truncated INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE recipients ADD COLUMN verified INTEGER",
    "ALTER TABLE recipients ADD COLUMN note TEXT NOT NULL DEFAULT ''",
    """CREATE TABLE sent (
        id INTEGER PRIMARY KEY,
        sent_at TEXT NOT NULL,
        queue_id TEXT NOT NULL DEFAULT '',
        message_id TEXT NOT NULL DEFAULT '',
        envelope_from TEXT NOT NULL DEFAULT '',
        return_path TEXT NOT NULL DEFAULT '',
        token TEXT NOT NULL DEFAULT '',
        recipients TEXT NOT NULL DEFAULT '[]'
    )""",
    "CREATE INDEX idx_sent_message_id ON sent (message_id)",
    "CREATE INDEX idx_sent_token ON sent (token)",
    "CREATE INDEX idx_sent_sent_at ON sent (sent_at)",
    "DROP VIEW recent_bounces",
    f"""CREATE VIEW recent_bounces AS
        SELECT r.received_at, r.kind, r.address, r.domain, r.reason, r.hard, r.verified, r.status, r.reply_code,
               r.action, r.diagnostic, r.remote_mta, r.reported_address, r.note, r.flags, r.reason_rule,
               m.verification, m.feedback_type, m.original_subject, m.original_message_id, m.detector, m.queue_id,
               m.client_name, m.id AS message_row, r.id AS recipient_row
        FROM recipients r JOIN messages m ON m.id = r.message_id
        WHERE r.kind IN ('bounce', 'delay', 'complaint') AND r.received_at >= {_NOW_MINUS.format("-30 days")}
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
               SUM(r.verified = 0) AS unverified,
               COUNT(DISTINCT r.address) AS addresses,
               (SELECT COUNT(*) FROM suppressions s WHERE s.domain = r.domain AND s.state = 'suppressed')
                   AS suppressed,
               MAX(r.received_at) AS last_seen
        FROM recipients r
        WHERE r.kind IN ('bounce', 'delay', 'complaint') AND r.domain != ''
          AND r.received_at >= {_NOW_MINUS.format("-7 days")}
        GROUP BY r.domain
        ORDER BY bounces DESC, complaints DESC, r.domain""",
    "DROP VIEW daily_counts",
    """CREATE VIEW daily_counts AS
        SELECT SUBSTR(received_at, 1, 10) AS day, kind, COUNT(*) AS messages, SUM(recipient_count) AS recipients,
               SUM(recipients_dropped) AS recipients_dropped, SUM(verified = 0) AS unverified
        FROM messages GROUP BY day, kind ORDER BY day DESC, messages DESC""",
]

# Version 9 (issue #11): suppressions.source 'opt-out', the suppression feed (suppression_changes, kept by
# triggers), the webhook outbox and the opt-out views; see schema_optout.py.
# Version 11 (issue #12): the per-client cap (suppressions.Gate) counts a client's policy suppressions of the last
# hour for every new suppression. With idx_suppression_log_client each of them is an index step and a table row
# read for its action and source: 1.53 million instructions per bounce with 1,000 of them (the cap's default),
# 0.65 million with this partial index, which holds only those rows (the count never leaves the index).
_V11 = [
    """CREATE INDEX idx_suppression_log_client_policy ON suppression_log (client_addr, at)
        WHERE action = 'suppress' AND source = 'policy'""",
]

# Version 13 (issue #12): idx_suppression_log_client answers no query since version 11 (the per-client count uses
# the partial index, EXPLAIN QUERY PLAN; nothing else reads suppression_log by client), yet every policy
# suppression wrote an entry into it: one index page less in each such commit. And the partial index gains the
# columns its WHERE names, so that the count is a COVERING index scan: SQLite checks action and source of each row
# counted (it does not drop the terms the partial index implies), which read the table row for every one of them
# (157,000 -> 109,000 instructions for a count of 220). PostgreSQL keeps its indexes (its policy reads are one
# function): a no-op there.
_V13 = [
    "DROP INDEX IF EXISTS idx_suppression_log_client",
    "DROP INDEX IF EXISTS idx_suppression_log_client_policy",
    """CREATE INDEX idx_suppression_log_client_policy ON suppression_log (client_addr, at, action, source)
        WHERE action = 'suppress' AND source = 'policy'""",
]

# Version 15 (issue #12): the per-client cap counts per minute. Counting a client's policy suppressions of the last
# hour walked one index entry per suppression (~500 instructions each: ~110,000 a bounce at 220, 0.5 million at the
# default cap of 1,000). Now a trigger on suppression_log adds each one (action suppress, source policy, with a
# client: exactly the rows the count counted) to its client's bucket of the minute (`at`'s first 16 characters,
# 2026-05-09T07:35), and the count sums at most 61 buckets: those from the minute an hour before the policy's
# clock on (sql.CLIENT_SUPPRESSIONS_SINCE; PostgreSQL counts its log rows over the same window). The partial index
# of versions 11 and 13 then answers no query: dropped (one index page less per new suppression). Seeded from the
# log's last two hours; `prune` deletes buckets older than two hours.
_V15 = [
    """CREATE TABLE client_suppressions (
        client_addr TEXT NOT NULL,
        minute TEXT NOT NULL,
        n INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (client_addr, minute)
    ) WITHOUT ROWID""",
    """INSERT INTO client_suppressions (client_addr, minute, n)
        SELECT client_addr, SUBSTR(at, 1, 16), COUNT(*) FROM suppression_log
        WHERE action = 'suppress' AND source = 'policy' AND client_addr != ''
          AND at >= strftime('%Y-%m-%dT%H:%M', 'now', '-2 hours')
        GROUP BY client_addr, SUBSTR(at, 1, 16)""",
    """CREATE TRIGGER suppression_log_client_count AFTER INSERT ON suppression_log
        WHEN NEW.action = 'suppress' AND NEW.source = 'policy' AND NEW.client_addr != ''
        BEGIN
            INSERT INTO client_suppressions (client_addr, minute, n) VALUES (NEW.client_addr, SUBSTR(NEW.at, 1, 16), 1)
            ON CONFLICT (client_addr, minute) DO UPDATE SET n = n + 1;
        END""",
    "DROP INDEX IF EXISTS idx_suppression_log_client_policy",
]

# Version 16 (issue #12): two indexes every bounce wrote a page of and no query needs (EXPLAIN QUERY PLAN over every
# statement the test suite runs, and the SQL of README and docs): idx_suppression_changes_address (the feed is read
# by id; pruning it scans by time) and idx_messages_kind_received_at (what filters messages by kind filters them by
# time too, which idx_messages_received_at serves: stats --by kind, check; daily_counts reads every row). ~10,000
# instructions each a bounce (an index entry and a page checksummed into the WAL). The same on PostgreSQL.
_V16 = [
    "DROP INDEX IF EXISTS idx_suppression_changes_address",
    "DROP INDEX IF EXISTS idx_messages_kind_received_at",
]

# tables only the SQLite store has (its writer's bookkeeping; every other table and view is on both engines)
SQLITE_ONLY_TABLES = ("client_suppressions",)

MIGRATIONS: list[Migration] = [
    (1, _V1), (2, _V2), (3, _V3), (4, _V4), (5, _V5), (6, _V6), (7, _V7), (8, _V8), (9, migrate_v9),
    (10, []),  # PostgreSQL's feed trigger changes (PG_MIGRATIONS); SQLite's schema is the same
    (11, _V11),
    (12, []),  # PostgreSQL's policy-reads function (PG_MIGRATIONS); SQLite's schema is the same
    (13, _V13),
    (14, migrate_v14),  # CHECK constraints as comparisons (schema_checks.py)
    (15, _V15),
    (16, _V16),
    (17, []),  # PostgreSQL's policy-reads function reads no history of a suppressed or held address; SQLite: the SQL
]  # fmt: skip

# PostgreSQL: the same tables, columns, indexes and views, written for PostgreSQL. A PostgreSQL store starts at
# version 8 (the schema when PostgreSQL support came): one step creates what SQLite's versions 1-8 built. A new
# migration appends its step to BOTH lists, with the same version number (tests/test_store.py compares them).
_PG_NOW_MINUS = "to_char((now() AT TIME ZONE 'UTC') - interval '{}', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
_PG_V8 = [
    """CREATE TABLE messages (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        received_at TEXT NOT NULL,
        queue_id TEXT NOT NULL DEFAULT '',
        client_addr TEXT NOT NULL DEFAULT '',
        client_name TEXT NOT NULL DEFAULT '',
        helo TEXT NOT NULL DEFAULT '',
        envelope_from TEXT NOT NULL DEFAULT '',
        bounce_addresses TEXT NOT NULL DEFAULT '[]',
        verp_recipients TEXT NOT NULL DEFAULT '[]',
        message_id TEXT NOT NULL DEFAULT '',
        size BIGINT NOT NULL DEFAULT 0,
        kind TEXT NOT NULL,
        detector TEXT NOT NULL DEFAULT '',
        evidence TEXT NOT NULL DEFAULT '',
        action TEXT NOT NULL DEFAULT '',
        processing_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        original_message_id TEXT NOT NULL DEFAULT '',
        original_subject TEXT NOT NULL DEFAULT '',
        original_from TEXT NOT NULL DEFAULT '',
        original_to TEXT NOT NULL DEFAULT '',
        feedback_type TEXT NOT NULL DEFAULT '',
        feedback_user_agent TEXT NOT NULL DEFAULT '',
        feedback_source_ip TEXT NOT NULL DEFAULT '',
        autoreply_markers TEXT NOT NULL DEFAULT '[]',
        recipient_count INTEGER NOT NULL DEFAULT 0,
        dedup_key TEXT,
        recipients_dropped INTEGER NOT NULL DEFAULT 0,
        verified INTEGER,
        verification TEXT NOT NULL DEFAULT '',
        truncated INTEGER NOT NULL DEFAULT 0
    )""",
    # the idempotency key is the constraint two MX hosts meet on: INSERT ... ON CONFLICT (dedup_key)
    "CREATE UNIQUE INDEX idx_messages_dedup_key ON messages (dedup_key)",
    "CREATE INDEX idx_messages_received_at ON messages (received_at)",
    "CREATE INDEX idx_messages_kind_received_at ON messages (kind, received_at)",
    "CREATE INDEX idx_messages_queue_id ON messages (queue_id)",
    "CREATE INDEX idx_messages_message_id ON messages (message_id)",
    """CREATE TABLE recipients (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        message_id BIGINT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
        received_at TEXT NOT NULL,
        kind TEXT NOT NULL,
        address TEXT NOT NULL DEFAULT '',
        reported_address TEXT NOT NULL DEFAULT '',
        verp_address TEXT NOT NULL DEFAULT '',
        domain TEXT NOT NULL DEFAULT '',
        action TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT '',
        reply_code TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        hard INTEGER NOT NULL DEFAULT 0,
        diagnostic TEXT NOT NULL DEFAULT '',
        remote_mta TEXT NOT NULL DEFAULT '',
        original_message_id TEXT NOT NULL DEFAULT '',
        flags TEXT NOT NULL DEFAULT '',
        reason_rule TEXT,
        verified INTEGER,
        note TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX idx_recipients_message_id ON recipients (message_id)",
    "CREATE INDEX idx_recipients_address ON recipients (address, received_at)",
    "CREATE INDEX idx_recipients_reported_address ON recipients (reported_address)",
    "CREATE INDEX idx_recipients_received_at ON recipients (received_at)",
    "CREATE INDEX idx_recipients_reason ON recipients (reason, received_at)",
    "CREATE INDEX idx_recipients_domain ON recipients (domain, received_at)",
    """CREATE TABLE suppressions (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        address TEXT NOT NULL UNIQUE,
        domain TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL CHECK (state IN ('suppressed', 'unsuppressed')),
        source TEXT NOT NULL CHECK (source IN ('policy', 'manual')),
        category TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT '',
        summary TEXT NOT NULL DEFAULT '',
        suppressed_at TEXT,
        first_evidence_at TEXT,
        last_evidence_at TEXT,
        evidence TEXT NOT NULL DEFAULT '[]',
        soft_score INTEGER NOT NULL DEFAULT 0,
        soft_days TEXT NOT NULL DEFAULT '[]',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        manual_by TEXT NOT NULL DEFAULT '',
        manual_reason TEXT NOT NULL DEFAULT '',
        manual_at TEXT,
        flags TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX idx_suppressions_state ON suppressions (state, suppressed_at)",
    "CREATE INDEX idx_suppressions_domain ON suppressions (domain)",
    """CREATE TABLE suppression_log (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        address TEXT NOT NULL,
        at TEXT NOT NULL,
        action TEXT NOT NULL,
        source TEXT NOT NULL,
        by TEXT NOT NULL DEFAULT '',
        why TEXT NOT NULL DEFAULT '',
        client_addr TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX idx_suppression_log_address ON suppression_log (address, at)",
    "CREATE INDEX idx_suppression_log_client ON suppression_log (client_addr, at)",
    """CREATE TABLE pending_suppressions (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        address TEXT NOT NULL UNIQUE,
        domain TEXT NOT NULL DEFAULT '',
        category TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT '',
        summary TEXT NOT NULL DEFAULT '',
        suppressed_at TEXT,
        first_evidence_at TEXT,
        last_evidence_at TEXT,
        evidence TEXT NOT NULL DEFAULT '[]',
        soft_score INTEGER NOT NULL DEFAULT 0,
        soft_days TEXT NOT NULL DEFAULT '[]',
        held_because TEXT NOT NULL DEFAULT '',
        client_addr TEXT NOT NULL DEFAULT '',
        message_row BIGINT,
        flags TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX idx_pending_suppressions_client ON pending_suppressions (client_addr, created_at)",
    "CREATE INDEX idx_pending_suppressions_message ON pending_suppressions (message_row)",
    "CREATE TABLE dedup_legacy (last_id BIGINT NOT NULL)",
    "INSERT INTO dedup_legacy (last_id) VALUES (0)",  # no row of a PostgreSQL store has the old key
    """CREATE TABLE sent (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        sent_at TEXT NOT NULL,
        queue_id TEXT NOT NULL DEFAULT '',
        message_id TEXT NOT NULL DEFAULT '',
        envelope_from TEXT NOT NULL DEFAULT '',
        return_path TEXT NOT NULL DEFAULT '',
        token TEXT NOT NULL DEFAULT '',
        recipients TEXT NOT NULL DEFAULT '[]'
    )""",
    "CREATE INDEX idx_sent_message_id ON sent (message_id)",
    "CREATE INDEX idx_sent_token ON sent (token)",
    "CREATE INDEX idx_sent_sent_at ON sent (sent_at)",
    f"""CREATE VIEW recent_bounces AS
        SELECT r.received_at, r.kind, r.address, r.domain, r.reason, r.hard, r.verified, r.status, r.reply_code,
               r.action, r.diagnostic, r.remote_mta, r.reported_address, r.note, r.flags, r.reason_rule,
               m.verification, m.feedback_type, m.original_subject, m.original_message_id, m.detector, m.queue_id,
               m.client_name, m.id AS message_row, r.id AS recipient_row
        FROM recipients r JOIN messages m ON m.id = r.message_id
        WHERE r.kind IN ('bounce', 'delay', 'complaint') AND r.received_at >= {_PG_NOW_MINUS.format("30 days")}
        ORDER BY r.received_at DESC, r.id DESC""",
    """CREATE VIEW suppression_list AS
        SELECT address, domain, category, reason, status, summary, source, suppressed_at, first_evidence_at,
               last_evidence_at, json_array_length(evidence::json) AS evidence_count, soft_score, manual_by,
               manual_reason, manual_at
        FROM suppressions WHERE state = 'suppressed'
        ORDER BY suppressed_at DESC, address""",
    f"""CREATE VIEW domain_rates AS
        SELECT r.domain,
               COUNT(*) FILTER (WHERE r.kind = 'bounce') AS bounces,
               COUNT(*) FILTER (WHERE r.kind = 'bounce' AND r.hard <> 0) AS hard,
               COUNT(*) FILTER (WHERE r.kind = 'bounce' AND r.hard = 0) AS soft,
               ROUND(1.0 * COUNT(*) FILTER (WHERE r.kind = 'bounce' AND r.hard <> 0)
                     / GREATEST(COUNT(*) FILTER (WHERE r.kind = 'bounce'), 1), 3) AS hard_rate,
               COUNT(*) FILTER (WHERE r.kind = 'delay') AS delays,
               COUNT(*) FILTER (WHERE r.kind = 'complaint') AS complaints,
               COUNT(*) FILTER (WHERE r.verified = 0) AS unverified,
               COUNT(DISTINCT r.address) AS addresses,
               (SELECT COUNT(*) FROM suppressions s WHERE s.domain = r.domain AND s.state = 'suppressed')
                   AS suppressed,
               MAX(r.received_at) AS last_seen
        FROM recipients r
        WHERE r.kind IN ('bounce', 'delay', 'complaint') AND r.domain <> ''
          AND r.received_at >= {_PG_NOW_MINUS.format("7 days")}
        GROUP BY r.domain
        ORDER BY bounces DESC, complaints DESC, r.domain""",
    """CREATE VIEW daily_counts AS
        SELECT SUBSTR(received_at, 1, 10) AS day, kind, COUNT(*) AS messages, SUM(recipient_count) AS recipients,
               SUM(recipients_dropped) AS recipients_dropped, COUNT(*) FILTER (WHERE verified = 0) AS unverified
        FROM messages GROUP BY day, kind ORDER BY day DESC, messages DESC""",
]


def _pg_feed_function(create: str, lock: str) -> str:
    """The PostgreSQL trigger function that writes the feed (`lock`: how it orders the feed's ids, versions 9, 10)."""
    return f"""{create} FUNCTION suppressions_feed() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            op TEXT;
            r suppressions%ROWTYPE;
        BEGIN
            IF TG_OP = 'INSERT' THEN
                IF NEW.state <> 'suppressed' THEN RETURN NULL; END IF;
                op := 'add'; r := NEW;
            ELSIF TG_OP = 'DELETE' THEN
                IF OLD.state <> 'suppressed' THEN RETURN NULL; END IF;
                op := 'remove'; r := OLD;
            ELSE
                IF OLD.state IS NOT DISTINCT FROM NEW.state AND NOT (NEW.state = 'suppressed'
                   AND (OLD.source IS DISTINCT FROM NEW.source OR OLD.category IS DISTINCT FROM NEW.category)) THEN
                    RETURN NULL;
                END IF;
                op := CASE WHEN NEW.state <> 'suppressed' THEN 'remove'
                           WHEN OLD.state <> 'suppressed' THEN 'add' ELSE 'update' END;
                r := NEW;
            END IF;
            PERFORM {lock}
            INSERT INTO suppression_changes (at, address, op, source, category, reason, summary, suppressed_at)
            VALUES ({_PG_NOW_MINUS.format("0 seconds")}, r.address, op, r.source, r.category, r.reason,
                    r.summary, r.suppressed_at);
            RETURN NULL;
        END $$"""


# Version 9 (issue #11; SQLite's is schema_optout.migrate_v9): suppressions.source 'opt-out', the suppression
# feed kept by a trigger, the webhook outbox, the opt-out views. The feed's id is a consumer's cursor, so ids
# must become visible in id order: SQLite's single writer gives that; here the trigger takes a transaction lock
# before it draws the id, so changes of the list from several hosts commit one after the other (only changes of
# the list: a bounce for an address already suppressed does not fire it).
_PG_V9 = [
    "ALTER TABLE suppressions DROP CONSTRAINT IF EXISTS suppressions_source_check",
    "ALTER TABLE suppressions ADD CONSTRAINT suppressions_source_check "
    "CHECK (source IN ('policy', 'manual', 'opt-out'))",
    """CREATE TABLE suppression_changes (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
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
    _pg_feed_function("CREATE", "pg_advisory_xact_lock(7310316);  -- the feed's ids commit in order (see above)"),
    """CREATE TRIGGER suppressions_feed AFTER INSERT OR UPDATE OR DELETE ON suppressions
        FOR EACH ROW EXECUTE FUNCTION suppressions_feed()""",
    f"""INSERT INTO suppression_changes (at, address, op, source, category, reason, summary, suppressed_at, notify)
        SELECT {_PG_NOW_MINUS.format("0 seconds")}, address, 'add', source, category, reason, summary,
               suppressed_at, 0 FROM suppressions
        WHERE state = 'suppressed' ORDER BY COALESCE(suppressed_at, created_at), address""",
    """CREATE TABLE notify_outbox (
        id BIGINT PRIMARY KEY,
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
    f"""CREATE VIEW recent_opt_outs AS
        SELECT r.received_at, r.address, r.domain, r.verified, m.verification, m.detector, m.evidence,
               m.envelope_from, m.bounce_addresses, m.feedback_type, m.queue_id, m.id AS message_row,
               r.id AS recipient_row
        FROM recipients r JOIN messages m ON m.id = r.message_id
        WHERE r.kind = 'opt_out' AND r.received_at >= {_PG_NOW_MINUS.format("30 days")}
        ORDER BY r.received_at DESC, r.id DESC""",
    "DROP VIEW domain_rates",
    f"""CREATE VIEW domain_rates AS
        SELECT r.domain,
               COUNT(*) FILTER (WHERE r.kind = 'bounce') AS bounces,
               COUNT(*) FILTER (WHERE r.kind = 'bounce' AND r.hard <> 0) AS hard,
               COUNT(*) FILTER (WHERE r.kind = 'bounce' AND r.hard = 0) AS soft,
               ROUND(1.0 * COUNT(*) FILTER (WHERE r.kind = 'bounce' AND r.hard <> 0)
                     / GREATEST(COUNT(*) FILTER (WHERE r.kind = 'bounce'), 1), 3) AS hard_rate,
               COUNT(*) FILTER (WHERE r.kind = 'delay') AS delays,
               COUNT(*) FILTER (WHERE r.kind = 'complaint') AS complaints,
               COUNT(*) FILTER (WHERE r.kind = 'opt_out') AS opt_outs,
               COUNT(*) FILTER (WHERE r.verified = 0) AS unverified,
               COUNT(DISTINCT r.address) AS addresses,
               (SELECT COUNT(*) FROM suppressions s WHERE s.domain = r.domain AND s.state = 'suppressed')
                   AS suppressed,
               MAX(r.received_at) AS last_seen
        FROM recipients r
        WHERE r.kind IN ('bounce', 'delay', 'complaint', 'opt_out') AND r.domain <> ''
          AND r.received_at >= {_PG_NOW_MINUS.format("7 days")}
        GROUP BY r.domain
        ORDER BY bounces DESC, complaints DESC, opt_outs DESC, r.domain""",
    """CREATE VIEW suppression_categories AS
        SELECT category, source, COUNT(*) AS addresses, MAX(suppressed_at) AS latest
        FROM suppressions WHERE state = 'suppressed' GROUP BY category, source ORDER BY addresses DESC, category""",
]

# Version 10: the feed's order without serialising the hosts' commits. Version 9's trigger held one exclusive lock
# from a change of the list to COMMIT (its fsync included), so every transaction that suppressed an address waited
# for all others doing so (8.4 ms of a PostgreSQL record() at 10 writers in bench/store_backends.py). Now the
# trigger takes the SHARED side of that lock before it draws an id, and a reader of the feed takes the exclusive
# side for a moment (`last_feed_id`): it waits until every transaction holding an id it may not see yet has
# committed or rolled back, reads the last id drawn, and lets go. Every id up to that one is final, so a reader
# that reads no further than it (feed.changes, notify) never skips an id that commits later. Writers no longer
# wait for each other; a reader waits for the changes in flight (a few ms). SQLite's single writer needs nothing.
_PG_V10 = [_pg_feed_function("CREATE OR REPLACE", "pg_advisory_xact_lock_shared(7310316);  -- see version 10")]

# Version 12: the suppression policy's reads for a recorded message as one statement (sql.PG_POLICY_READS, see
# sql.policy_reads_function): a bounce's transaction was 11 statements, each its own round trip. SQLite: nothing.
_PG_V12 = [policy_reads_function("CREATE OR REPLACE")]

# Version 11 is the same statement on both backends (see _V11 above).
# Versions 13 and 14 change SQLite's indexes and CHECK constraints for speed (issue #12): nothing on PostgreSQL.
PG_MIGRATIONS: list[Migration] = [
    (8, _PG_V8), (9, _PG_V9), (10, _PG_V10), (11, _V11), (12, _PG_V12), (13, []), (14, []),
    (15, []),  # the per-minute buckets are SQLite's: PostgreSQL counts its log rows (idx_suppression_log_client)
    (16, _V16),
    (17, _PG_V12),  # bm_policy_reads again: no history of a suppressed or held address (sql.POLICY_READS says why)
]  # fmt: skip


def last_feed_id(conn: Any) -> int:
    """The last id the suppression feed (suppression_changes) ever gave, even if that row was pruned since.

    Every id up to it is final (committed, or rolled back and never to be seen): a reader that reads no further
    misses nothing. On PostgreSQL it is read under the exclusive side of the feed's lock (see version 10), which
    waits for the changes in flight; inside a transaction the lock is kept until it ends."""
    if dialect(conn) == "postgres":
        row = conn.execute(PG_FEED_LAST_ID).fetchone()
    else:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'suppression_changes'").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


# the subquery takes the lock before the outer row reads the sequence (a volatile subquery is not flattened)
PG_FEED_LAST_ID = """SELECT pg_sequence_last_value(pg_get_serial_sequence('suppression_changes', 'id'))
    FROM (SELECT pg_advisory_xact_lock(7310316)) AS settled"""

SCHEMA_VERSION_DDL = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"


def dialect(conn: object) -> str:
    """ "sqlite" or "postgres": which engine a connection (sqlite3, or the PostgreSQL adapter) talks to."""
    if isinstance(conn, sqlite3.Connection):  # first: the milter's hot path asks on every bounce
        return "sqlite"
    return getattr(conn, "dialect", "sqlite")


def has_table(conn: Any, name: str) -> bool:
    if dialect(conn) == "postgres":
        return conn.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()[0]
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


def has_column(conn: Any, table: str, column: str) -> bool:
    if dialect(conn) == "postgres":
        return (
            conn.execute(
                """SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = ? AND column_name = ?""",
                (table, column),
            ).fetchone()
            is not None
        )
    return any(r[1] == column for r in conn.execute(f"PRAGMA table_info({table})"))


def current_version(conn: Any) -> int:
    if not has_table(conn, "schema_version"):
        return 0
    return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0])


def migrate(conn: Any, migrations: list[Migration] | None = None) -> int:
    """Apply the missing migrations, each in its own IMMEDIATE transaction (safe against a concurrent opener;
    on PostgreSQL an advisory lock serialises two hosts opening a new store at once)."""
    pg = dialect(conn) == "postgres"
    if migrations is None:
        migrations = PG_MIGRATIONS if pg else MIGRATIONS
    steps = sorted(migrations, key=lambda m: m[0])
    version = current_version(conn)
    if steps and version >= steps[-1][0]:
        return version  # up to date: no write lock needed (a reader or a second process opening the store)
    for target, step in steps:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if pg:
                conn.execute("SELECT pg_advisory_xact_lock(7310315)")  # any constant: 'bouncemilter migrate'
            conn.execute(SCHEMA_VERSION_DDL)
            version = current_version(conn)
            if version < target:
                if callable(step):
                    step(conn)
                else:
                    for sql in step:
                        conn.execute(sql)
                conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (target, utc_now()))
                version = target
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        # a schema change rewrites many pages once: fold them into the file step by step rather than let the WAL
        # hold every step (a new database's WAL was larger than the database itself)
        if not pg:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return version


def latest_version(db: str) -> int:
    return max(v for v, _ in (PG_MIGRATIONS if is_url(db) else MIGRATIONS))


def is_url(db: object) -> bool:
    """Whether `db` names a PostgreSQL store (a libpq URL) rather than a SQLite file."""
    return isinstance(db, str) and db.startswith(("postgresql://", "postgres://"))


# ---------------------------------------------------------------------------------------------------- the store

RecordHook = Callable[[sqlite3.Connection, int, "MessageMeta", "Classification", str], None]


def _domain(address: str) -> str:
    return address.rpartition("@")[2] if "@" in address else ""


def dedup_key(meta: MessageMeta) -> str | None:
    """What a retried delivery of the same message keeps; None when nothing identifies it (never deduplicated).

    A retry keeps its Message-ID, envelope sender, bounce addresses and content; a different report can reuse
    a Message-ID (a broken or hostile MTA), so the key is the Message-ID *and* the report's content digest
    beside the envelope. Never the queue id or the receiving host: a retry gets a new queue id, and may reach
    another MX sharing the store."""
    mid = meta.message_id.strip()
    if mid and meta.body_digest:
        return "m2:" + hashlib.sha256(f"m2\0{mid}\0{meta.body_digest}\0{_envelope(meta)}".encode(
            "utf-8", "surrogatepass")).hexdigest()[:32]  # fmt: skip
    return legacy_dedup_key(meta)


def _envelope(meta: MessageMeta) -> str:
    addresses = meta.bounce_addresses
    if len(addresses) == 1:  # the usual message: one bounce address (no set to sort)
        return meta.envelope_from.strip().lower() + "\0" + addresses[0].strip().lower()
    return meta.envelope_from.strip().lower() + "\0" + ",".join(sorted({a.strip().lower() for a in addresses}))


def legacy_dedup_key(meta: MessageMeta) -> str | None:
    """The key before migration 6 (and still without a Message-ID): Message-ID and envelope, else the digest."""
    mid = meta.message_id.strip()
    envelope = _envelope(meta)
    if mid:
        basis = f"m\0{mid}\0{envelope}"
    elif meta.digest:
        basis = f"d\0{meta.digest}\0{envelope}"
    elif meta.queue_id.strip():
        basis = f"q\0{meta.queue_id.strip()}"  # at least one SMTP transaction is never recorded twice
    else:
        return None
    return hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()[:32]


INSERT_MESSAGE = """INSERT INTO messages (received_at, queue_id, client_addr, client_name, helo, envelope_from,
    bounce_addresses, verp_recipients, message_id, size, kind, detector, evidence, action, processing_ms, error,
    original_message_id, original_subject, original_from, original_to, feedback_type, feedback_user_agent,
    feedback_source_ip, autoreply_markers, recipient_count, dedup_key, verified, verification, truncated,
    recipients_dropped)
   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
# the columns of a recipients row after message_id (`_recipient_params` gives the values in this order)
RECIPIENT_COLUMNS = """received_at, kind, address, reported_address, verp_address, domain, action, status,
    reply_code, reason, hard, diagnostic, remote_mta, verified, note, original_message_id, flags, reason_rule"""
# SQLite's writer: the message row unless its idempotency key is stored (then no row: the caller looks it up)
_INSERT_MESSAGE_ONCE = INSERT_MESSAGE + " ON CONFLICT (dedup_key) DO NOTHING"
_STORED_KEY = "SELECT id FROM messages WHERE dedup_key = ?"
INSERT_RECIPIENT = f"""INSERT INTO recipients (message_id, {RECIPIENT_COLUMNS})
   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""


class Store:
    """Thread-safe writer. `record()` returns only after the rows are committed, else raises StoreError."""

    dialect = "sqlite"
    writers = 1  # one writer at a time (the milter's GroupCommit batches whoever waits meanwhile)

    def __new__(cls, path: str, *args: Any, **kwargs: Any) -> Store:
        if cls is Store and is_url(path):  # a libpq URL: the PostgreSQL backend, same interface
            from .postgres import PgStore

            return super().__new__(PgStore)
        return super().__new__(cls)

    def __init__(self, path: str, timeout: float = 5.0, policy_hook: RecordHook | None = None) -> None:
        self.path = path
        self.timeout = timeout
        # called inside record()'s transaction after the rows are inserted, so that a bounce and the suppression
        # it causes commit together. The suppression policy is passed in (bouncemilter.store.Store passes
        # suppressions.SuppressionHook by default; set `store.suppressions.policy` from [policy]).
        self.suppressions = policy_hook
        self.hooks: list[RecordHook] = [policy_hook] if policy_hook is not None else []
        self._lock = threading.Lock()
        self._closed = False
        self._conn: sqlite3.Connection | None = None
        self._busy_ms = 0  # the connection's busy timeout (set in _open)
        self._legacy_last = 0
        self._ident: tuple[int, int] | None = None
        self._open()

    # -- connection management

    def _open(self) -> None:
        # Never let SQLite open a read-only file: it would fall back to a read-only connection AND create the -wal
        # and -shm files with the same read-only mode, so a later chmod of the database alone would not repair it.
        for name in (self.path, self.path + "-wal", self.path + "-shm"):
            if os.path.exists(name) and not os.access(name, os.R_OK | os.W_OK):
                raise StoreError(f"{name}: read-only (the milter's user must be able to write it)")
        _create_private(self.path)
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open: {exc}") from exc
        try:
            from .db import refuse_foreign  # here: db.py imports this module

            refuse_foreign(conn, self.path)  # before WAL mode and migrations change another program's file
            if os.path.getsize(self.path) == 0:
                # a new store: before its first page is written (an existing store keeps its page size)
                conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: cannot switch to WAL journal mode (got {mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            version = migrate(conn)
            known = max(v for v, _ in MIGRATIONS)
            if version > known:
                raise StoreError(
                    f"{self.path}: database schema version {version} is newer than this bouncemilter supports "
                    f"({known}); upgrade bouncemilter"
                )
            # the last row stored with the old idempotency key (migration 6): 0 for a database created since
            legacy_last = int(conn.execute("SELECT COALESCE(MAX(last_id), 0) FROM dedup_legacy").fetchone()[0])
            st = os.stat(self.path)
        except (sqlite3.Error, OSError) as exc:
            conn.close()
            raise StoreError(f"{self.path}: cannot prepare the database: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._ident = (st.st_dev, st.st_ino)
        self._busy_ms = int(self.timeout * 1000)  # sqlite3.connect(timeout=) set this busy timeout
        self._legacy_last = legacy_last

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        self._conn = None
        self._ident = None

    def _check_file(self) -> None:
        """Raise StoreError unless the path still names the open database file and it is writable."""
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise StoreError(f"{self.path}: database file is gone: {exc.strerror}") from exc
        if (st.st_dev, st.st_ino) != self._ident:
            raise StoreError(f"{self.path}: database file was replaced")
        if not os.access(self.path, os.W_OK):
            raise StoreError(f"{self.path}: database file is read-only")

    def _ensure_open(self) -> sqlite3.Connection:
        if self._conn is not None:
            try:
                self._check_file()
                return self._conn
            except StoreError:
                self._drop()  # the file moved under us: try to reopen the path (the admin may have repaired it)
        self._open()
        self._check_file()
        assert self._conn is not None
        return self._conn

    def open_reader(self) -> sqlite_utils.Database:
        """A sqlite-utils Database on a new connection, for queries (the caller closes it: `.conn.close()`)."""
        import sqlite_utils  # only readers need it: the milter's write path is plain sqlite3

        return sqlite_utils.Database(sqlite3.connect(self.path, timeout=self.timeout))

    # -- writing

    def record(
        self, meta: MessageMeta, result: Classification, action: str, deadline: float | None = None
    ) -> tuple[int, bool]:
        """Insert one message and its recipients; return (messages.id, inserted). Raises StoreError if not durable.

        `deadline` (time.monotonic()): give up then instead of `timeout` from now (the milter's reply deadline)."""
        return self._locked(lambda conn: self._write(conn, [(meta, result, action)]), deadline)[0]

    def record_many(
        self,
        items: Iterable[tuple[MessageMeta, Classification, str]],
        batch_size: int = 500,
        deadline: float | None = None,
    ) -> list[tuple[int, bool]]:
        """Like record() for many messages, committing every `batch_size` of them in one transaction.

        For batch imports: one fsync per batch instead of one per message. Same idempotency (a key already stored,
        or seen earlier in the same batch, is not inserted again) and the same hooks, run per message inside the
        batch's transaction. A failing batch rolls back as a whole and raises StoreError; earlier batches stay
        committed (`exc.committed` = how many items were), so re-running the import is safe. The lock is taken per
        batch, so a record() from another thread waits for one batch at most.
        """
        out: list[tuple[int, bool]] = []
        batch: list[tuple[MessageMeta, Classification, str]] = []

        def flush() -> None:
            try:
                out.extend(self._locked(lambda conn: self._write(conn, batch), deadline))
            except StoreError as exc:
                exc.committed = len(out)
                raise
            batch.clear()

        for item in items:
            batch.append(item)
            if len(batch) >= max(batch_size, 1):
                flush()
        if batch:
            flush()
        return out

    def _locked(
        self, write: Callable[[sqlite3.Connection], list[tuple[int, bool]]], deadline: float | None = None
    ) -> list[tuple[int, bool]]:
        """Run `write` (one transaction) under the writer lock with one deadline; errors become StoreError."""
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        if not self._lock.acquire(timeout=max(deadline - time.monotonic(), 0.001)):
            raise StoreError(f"{self.path}: store busy until the deadline (store.timeout {self.timeout:g}s)")
        try:
            if self._closed:
                raise StoreError(f"{self.path}: store is closed")
            if time.monotonic() >= deadline:  # waited for another writer of this process all the time there was
                raise StoreError(f"{self.path}: store busy until the deadline (store.timeout {self.timeout:g}s)")
            try:
                conn = self._ensure_open()
                # SQLite's own wait for its lock gets what is left of the deadline (one statement less per
                # record when the writer lock came at once, the usual case)
                remaining_ms = max(int((deadline - time.monotonic()) * 1000), 1)
                if abs(remaining_ms - self._busy_ms) > BUSY_SLACK_MS:
                    conn.execute(f"PRAGMA busy_timeout={remaining_ms}")
                    self._busy_ms = remaining_ms
                results = write(conn)
                if any(inserted for _, inserted in results):
                    self._check_file()  # a commit into an unlinked file is not durable
                return results
            except StoreError:
                self._drop()
                raise
            except (sqlite3.Error, OSError) as exc:
                self._drop()
                raise StoreError(f"{self.path}: not stored: {exc}") from exc
        finally:
            self._lock.release()

    def _write(
        self, conn: sqlite3.Connection, items: list[tuple[MessageMeta, Classification, str]]
    ) -> list[tuple[int, bool]]:
        """One transaction for `items` (a key already stored, or earlier in the batch, is not inserted again)."""
        out: list[tuple[int, bool]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for meta, result, action in items:
                key = dedup_key(meta)
                row = None
                if self._legacy_last and key is not None and key.startswith("m2:"):
                    # a retry of a message stored before migration 6 may have the old key: look up both first
                    row = conn.execute(_STORED_KEY, (key,)).fetchone()
                    if row is None:
                        row = conn.execute(
                            "SELECT id FROM messages WHERE dedup_key = ? AND id <= ?",
                            (legacy_dedup_key(meta), self._legacy_last),
                        ).fetchone()
                if row is None:
                    # The unique key decides (ON CONFLICT DO NOTHING): no lookup before the insert of a new
                    # message, the usual case (issue #12: one statement less per bounce); a key stored before,
                    # or earlier in this transaction, inserts nothing and is looked up then.
                    msg_id = self._insert(conn, key, meta, result, action)
                    if msg_id is not None:
                        out.append((msg_id, True))
                        continue
                    row = conn.execute(_STORED_KEY, (key,)).fetchone()
                out.append((int(row[0]), False))
            conn.execute("COMMIT")
            return out
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def _insert(
        self, conn: sqlite3.Connection, key: str | None, meta: MessageMeta, result: Classification, action: str
    ) -> int | None:
        """The message row, its recipient rows and the hooks, inside the caller's transaction; returns the id
        (None: the key was stored meanwhile, by another host: PostgreSQL's ON CONFLICT DO NOTHING)."""
        received_at = meta.received_at or utc_now()
        rows = _recipient_rows(meta, result)
        params = _message_params(key, meta, result, action, received_at, len(rows))
        msg_id = self._insert_message(conn, params)
        if msg_id is None:
            return None
        recs = _recipient_params(params, rows)
        # one execute per row (usually one) gives each row's id, which the policy's events need (executemany
        # does not report them; reading them back was one more statement per bounce)
        ids = [conn.execute(INSERT_RECIPIENT, (msg_id, *rec)).lastrowid for rec in recs]
        self._run_hooks(conn, msg_id, meta, result, action, params, recs, ids)
        return msg_id

    def _run_hooks(
        self,
        conn: Any,
        msg_id: int,
        meta: MessageMeta,
        result: Classification,
        action: str,
        params: tuple,
        recs: list[tuple],
        ids: list[int],
        prefetched: dict[int, Any] | None = None,
    ) -> None:
        """Each hook, inside the transaction. A hook with `recorded` gets the message's recipients as the policy
        reads them (`new_events`), so it need not read them back; a plain callable gets the classic arguments."""
        events: list[tuple] | None = None
        for hook in self.hooks:
            recorded = getattr(hook, "recorded", None)
            if recorded is None:
                hook(conn, msg_id, meta, result, action)
                continue
            if events is None:
                events = new_events(params, recs, ids)
            recorded(conn, msg_id, meta, result, events, (prefetched or {}).get(id(hook)))

    def _insert_message(self, conn: sqlite3.Connection, params: tuple) -> int | None:
        cur = conn.execute(_INSERT_MESSAGE_ONCE, params)
        return int(cur.lastrowid or 0) if cur.rowcount == 1 else None  # 0 rows: the key is stored

    # -- the sent log (bouncemilter.sentlog): its writer thread calls these

    def record_sent(self, rows: list[tuple]) -> None:
        """Insert sent-log rows (sent_at, queue_id, message_id, envelope_from, return_path, token, recipients JSON)
        in one transaction. Raises StoreError."""
        self._locked(lambda conn: self._sent_write(conn, rows, None))

    def prune_sent(self, before: str) -> int:
        """Delete sent-log rows older than `before` (store timestamp text); returns how many."""
        removed: list[int] = []
        self._locked(lambda conn: self._sent_write(conn, None, (before, removed)))
        return removed[0] if removed else 0

    @staticmethod
    def _sent_write(
        conn: sqlite3.Connection, rows: list[tuple] | None, prune: tuple[str, list[int]] | None
    ) -> list[tuple[int, bool]]:
        # PostgreSQL: the sent log's rows are its own, so it takes the shared side of the store's write lock like
        # the milter's bounces (BEGIN IMMEDIATE there would wait for every host's transactions in flight)
        conn.execute("BEGIN IMMEDIATE" if dialect(conn) == "sqlite" else "BEGIN")
        try:
            if rows:
                conn.executemany(
                    """INSERT INTO sent (sent_at, queue_id, message_id, envelope_from, return_path, token, recipients)
                       VALUES (?, ?, ?, ?, ?, ?, ?)""",
                    [_capped(*r) for r in rows],
                )
            if prune is not None:
                prune[1].append(conn.execute("DELETE FROM sent WHERE sent_at < ?", (prune[0],)).rowcount)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        return []

    def close(self) -> None:
        """Wait for a record() in progress, then close; later record() calls raise StoreError."""
        with self._lock:
            self._closed = True
            self._drop()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


DB_MODE = 0o640  # bounces are personal data: owner and group (a monitoring user), never everyone

# The page size of a new store (SQLite's default is 4096). Every commit checksums each page it dirtied into the WAL
# (~1.1 instructions a byte), one page in each b-tree a bounce writes (~24 of them): 2048-byte pages cut a
# bounce's Store.record() by ~42,000 instructions (issue #12; 1024 cut no more, and leaves index keys over ~230
# bytes to overflow pages). An existing store keeps its pages (docs/performance.md says how to convert one).
PAGE_SIZE = 2048


def _create_private(path: str) -> None:
    """Create the database file DB_MODE whatever the umask (SQLite gives its -wal and -shm files the mode of the
    database file). An existing file keeps its mode: the admin may have chosen another."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, DB_MODE)
    except FileExistsError:
        return
    except OSError:
        return  # sqlite3.connect() reports the problem in its own words
    try:
        os.fchmod(fd, DB_MODE)
    finally:
        os.close(fd)


FIELD_CAP = 8192  # characters per text column: a hostile message must not bloat the database


def _capped(*values: object) -> tuple[object, ...]:
    # the usual row has nothing over the cap: one pass in C (length_hint is 0 for numbers and None) instead of a
    # generator step and isinstance per column (~50 columns a bounce, issue #12)
    if max(map(length_hint, values), default=0) <= FIELD_CAP:
        return values
    return tuple(v[:FIELD_CAP] if isinstance(v, str) and len(v) > FIELD_CAP else v for v in values)


def _capped_row(values: tuple, texts: Callable[[tuple], tuple]) -> tuple:
    """`_capped(*values)` for a row whose text columns `texts` picks (an itemgetter): when those texts together are
    no longer than the cap (a bounce's row: ~500 characters), none is over it - one join in C, where length_hint
    on a number or None looks for __length_hint__. A longer row, or a text column holding something else (None),
    takes the general way."""
    try:
        if len("".join(texts(values))) <= FIELD_CAP:  # all of them together fit: each does
            return values
    except TypeError:
        pass
    return _capped(*values)


# the text columns of INSERT_MESSAGE's values (not size, processing_ms, recipient_count, verified, truncated,
# recipients_dropped; dedup_key is text or None) and of a recipients row's (`_recipient_params`: not hard,
# verified; reason_rule is text or None)
_MESSAGE_TEXTS = itemgetter(*range(9), *range(10, 14), *range(15, 24), 25, 27)
_RECIPIENT_TEXTS = itemgetter(*range(10), 11, 12, 14, 15, 16, 17)


def _json_list(items: object) -> str:
    """A JSON list that fits FIELD_CAP (trailing items dropped), so capping never leaves broken JSON.

    What json.dumps() writes, built by hand for the usual lists (empty, or addresses that need no escaping): the
    json module's encoder costs ~15,000 instructions a call, three times for every stored message."""
    if not items or not isinstance(items, (list, tuple)):  # a tuple of types: `list | tuple` is built every call
        return "[]"
    first = items[0]
    if (  # the usual list: one bounce address (_plain_json written out: a Python call costs more than it)
        len(items) == 1
        and type(first) is str
        and len(first) <= FIELD_CAP // 4
        and first.isascii()
        and first.isprintable()
        and '"' not in first
        and "\\" not in first
    ):
        return '["' + first + '"]'
    texts = [str(item)[: FIELD_CAP // 4] for item in items]
    if all(map(_plain_json, texts)):
        out: list[str] = []
        size = 2
        for text in texts:
            size += len(text) + 4  # the quotes, and ", " between items
            if size > FIELD_CAP:
                break
            out.append(text)
        return '["' + '", "'.join(out) + '"]' if out else "[]"
    out = []
    size = 2
    for text in texts:
        size += len(json.dumps(text)) + 2
        if size > FIELD_CAP:
            break
        out.append(text)
    return json.dumps(out)


def _plain_json(text: str) -> bool:
    """Printable ASCII but '"' and '\\': json.dumps() leaves it as it is (str methods in C: a regex match cost
    twice as much)."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(bool(value))


def verp_addresses(meta: MessageMeta) -> list[str]:
    """The distinct VERP addresses as recipients rows hold them (through the classifier's address check)."""
    if not any(meta.verp_recipients):
        return []
    return list(dict.fromkeys(a for a in (canonical(v).address for v in meta.verp_recipients if v) if a))


def row_address(r: RecipientResult, verp: str) -> str:
    """The address a recipients row is about, and that the suppression policy acts on: the one the sender
    mailed. That is the single VERP subscriber; else the report's Original-Recipient (an alias or a forward
    turned it into the final recipient that failed, which nobody mails); else the reported recipient."""
    return verp or (r.original_recipient or r.recipient or "").strip().lower()


def _recipient_rows(meta: MessageMeta, result: Classification) -> list[tuple]:
    """(address, reported_address, verp_address, domain, action, status, reply_code, reason, hard, diagnostic,
    remote_mta, verified, note, flags, reason_rule) per affected address (verdict.row_addresses mirrors the
    address choice). VERP addresses go through the same address check as reported ones (the classifier's are
    checked already)."""
    verps = verp_addresses(meta)
    # a single VERP address identifies the subscriber the original went to (forwarding may change the reported one)
    verp = verps[0] if len(verps) == 1 else ""
    rows: list[tuple] = []
    seen: set[str] = set()
    for r in result.recipients:
        reported = (r.recipient or "").strip().lower()
        address = row_address(r, verp)
        rows.append(
            (
                address,
                reported,
                verp,
                _domain(address),
                r.action,
                r.status,
                r.reply_code,
                r.reason,
                1 if r.hard else 0,
                r.diagnostic,
                r.remote_mta,
                _flag(meta.recipient_verified.get(address, meta.verified)),
                meta.recipient_notes.get(address, ""),
                _flags(address),
                r.reason_rule or None,
            )
        )
        seen.add(reported)
    if not result.recipients:
        # the report names nobody: the VERP addresses tell us which subscribers it is about
        for v in verps:
            if v not in seen:
                verified = _flag(meta.recipient_verified.get(v, meta.verified))
                rows.append((v, "", v, _domain(v), "", "", "", "", 0, "", "", verified, "", _flags(v), None))
    return rows


def _message_params(
    key: str | None, meta: MessageMeta, result: Classification, action: str, received_at: str, recipients: int
) -> tuple:
    """The messages row's values, in INSERT_MESSAGE's order, capped."""
    original = result.original
    feedback = result.feedback
    values = (
        received_at,
        meta.queue_id,
        meta.client_addr,
        meta.client_name,
        meta.helo,
        meta.envelope_from,
        _json_list(meta.bounce_addresses),
        _json_list(meta.verp_recipients),
        meta.message_id,
        int(meta.size),
        result.kind,
        result.detector,
        result.evidence,
        action,
        float(meta.processing_ms),
        result.error,
        original.message_id if original else "",
        original.subject if original else "",
        original.from_ if original else "",
        original.to if original else "",
        feedback.feedback_type if feedback else "",
        feedback.user_agent if feedback else "",
        feedback.source_ip if feedback else "",
        _json_list(result.autoreply_markers),
        recipients,
        key,
        _flag(meta.verified),
        meta.verification,
        1 if getattr(result, "truncated", False) else 0,
        int(meta.recipients_dropped),
    )
    return _capped_row(values, _MESSAGE_TEXTS)


def _recipient_params(message: tuple, rows: list[tuple]) -> list[tuple]:
    """The recipients rows' values after message_id, in INSERT_RECIPIENT's order, capped (`message`: the
    messages row's values, for received_at, kind and the original's Message-ID)."""
    received_at, kind, omid = message[0], message[10], message[16]
    return [_capped_row((received_at, kind, *r[:-2], omid, *r[-2:]), _RECIPIENT_TEXTS) for r in rows]


def new_events(message: tuple, recs: list[tuple], ids: list[int]) -> list[tuple]:
    """(address, recipients.id, received_at, kind, reason, hard, status, feedback_type, verified) per recipient
    row with an address, in id order: what `sql.HOOK_ROWS` reads back, from the values just inserted."""
    feedback_type = message[20]
    return [
        (rec[2], rid, rec[0], rec[1], rec[9], rec[10], rec[7], feedback_type, rec[13])
        for rec, rid in zip(recs, ids, strict=True)
        if rec[2]
    ]


def _flags(address: str) -> str:
    return "lookalike" if lookalike(address) else ""
