"""Every statement the store's users run, by name: the store owns the SQL, each engine's in one place.

The statements here are SQLite's, and PostgreSQL's too wherever SQL allows one text (the PostgreSQL adapter
turns ? marks into its own, `postgres.translate`). Where the engines differ, the PostgreSQL text sits under
"PostgreSQL" at the end with a PG_ name, and the caller picks by engine (`store.dialect(conn)`). The schema
(DDL and migrations) is in `core.py`, the milter's own inserts (`INSERT_MESSAGE`, recipients) in `Store`.

Modules that run these: suppressions (the policy hook and every change of the list), reports (stats, check),
maintenance (prune, backup), notify (the webhook outbox), feed, suppress_import, ingest/fetch/sentlog (their
read-only lookups), doctor and the CLI readers. Transaction control (BEGIN IMMEDIATE, COMMIT, ROLLBACK) stays
with the code whose transaction it is.
"""

from __future__ import annotations

import functools

from ..policy import COUNTING_KINDS

EVIDENCE_CAP = 200  # evidence ids kept per address: the trigger first, then the most recent

# the columns the policy reads for one event (suppressions._event)
EVENT_COLUMNS = """r.id, r.received_at, r.kind, r.reason, r.hard, r.status, m.feedback_type, r.verified"""
# Only mail to a configured bounce address may move the suppression list. Null-sender mail to anyone else
# (match_null_sender) is a DSN about an employee's own mail: recorded at most, never evidence against the
# addresses it names.
TO_BOUNCE_ADDRESS = "m.bounce_addresses != '[]'"
KINDS_SQL = "(" + ", ".join(f"'{k}'" for k in COUNTING_KINDS) + ")"

# the same kinds as comparisons: SQLite builds a temporary b-tree for an IN list of three or more constants that no
# index serves, on every run (~8,000 instructions: the policy's read of each bounce, issue #12)
KINDS_OR = "(" + " OR ".join(f"r.kind = '{k}'" for k in COUNTING_KINDS) + ")"

LOAD_EVENTS = f"""SELECT {EVENT_COLUMNS} FROM recipients r JOIN messages m ON m.id = r.message_id
    WHERE r.address = ? AND {KINDS_OR} AND r.received_at >= ? AND {TO_BOUNCE_ADDRESS}
    ORDER BY r.received_at, r.id"""
# SQLite: the policy's reads for one address in one statement (issue #12: three statements were ~51,000
# instructions of a bounce, this one ~30,000): its events since the soft window's start (LOAD_EVENTS: the event
# just inserted is always among them), each with the address's suppression state, last manual action and whether a
# held suppression waits for it (ADDRESS_STATE), and the client's count for the per-client cap
# (CLIENT_SUPPRESSIONS_SINCE; evaluated once: it names no column of the row). Parameters: the client ('' for no
# count), the cap's window start, the address, the soft window's start.
POLICY_READS = f"""SELECT {EVENT_COLUMNS}, s.state, s.manual_at,
        EXISTS (SELECT 1 FROM pending_suppressions p WHERE p.address = r.address),
        (SELECT COALESCE(SUM(n), 0) FROM client_suppressions WHERE client_addr = ? AND minute >= ?)
    FROM recipients r JOIN messages m ON m.id = r.message_id LEFT JOIN suppressions s ON s.address = r.address
    WHERE r.address = ? AND {KINDS_OR} AND {TO_BOUNCE_ADDRESS} AND r.received_at >= CASE
            WHEN EXISTS (SELECT 1 FROM suppressions s2 WHERE s2.address = ? AND s2.state = 'suppressed')
              OR EXISTS (SELECT 1 FROM pending_suppressions p WHERE p.address = ?) THEN '~' ELSE ? END
    ORDER BY r.received_at, r.id"""
# (The history only of an address the policy may still suppress: a suppressed or held one only gains evidence, and
# a dead address a sender keeps mailing would otherwise bring back every bounce of the window, all of them read on
# every further bounce: 0.6 -> 6.4 ms a record over 4,000 bounces to one address. The window's start is where
# SQLite's index search begins, computed once: '~' sorts after every timestamp, so for such an address it finds
# nothing and walks nothing (the same two tests as plain WHERE terms still walked every row of the window). No row
# then: the caller reads the state alone, ADDRESS_STATE.)
# the recipients a message just recorded, for the policy hook
HOOK_ROWS = f"""SELECT r.address, {EVENT_COLUMNS} FROM recipients r JOIN messages m ON m.id = r.message_id
    WHERE r.message_id = ? AND r.address != '' ORDER BY r.id"""
REBUILD_EVENTS = f"""SELECT r.address, {EVENT_COLUMNS} FROM recipients r JOIN messages m ON m.id = r.message_id
    WHERE r.address != '' AND r.kind IN {KINDS_SQL} AND {TO_BOUNCE_ADDRESS}
    ORDER BY r.address, r.received_at, r.id"""
# An address's suppression state, its last manual action and whether a held suppression waits for it, in one
# statement (one row even when there is no suppression: state NULL).
ADDRESS_STATE = """SELECT s.state, s.manual_at, EXISTS (SELECT 1 FROM pending_suppressions p WHERE p.address = ?)
    FROM (SELECT 1 AS one) AS one LEFT JOIN suppressions s ON s.address = ?"""
# One more evidence id for a suppressed address, in SQL: the list _cap(old + [id]) gives (at the cap, the id after
# the first half goes and the new one is appended), without decoding and encoding up to EVIDENCE_CAP ids in Python
# for every further bounce. A value that is not a JSON list starts over.
ADD_EVIDENCE = f"""UPDATE suppressions SET
        evidence = json_insert(
            CASE WHEN json_valid(evidence) AND json_type(evidence) = 'array'
                THEN CASE WHEN json_array_length(evidence) >= {EVIDENCE_CAP}
                          THEN json_remove(evidence, '$[{EVIDENCE_CAP // 2}]') ELSE evidence END
                ELSE '[]' END,
            '$[#]', ?),
        last_evidence_at = ?, updated_at = ?
    WHERE address = ?"""
ADD_PENDING_EVIDENCE = ADD_EVIDENCE.replace("UPDATE suppressions SET", "UPDATE pending_suppressions SET")


def suppressed_list(recorded_since: bool) -> str:
    """The suppressed addresses since a time; with `recorded_since`, put on the list (logged) since another."""
    recorded = ""
    if recorded_since:
        recorded = """AND (SELECT MAX(l.at) FROM suppression_log l
                   WHERE l.address = suppressions.address AND l.action = 'suppress') >= ?"""
    return f"""SELECT address, domain, source, category, reason, status, summary, suppressed_at, first_evidence_at,
          last_evidence_at, evidence, soft_score, soft_days, manual_by, manual_reason, manual_at, flags
       FROM suppressions WHERE state = 'suppressed' AND COALESCE(suppressed_at, created_at) >= ? {recorded}
       ORDER BY suppressed_at, address"""


@functools.lru_cache(maxsize=64)
def pending_by_addresses(n: int) -> str:
    return f"SELECT * FROM pending_suppressions WHERE address IN ({','.join('?' * n)}) ORDER BY id"


def history(signed: bool) -> str:
    """Every event of an address (as subscriber or as reported); `signed`: the store has the signing columns
    (a store not migrated yet - read-only commands do not migrate - has not)."""
    columns = "r.verified, r.note, m.verification" if signed else "NULL AS verified, '' AS note, '' AS verification"
    return f"""SELECT r.id, r.received_at, r.kind, r.address, r.reported_address, r.verp_address, r.action, r.status,
          r.reply_code, r.reason, r.hard, r.diagnostic, r.remote_mta, m.id AS message_row, m.feedback_type,
          m.detector, m.evidence AS detector_evidence, m.queue_id, m.message_id AS report_message_id,
          m.original_subject, m.client_addr, m.bounce_addresses, {columns}
       FROM recipients r JOIN messages m ON m.id = r.message_id
       WHERE r.address = ? OR r.reported_address = ? ORDER BY r.received_at, r.id"""


# ---------------------------------------- the suppression list (suppressions.py): the hook, manual changes, rebuild
SUPPRESSION_ROW = "SELECT * FROM suppressions WHERE address = ?"
LOG = "INSERT INTO suppression_log (address, at, action, source, by, why) VALUES (?, ?, ?, ?, ?, ?)"
WRITE_POLICY = """INSERT INTO suppressions (address, domain, state, source, category, reason, status, summary,
               suppressed_at,
               first_evidence_at, last_evidence_at, evidence, soft_score, soft_days, created_at, updated_at, flags)
           VALUES (?, ?, 'suppressed', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (address) DO UPDATE SET state = 'suppressed', source = excluded.source,
               category = excluded.category,
               reason = excluded.reason, status = excluded.status, summary = excluded.summary,
               suppressed_at = excluded.suppressed_at, first_evidence_at = excluded.first_evidence_at,
               last_evidence_at = excluded.last_evidence_at, evidence = excluded.evidence,
               soft_score = excluded.soft_score, soft_days = excluded.soft_days, updated_at = excluded.updated_at,
               flags = excluded.flags"""
OPT_OUT_OVER = """UPDATE suppressions SET source = 'opt-out', category = 'opt-out', reason = 'opt-out', status = '',
               summary = ?, updated_at = ? WHERE address = ? AND source != 'opt-out'"""
LOCK_ADDRESS = "SELECT pg_advisory_xact_lock(hashtextextended(?, 0))"
WRITE_PENDING = """INSERT INTO pending_suppressions (address, domain, category, reason, status, summary, suppressed_at,
               first_evidence_at, last_evidence_at, evidence, soft_score, soft_days, held_because, client_addr,
               message_row, flags, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
DELETE_PENDING_ADDRESS = "DELETE FROM pending_suppressions WHERE address = ?"
LOG_WITH_CLIENT = (
    "INSERT INTO suppression_log (address, at, action, source, by, why, client_addr) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
MANUAL_OVER_POLICY = """UPDATE suppressions SET source = 'manual', updated_at = ?, manual_by = ?, manual_reason = ?,
                   manual_at = ? WHERE address = ? AND source != 'opt-out'"""
UNSUPPRESS = """INSERT INTO suppressions (address, domain, state, source, created_at, updated_at, manual_by,
                   manual_reason, manual_at)
               VALUES (?, ?, 'unsuppressed', 'manual', ?, ?, ?, ?, ?)
               ON CONFLICT (address) DO UPDATE SET state = 'unsuppressed', source = 'manual',
                   updated_at = excluded.updated_at, manual_by = excluded.manual_by,
                   manual_reason = excluded.manual_reason, manual_at = excluded.manual_at"""
ALL_SUPPRESSIONS = "SELECT * FROM suppressions"
PENDING_ALL = "SELECT * FROM pending_suppressions ORDER BY id"
PENDING_ROW = "SELECT * FROM pending_suppressions WHERE address = ?"
OPT_OUT_OVER_MANUAL = """UPDATE suppressions SET source = 'opt-out', category = 'opt-out', reason = ?, summary = ?,
                   updated_at = ?, manual_by = ?, manual_reason = ?, manual_at = ? WHERE address = ?"""
SUPPRESS_MANUAL = """INSERT INTO suppressions (address, domain, state, source, category, reason, summary,
                   suppressed_at, created_at, updated_at, manual_by, manual_reason, manual_at, flags)
               VALUES (?, ?, 'suppressed', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (address) DO UPDATE SET state = 'suppressed', source = excluded.source,
                   category = excluded.category, reason = excluded.reason, summary = excluded.summary,
                   suppressed_at = excluded.suppressed_at, updated_at = excluded.updated_at,
                   manual_by = excluded.manual_by, manual_reason = excluded.manual_reason,
                   manual_at = excluded.manual_at"""
PENDING_LIST = """SELECT address, domain, category, reason, status, summary, suppressed_at, first_evidence_at,
                  last_evidence_at, evidence, soft_score, soft_days, held_because, client_addr, message_row, flags,
                  created_at
           FROM pending_suppressions WHERE created_at >= ? ORDER BY created_at, id"""
PENDING_BY_CLIENT = "SELECT * FROM pending_suppressions WHERE client_addr = ? ORDER BY id"
APPROVE = """INSERT INTO suppressions (address, domain, state, source, category, reason, status, summary,
                       suppressed_at, first_evidence_at, last_evidence_at, evidence, soft_score, soft_days,
                       created_at, updated_at, flags)
                   VALUES (?, ?, 'suppressed', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (address) DO UPDATE SET state = 'suppressed', source = excluded.source,
                       category = excluded.category, reason = excluded.reason, status = excluded.status,
                       summary = excluded.summary, suppressed_at = excluded.suppressed_at,
                       first_evidence_at = excluded.first_evidence_at, last_evidence_at = excluded.last_evidence_at,
                       evidence = excluded.evidence, soft_score = excluded.soft_score, soft_days = excluded.soft_days,
                       updated_at = excluded.updated_at, flags = excluded.flags"""
DELETE_PENDING_ID = "DELETE FROM pending_suppressions WHERE id = ?"
PENDING_ADDRESSES = "SELECT address FROM pending_suppressions"
REBUILD_LIFT_TO_MANUAL = (
    "UPDATE suppressions SET state = 'unsuppressed', source = 'manual', updated_at = ? WHERE address = ?"
)
REBUILD_DELETE = "DELETE FROM suppressions WHERE address = ?"
PENDING_BY_MESSAGE = "SELECT * FROM pending_suppressions WHERE message_row = ? ORDER BY id"
REJECT = """INSERT INTO suppressions (address, domain, state, source, created_at, updated_at, manual_by,
                           manual_reason, manual_at, flags)
                       VALUES (?, ?, 'unsuppressed', 'manual', ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (address) DO UPDATE SET state = 'unsuppressed', source = 'manual',
                           updated_at = excluded.updated_at, manual_by = excluded.manual_by,
                           manual_reason = excluded.manual_reason, manual_at = excluded.manual_at"""
SUPPRESSION_LOG_OF = "SELECT at, action, source, by, why FROM suppression_log WHERE address = ? ORDER BY at, id"
PENDING_COUNT = "SELECT COUNT(*) FROM pending_suppressions"
# The per-client cap's count: a client's policy suppressions from the minute `?` (2026-05-09T07:35, an hour before
# the policy's clock) on. SQLite sums the minute buckets of store migration 15 (at most 61 rows); PostgreSQL counts
# the log rows of the same window (a text at or after the minute's start is in it: the minute is a prefix).
CLIENT_SUPPRESSIONS_SINCE = "SELECT COALESCE(SUM(n), 0) FROM client_suppressions WHERE client_addr = ? AND minute >= ?"
PG_CLIENT_SUPPRESSIONS_SINCE = """SELECT COUNT(*) FROM suppression_log
                   WHERE client_addr = ? AND at >= ? AND action = 'suppress' AND source = 'policy'"""
PRUNE_CLIENT_SUPPRESSIONS = "DELETE FROM client_suppressions WHERE minute < ?"

# ---------------------------------------- reports (stats, check)
WINDOW_MESSAGES = """SELECT COUNT(*), COALESCE(SUM(CASE WHEN kind = 'complaint' THEN 1 ELSE 0 END), 0),
                  COALESCE(SUM(CASE WHEN kind = 'opt_out' THEN 1 ELSE 0 END), 0) FROM messages
           WHERE received_at >= ? AND received_at <= ?"""
WINDOW_BOUNCES = """SELECT COUNT(*), COALESCE(SUM(hard), 0) FROM recipients
           WHERE kind = 'bounce' AND received_at >= ? AND received_at <= ?"""
STATS_TOTAL_HARD = "SELECT COALESCE(SUM(hard), 0) FROM recipients WHERE received_at >= ? AND received_at <= ?"

# ---------------------------------------- maintenance (prune, backup)
SQLITE_SELF_CONTAINED = "PRAGMA journal_mode=DELETE"
PRUNE_SUPPRESSION_LOG = "DELETE FROM suppression_log WHERE at < ?"
PRUNE_FEED = """DELETE FROM suppression_changes WHERE at < ? AND address NOT IN
                               (SELECT address FROM suppressions WHERE state = 'suppressed')"""
PRUNE_OUTBOX = "DELETE FROM notify_outbox WHERE delivered_at < ?"
SQLITE_QUICK_CHECK = "PRAGMA quick_check"

# ---------------------------------------- the webhook outbox (notify.py)
OUTBOX_WAITING_ROWS = """SELECT id, address, attempts, last_attempt_at, last_error, next_attempt_at FROM notify_outbox
           WHERE delivered_at IS NULL AND last_error != '' ORDER BY last_attempt_at DESC LIMIT 1"""
NOTIFY_CURSOR_INSERT = "INSERT INTO notify_state (name, value) VALUES ('cursor', ?)"
OUTBOX_CLAIM = "UPDATE notify_outbox SET claimed_until = ? WHERE id = ?"
OUTBOX_STATUS = """SELECT COUNT(*) AS total, COUNT(delivered_at) AS delivered,
                  COUNT(*) - COUNT(delivered_at) AS waiting,
                  MIN(CASE WHEN delivered_at IS NULL THEN created_at END) AS oldest_waiting
           FROM notify_outbox"""
NOTIFY_CURSOR = "SELECT value FROM notify_state WHERE name = 'cursor'"
NOTIFY_CURSOR_SET = """INSERT INTO notify_state (name, value) VALUES ('cursor', ?)
    ON CONFLICT (name) DO UPDATE SET value = excluded.value"""
FEED_TO_NOTIFY = """SELECT id, at, op, address, source, category, reason, summary, suppressed_at, notify
                   FROM suppression_changes WHERE id > ? AND id <= ? ORDER BY id LIMIT 1000"""
OUTBOX_ADD = """INSERT OR IGNORE INTO notify_outbox (id, address, body, created_at, next_attempt_at)
                       VALUES (?, ?, ?, ?, ?)"""
OUTBOX_WAITING = "SELECT COUNT(*) FROM notify_outbox WHERE delivered_at IS NULL"

# ---------------------------------------- import-suppressions
IMPORT_SUPPRESS = """INSERT INTO suppressions (address, domain, state, source, category, reason, summary, suppressed_at,
               created_at, updated_at, manual_by, manual_reason, manual_at, flags)
           VALUES (?, ?, 'suppressed', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (address) DO UPDATE SET state = 'suppressed', source = excluded.source,
               category = excluded.category, reason = excluded.reason, summary = excluded.summary,
               suppressed_at = excluded.suppressed_at, updated_at = excluded.updated_at, manual_by = excluded.manual_by,
               manual_reason = excluded.manual_reason, manual_at = excluded.manual_at"""
IMPORT_LOG = (
    "INSERT INTO suppression_log (address, at, action, source, by, why) VALUES (?, ?, 'suppress', 'import', ?, ?)"
)
IMPORT_ROW = "SELECT state, source, category, manual_at FROM suppressions WHERE address = ?"
IMPORT_OPT_OUT_OVER = """UPDATE suppressions SET source = 'opt-out', category = 'opt-out', reason = ?, summary = ?,
                       updated_at = ?, manual_by = ?, manual_reason = ?, manual_at = ? WHERE address = ?"""
IMPORT_QUIET_FEED = "UPDATE suppression_changes SET notify = 0 WHERE id > ?"

# ---------------------------------------- doctor
MESSAGE_KIND_BY_MESSAGE_ID = "SELECT kind FROM messages WHERE message_id = ?"

# ---------------------------------------- readers
IS_A_STORE = "SELECT 1 FROM messages LIMIT 1"


# ---------------------------------------- reports: stats (grouped counts) and check (one window)

# time groupings other than hour (which fills its quiet hours): SQL over messages m, in time order
PERIOD_KEYS = {
    "day": "SUBSTR(m.received_at, 1, 10)",
    "week": "'week of ' || date(SUBSTR(m.received_at, 1, 10), '-6 days', 'weekday 1')",  # the Monday
    "month": "SUBSTR(m.received_at, 1, 7)",
}
MESSAGE_KEYS = {"kind": "m.kind", "hour": "SUBSTR(m.received_at, 1, 13)", **PERIOD_KEYS}
# recipient-level groupings: (SQL expression over recipients r)
RECIPIENT_KEYS = {"reason": "r.reason", "domain": "r.domain", "remote-mta": "LOWER(r.remote_mta)"}


def _unverified(alias: str, signed: bool) -> str:
    """1 for a row proven not to answer our mail, else 0 (a store not migrated to signed return paths yet has no
    verified column): a CASE, since PostgreSQL's SUM takes no boolean."""
    return f"CASE WHEN {alias}.verified = 0 THEN 1 ELSE 0 END" if signed else "0"


def stats_totals(signed: bool) -> str:
    return f"""SELECT COUNT(*), COALESCE(SUM(recipient_count), 0), COALESCE(SUM({_unverified("m", signed)}), 0)
        FROM messages m WHERE received_at >= ? AND received_at <= ?"""


def stats_by_message(key: str, signed: bool) -> str:
    """Per group of messages (`key` from MESSAGE_KEYS): recipients and hard from a per-message aggregate, since a
    join would multiply the message count."""
    return f"""SELECT {key} AS k, COUNT(*), COALESCE(SUM(m.recipient_count), 0), COALESCE(SUM(h.hard), 0),
               COALESCE(SUM({_unverified("m", signed)}), 0)
        FROM messages m
        LEFT JOIN (SELECT message_id, SUM(hard) AS hard FROM recipients
                   WHERE received_at >= ? AND received_at <= ? GROUP BY message_id) h ON h.message_id = m.id
        WHERE m.received_at >= ? AND m.received_at <= ?
        GROUP BY k"""


def stats_by_recipient(key: str, signed: bool) -> str:
    return f"""SELECT {key} AS k, COUNT(DISTINCT r.message_id), COUNT(*), COALESCE(SUM(r.hard), 0),
               COALESCE(SUM({_unverified("r", signed)}), 0)
        FROM recipients r WHERE r.received_at >= ? AND r.received_at <= ? GROUP BY k"""


@functools.lru_cache(maxsize=8)
def window_blocked(n: int) -> str:
    """Bounces per reason among `n` reasons (check's --max-blocked)."""
    return f"""SELECT reason, COUNT(*) FROM recipients
        WHERE kind = 'bounce' AND received_at >= ? AND received_at <= ? AND reason IN ({", ".join("?" * n)})
        GROUP BY reason ORDER BY COUNT(*) DESC, reason"""


NOTIFY_STUCK = "SELECT COUNT(*) FROM notify_outbox WHERE delivered_at IS NULL AND created_at < ?"


# ---------------------------------------- prune: the rows to keep and the rows to delete

# an opt-out never expires: the subscriber asked, and only unsuppress lifts it (issue #11)
_PRUNABLE_SUPPRESSION = "updated_at < ? AND NOT (state = 'suppressed' AND 'opt-out' IN (source, category))"
PRUNE_COUNT_SUPPRESSIONS = f"SELECT COUNT(*) FROM suppressions WHERE {_PRUNABLE_SUPPRESSION}"
PRUNE_SUPPRESSIONS = f"DELETE FROM suppressions WHERE {_PRUNABLE_SUPPRESSION}"
# The message ids that are evidence of a current suppression, into a temporary table `keep` (SQLite's json_each;
# PG_PRUNE_KEEP below; evidence is a JSON list of recipients.id in both).
PRUNE_KEEP = [
    "CREATE TEMP TABLE IF NOT EXISTS keep (id INTEGER PRIMARY KEY)",
    "DELETE FROM temp.keep",
    """INSERT OR IGNORE INTO temp.keep SELECT r.message_id FROM recipients r WHERE r.id IN (
           SELECT CAST(e.value AS INTEGER) FROM suppressions s, json_each(s.evidence) e
           WHERE s.state = 'suppressed' AND json_valid(s.evidence))""",
]
_DOOMED = "SELECT id FROM messages WHERE received_at < ? AND id NOT IN (SELECT id FROM temp.keep)"
PRUNE_KEPT = "SELECT COUNT(*) FROM messages WHERE received_at < ? AND id IN (SELECT id FROM temp.keep)"
PRUNE_COUNT_MESSAGES = f"SELECT COUNT(*) FROM ({_DOOMED}) AS d"
PRUNE_COUNT_RECIPIENTS = f"SELECT COUNT(*) FROM recipients WHERE message_id IN ({_DOOMED})"
PRUNE_NEXT_BATCH = f"{_DOOMED} LIMIT ?"


@functools.lru_cache(maxsize=4)
def prune_recipients(n: int) -> str:
    return f"DELETE FROM recipients WHERE message_id IN ({','.join('?' * n)})"


@functools.lru_cache(maxsize=4)
def prune_messages(n: int) -> str:
    return f"DELETE FROM messages WHERE id IN ({','.join('?' * n)})"


def count_rows(table: str) -> str:
    return f"SELECT COUNT(*) FROM {table}"


# ---------------------------------------- the webhook outbox: one pass (notify.py)


def outbox_claimable(every: bool) -> str:
    """Undelivered rows nobody has claimed (or whose claim expired); `every`: also those not due yet."""
    due = "" if every else "AND next_attempt_at <= ?"
    return f"""SELECT id, address, body, attempts FROM notify_outbox
        WHERE delivered_at IS NULL {due} AND (claimed_until IS NULL OR claimed_until < ?)
        ORDER BY id LIMIT ?"""


@functools.lru_cache(maxsize=16)
def outbox_release(n: int) -> str:
    return f"UPDATE notify_outbox SET claimed_until = NULL WHERE id IN ({','.join('?' * n)})"


OUTBOX_DELIVERED = """UPDATE notify_outbox SET delivered_at = ?, last_attempt_at = ?, attempts = attempts + 1,
       claimed_until = NULL, last_error = '' WHERE id = ?"""
OUTBOX_FAILED = """UPDATE notify_outbox SET attempts = ?, last_attempt_at = ?, last_error = ?, next_attempt_at = ?,
       claimed_until = NULL WHERE id = ?"""
# the receiver is down: every other row waits at least as long (the later of the two, in SQL both engines speak:
# SQLite's two-argument MAX is GREATEST on PostgreSQL)
OUTBOX_DEFER_OTHERS = """UPDATE notify_outbox
       SET next_attempt_at = CASE WHEN next_attempt_at > ? THEN next_attempt_at ELSE ? END
       WHERE delivered_at IS NULL AND id != ?"""


# ---------------------------------------- the feed, and the read-only lookups of import, fetch and the sent log

FEED_COLUMNS = ("id", "at", "op", "address", "source", "category", "reason", "summary", "suppressed_at")


def feed_changes(limit: bool) -> str:
    """The feed's changes after a cursor up to the last final id (`core.last_feed_id`), oldest first (`limit`: at
    most ? of them)."""
    sql = f"SELECT {', '.join(FEED_COLUMNS)} FROM suppression_changes WHERE id > ? AND id <= ? ORDER BY id"
    return sql + " LIMIT ?" if limit else sql


@functools.lru_cache(maxsize=8)
def stored_keys(n: int) -> str:
    """Which of `n` idempotency keys are stored (and their rows)."""
    return f"SELECT dedup_key, id FROM messages WHERE dedup_key IN ({','.join('?' * n)})"


@functools.lru_cache(maxsize=8)
def stored_categories(n: int) -> str:
    """Kind, error and whether any recipient is hard, for `n` message rows (fetch's folder of a stored message)."""
    return (
        "SELECT m.id, m.kind, m.error, COALESCE(MAX(r.hard), 0) FROM messages m LEFT JOIN recipients r "
        f"ON r.message_id = m.id WHERE m.id IN ({','.join('?' * n)}) GROUP BY m.id"
    )


SENT_BY_TOKEN = "SELECT recipients FROM sent WHERE token = ? LIMIT 100"
SENT_BY_MESSAGE_ID = "SELECT recipients FROM sent WHERE message_id = ? LIMIT 100"

# ---------------------------------------- PostgreSQL: the statements whose text differs

# ADD_EVIDENCE on jsonb (evidence stays TEXT so that both engines have one schema); `jsonb - n` drops element n,
# as json_remove does.
PG_ADD_EVIDENCE = f"""UPDATE suppressions SET
        evidence = ((CASE WHEN evidence LIKE '[%' THEN
                        CASE WHEN jsonb_array_length(evidence::jsonb) >= {EVIDENCE_CAP}
                             THEN evidence::jsonb - {EVIDENCE_CAP // 2} ELSE evidence::jsonb END
                     ELSE '[]'::jsonb END) || to_jsonb(?::bigint))::text,
        last_evidence_at = ?, updated_at = ?
    WHERE address = ?"""
PG_ADD_PENDING_EVIDENCE = PG_ADD_EVIDENCE.replace("UPDATE suppressions SET", "UPDATE pending_suppressions SET")

# A new policy suppression and its suppression_log line (LOG_WITH_CLIENT) in one statement.
PG_WRITE_POLICY_LOGGED = "WITH written AS (" + WRITE_POLICY + ") " + LOG_WITH_CLIENT

# The policy's reads for one recorded message in one statement (store migration 12, `policy_reads_function`): per
# address (sorted) its lock (LOCK_ADDRESS), then ADDRESS_STATE and LOAD_EVENTS, and the client's count for the
# cap (PG_CLIENT_SUPPRESSIONS_SINCE; NULL without a client). JSON: [count, [[state, manual_at, held, [event, ...]],
# ...]], an event as the columns of EVENT_COLUMNS.
PG_POLICY_READS = "SELECT bm_policy_reads(?, ?, ?, ?)"


def policy_reads_function(create: str) -> str:
    """PostgreSQL's bm_policy_reads(addresses, since, client, hour_ago): the function behind PG_POLICY_READS.

    Why a function: each of its statements takes a new snapshot after the lock before it is granted (a VOLATILE
    function in READ COMMITTED), which one plain statement cannot do (its snapshot predates its own lock wait),
    so the per-address lock and the reads it guards go to the server as one statement, not three or four."""
    return f"""{create} FUNCTION bm_policy_reads(addresses text[], since text, client text, hour_ago text)
        RETURNS json LANGUAGE plpgsql VOLATILE AS $$
        DECLARE
            a text;
            st text;
            manual text;
            held boolean;
            events json;
            reads json[] := '{{}}';
            n bigint;
        BEGIN
            FOREACH a IN ARRAY addresses LOOP
                PERFORM pg_advisory_xact_lock(hashtextextended(a, 0));
                st := NULL;
                manual := NULL;
                SELECT s.state, s.manual_at INTO st, manual FROM suppressions s WHERE s.address = a;
                SELECT EXISTS (SELECT 1 FROM pending_suppressions p WHERE p.address = a) INTO held;
                events := '[]';
                -- the history only of an address the policy may still suppress (see POLICY_READS; version 17)
                IF st IS DISTINCT FROM 'suppressed' AND NOT held THEN
                    SELECT COALESCE(json_agg(json_build_array({EVENT_COLUMNS}) ORDER BY r.received_at, r.id), '[]')
                        INTO events
                        FROM recipients r JOIN messages m ON m.id = r.message_id
                        WHERE r.address = a AND r.kind IN {KINDS_SQL} AND r.received_at >= since
                              AND {TO_BOUNCE_ADDRESS};
                END IF;
                reads := reads || json_build_array(st, manual, held, events);
            END LOOP;
            IF client <> '' THEN
                SELECT COUNT(*) INTO n FROM suppression_log
                    WHERE client_addr = client AND at >= hour_ago AND action = 'suppress' AND source = 'policy';
            END IF;
            RETURN json_build_array(n, array_to_json(reads));
        END $$"""


# the week's Monday, as SQLite's date(..., 'weekday 1') gives it
PG_PERIOD_KEYS = {
    **PERIOD_KEYS,
    "week": "'week of ' || to_char(date_trunc('week', SUBSTR(m.received_at, 1, 10)::date), 'YYYY-MM-DD')",
}
PG_MESSAGE_KEYS = {**MESSAGE_KEYS, **PG_PERIOD_KEYS}

# prune's keep list: jsonb_array_elements_text for json_each, pg_temp for temp
PG_PRUNE_KEEP = [
    "CREATE TEMP TABLE IF NOT EXISTS keep (id BIGINT PRIMARY KEY)",
    "DELETE FROM pg_temp.keep",
    """INSERT INTO pg_temp.keep SELECT DISTINCT r.message_id FROM recipients r WHERE r.id IN (
           SELECT e.value::bigint FROM suppressions s, jsonb_array_elements_text(s.evidence::jsonb) e
           WHERE s.state = 'suppressed' AND s.evidence LIKE '[%') ON CONFLICT DO NOTHING""",
]
PG_PRUNE_KEPT = PRUNE_KEPT.replace("temp.keep", "pg_temp.keep")
PG_PRUNE_COUNT_MESSAGES = PRUNE_COUNT_MESSAGES.replace("temp.keep", "pg_temp.keep")
PG_PRUNE_COUNT_RECIPIENTS = PRUNE_COUNT_RECIPIENTS.replace("temp.keep", "pg_temp.keep")
PG_PRUNE_NEXT_BATCH = PRUNE_NEXT_BATCH.replace("temp.keep", "pg_temp.keep")
