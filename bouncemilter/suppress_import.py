"""`bouncemilter import-suppressions FILE.csv`: load a suppression list exported from an ESP or a list manager.

The file has a header row naming an address column and, optionally, a reason and a date column; the names
ESPs export under are recognised (``email``, ``Email Address``, ``reason``, ``type``, ``created``,
``UNSUB_TIME`` ...). Delimiter (``,`` ``;`` tab ``|``) and encoding (UTF-8 with or without BOM, else Windows-1252)
are detected. A file without a header whose first column holds addresses is read as address, reason, date.

Each row becomes a suppression that rebuilds keep (there is no evidence to replay): category from the reason
(``unsubscribed``/``opt-out`` -> opt-out with source opt-out; ``spam``/``complaint``/``abuse`` -> complaint;
``bounce``/``hard``/``invalid`` -> hard; ``soft`` -> soft; anything else -> manual), source manual otherwise,
suppressed since the row's date (else the time of the import). Nothing is lost and nothing is guessed: a row
that cannot be read (not an address, a date in no known form or in the future, a repeat of an earlier line) is
skipped with its line number and why, and can be written to a rejects file to fix and load again; an address
unsuppressed here after the row's date stays unsuppressed (the newer decision wins); an address already
suppressed keeps its suppression (an opt-out in the file turns it into an opt-out).

Rows are written in transactions of `batch` rows, so that a running milter waits for one batch at most; loading
the same file again changes nothing.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from .classify.address import canonical, show
from .store import fmt_time, utc_now
from .store import sql as Q
from .store.core import last_feed_id
from .suppressions import address_flags

BATCH = 2000
_ADDRESS_RE = re.compile(r"^[^\s@<>\"]+@[^\s@<>\"]+\.[^\s@<>\"]+$")
_ALIASES = {
    "address": {
        "address", "email", "emailaddress", "mail", "recipient", "emailaddr", "subscriber", "to",
        "adresse", "emailadresse", "courriel", "correo", "correoelectronico",  # German, French, Spanish exports
    },
    "reason": {
        "reason", "type", "category", "status", "suppressionreason", "suppressiontype", "unsubreason", "bouncetype",
        "bouncereason", "description", "source", "grund", "ursache", "motif", "raison", "motivo", "razon",
    },
    "date": {
        "date", "created", "createdat", "timestamp", "time", "suppressedat", "unsubtime", "datesuppressed", "dateadded",
        "added", "lastchanged", "when", "optouttime", "cleantime", "bouncedat", "unsubscribedat", "datum", "fecha",
    },
}  # fmt: skip
# reason text -> category; the first that matches wins (an unsubscribe is asked for, whatever else it says)
_CATEGORY_RULES = (
    (
        "opt-out",
        re.compile(r"unsub|opt.?out|abmeld|abgemeldet|abbestell|ausgetragen|d[ée]sabonn|d[ée]sinscri|baja", re.I),
    ),
    ("complaint", re.compile(r"complain|spam|abuse|\bfbl\b|feedback", re.I)),
    ("soft", re.compile(r"\bsoft", re.I)),
    ("hard", re.compile(r"bounce|\bhard|invalid|undeliver|does not exist|no such|unknown", re.I)),
)
CATEGORIES = ("opt-out", "complaint", "hard", "soft", "manual")
_AMBIGUOUS = re.compile(r"^\s*\d{1,2}[./-]\d{1,2}[./-]\d{2,4}\b")
_SLASHED_ISO = re.compile(r"^\s*(\d{4})/(\d{1,2})/(\d{1,2})(.*)$")


class CsvError(Exception):
    """The file as a whole cannot be imported (unreadable, no address column): nothing is saved."""


@dataclass
class Row:
    line: int
    address: str
    reason: str
    category: str
    date: datetime | None
    cells: list[str]


@dataclass
class Skip:
    line: int
    why: str
    cells: list[str]


@dataclass
class Parsed:
    header: list[str]
    rows: list[Row] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    encoding: str = "utf-8"
    columns: dict[str, str] = field(default_factory=dict)  # address/reason/date -> the header's name


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def category_of(reason: str) -> str:
    for category, rule in _CATEGORY_RULES:
        if rule.search(reason):
            return category
    return "manual"


def parse_date(text: str, now: datetime) -> datetime:
    """ISO 8601 (2026-05-01, 2026-05-01 12:00:00, ...T12:00:00Z, +02:00), 2026/05/01, RFC 2822, or Unix seconds or
    milliseconds. Raises ValueError naming the problem (day/month order like 01/02/2026 is ambiguous: refused)."""
    value = text.strip()
    when: datetime | None = None
    if re.fullmatch(r"\d{9,10}(?:\.\d+)?", value):
        when = datetime.fromtimestamp(float(value), UTC)
    elif re.fullmatch(r"\d{12,13}", value):
        when = datetime.fromtimestamp(int(value) / 1000, UTC)
    elif _AMBIGUOUS.match(value):
        raise ValueError(f"date {value!r} is ambiguous (day/month order): write it as YYYY-MM-DD")
    else:
        m = _SLASHED_ISO.match(value)
        iso = f"{m.group(1)}-{int(m.group(2)):02d}-{int(m.group(3)):02d}{m.group(4)}" if m else value
        try:
            when = datetime.fromisoformat(iso.replace(" UTC", "Z").strip())
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                raise ValueError(
                    f"date {value!r} not understood (YYYY-MM-DD, ISO 8601, RFC 2822 or Unix seconds)"
                ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    if when > now + timedelta(days=1):
        raise ValueError(f"date {value!r} is in the future")
    if when.year < 1990:
        raise ValueError(f"date {value!r} is before 1990")
    return when


def decode(data: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 (a BOM dropped) when it is, else Windows-1252 (Excel's), else Latin-1."""
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return data.decode(encoding), "utf-8" if encoding == "utf-8-sig" else encoding
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte")


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    sample = text[:8192]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    line = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a broken quote: the row is unreadable, not the file
            yield line, [f"\0csv error: {exc}"]
            line = reader.line_num + 1
            continue
        yield line, [c.strip() for c in cells]
        line = reader.line_num + 1


def _is_address(value: str) -> bool:
    checked = canonical(value.strip().strip("<>"))
    return bool(checked.address) and bool(_ADDRESS_RE.match(checked.address))


def parse(data: bytes, now: datetime | None = None, category: str = "") -> Parsed:
    """Read the CSV: the rows to import and the rows skipped, with why. Raises CsvError for a file that has
    no address column. `category` forces one category on every row (the reason column still gives the text)."""
    now = now or datetime.now(UTC)
    text, encoding = decode(data)
    records = _records(text)
    header: list[str] = []
    for line, cells in records:
        if any(cells):
            header = cells
            header_line = line
            break
    else:
        raise CsvError("the file has no rows")
    names = [_norm(h) for h in header]
    columns: dict[str, int] = {}
    for what, aliases in _ALIASES.items():
        for i, name in enumerate(names):
            if name in aliases and i not in columns.values():
                columns[what] = i
                break
    out = Parsed(header=header, encoding=encoding)
    first: list[tuple[int, list[str]]] = []
    if "address" not in columns:
        if header and _is_address(header[0]):  # no header: address, reason, date
            columns = {"address": 0, "reason": 1, "date": 2}
            first = [(header_line, header)]
            out.header = ["address", "reason", "date"]
        else:
            shown = show(",".join(header))  # escaped already: not repr() again, and short (a binary file is one line)
            shown = shown if len(shown) <= 100 else shown[:99] + "…"
            raise CsvError(
                f"line {header_line}: no address column in the header '{shown}' (name it address or "
                "email; reason and date columns are optional)"
            )
    out.columns = {what: out.header[i] if i < len(out.header) else f"column {i + 1}" for what, i in columns.items()}
    seen: dict[str, int] = {}

    def cell(cells: list[str], what: str) -> str:
        i = columns.get(what)
        return cells[i] if i is not None and i < len(cells) else ""

    for line, cells in (*first, *records):
        if not any(cells):
            continue
        if cells[0].startswith("\0csv error: "):
            out.skipped.append(Skip(line, cells[0][1:], []))
            continue
        raw = cell(cells, "address")
        if not raw:
            out.skipped.append(Skip(line, "no address in this row", cells))
            continue
        checked = canonical(raw.strip().strip("<>").removeprefix("mailto:"))
        if not checked.address or not _ADDRESS_RE.match(checked.address):
            note = f" ({checked.note})" if checked.note else ""
            out.skipped.append(Skip(line, f"not an email address: '{show(raw)}'{note}", cells))
            continue
        if checked.address in seen:
            out.skipped.append(Skip(line, f"{checked.address} repeats line {seen[checked.address]}", cells))
            continue
        date_text = cell(cells, "date")
        try:
            when = parse_date(date_text, now) if date_text else None
        except ValueError as exc:
            out.skipped.append(Skip(line, str(exc), cells))
            continue
        seen[checked.address] = line
        reason = " ".join(cell(cells, "reason").split())[:200]
        out.rows.append(Row(line, checked.address, reason, category or category_of(reason), when, cells))
    return out


@dataclass
class Outcome:
    suppressed: int = 0  # newly on the list
    opted_out: int = 0  # already suppressed for another reason, now an opt-out
    already: int = 0  # already suppressed: kept as it was
    skipped: list[Skip] = field(default_factory=list)  # also the rows refused against the store
    by_category: dict[str, int] = field(default_factory=dict)


def write(
    conn: sqlite3.Connection,
    rows: list[Row],
    *,
    source_name: str,
    by: str,
    notify: bool = True,
    batch: int = BATCH,
    stamp: str | None = None,
    dry_run: bool = False,
) -> Outcome:
    """Put `rows` on the suppression list (`conn` autocommit, schema up to date), `batch` rows per transaction."""
    stamp = stamp or utc_now()
    out = Outcome()
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = _last_change(conn)
            for row in chunk:
                _one(conn, row, source_name, by, stamp, out)
            if not notify:  # the receiver already has these (it is where the list came from)
                conn.execute(Q.IMPORT_QUIET_FEED, (before,))
            conn.execute("ROLLBACK" if dry_run else "COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return out


def _last_change(conn: sqlite3.Connection) -> int:
    return last_feed_id(conn)


def _one(conn: sqlite3.Connection, row: Row, source_name: str, by: str, stamp: str, out: Outcome) -> None:
    found = conn.execute(Q.IMPORT_ROW, (row.address,)).fetchone()
    since = fmt_time(row.date) if row.date else stamp
    reason = row.reason or f"from {source_name}"
    why = f"{source_name} line {row.line}: {row.reason or '(no reason given)'}"
    source = "opt-out" if row.category == "opt-out" else "manual"
    summary = f"opted out (imported): {reason}" if source == "opt-out" else f"imported: {reason}"
    if found is not None and found[0] == "suppressed":
        if row.category == "opt-out" and found[1] != "opt-out":
            conn.execute(
                Q.IMPORT_OPT_OUT_OVER,
                (reason, summary, stamp, by, why, stamp, row.address),
            )
            conn.execute(
                Q.IMPORT_LOG,
                (row.address, stamp, by[:200], why[:1000]),
            )
            out.opted_out += 1
        else:
            out.already += 1
        return
    if found is not None and found[3] and since <= found[3]:
        # unsuppressed here after the export's date: the newer decision stands
        out.skipped.append(
            Skip(row.line, f"{row.address} was unsuppressed on {found[3][:10]}, after this row's date", row.cells)
        )
        return
    conn.execute(
        Q.IMPORT_SUPPRESS,
        (
            row.address,
            row.address.rpartition("@")[2],
            source,
            row.category,
            reason,
            summary,
            since,
            stamp,
            stamp,
            by[:200],
            why[:1000],
            stamp,
            address_flags(row.address),
        ),
    )
    conn.execute(
        Q.IMPORT_LOG,
        (row.address, stamp, by[:200], why[:1000]),
    )
    conn.execute(Q.DELETE_PENDING_ADDRESS, (row.address,))  # decided by the import
    out.suppressed += 1
    out.by_category[row.category] = out.by_category.get(row.category, 0) + 1
