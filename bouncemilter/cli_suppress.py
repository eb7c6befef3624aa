"""Commands over the suppression list: suppress, unsuppress, rebuild-suppressions, suppressed, history."""

from __future__ import annotations

import csv
import getpass
import json
import os
import re
import sqlite3
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import click

from . import feed
from . import suppressions as sup
from .classify.address import canonical, show
from .cli_common import config_options, echo_json, echo_table, load, printable, stdin_text
from .config import Settings
from .policy import Policy, parse_time
from .reports import WHEN_FORMS
from .store import display_name

CATEGORIES = ("hard", "soft", "complaint", "opt-out", "manual")  # suppressions.category
_SINCE_RE = re.compile(r"^\s*(\d{1,6})\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# what a Postfix access map key may safely be: one token, no comment sign, one "@"
_MAP_KEY_RE = re.compile(r"^[A-Za-z0-9!$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+$")
SQL_INT_MAX = (1 << 63) - 1  # the largest row id SQLite and PostgreSQL store
_ADDRESS_RE = re.compile(r"^[^\s@<>\"]+@[^\s@<>\"]+\.[^\s@<>\"]+$")


def parse_since(value: str | None, now: datetime | None = None) -> str:
    """'24h', '7d', '30m', '2w' or an ISO date/time -> the store's timestamp text ('' = everything)."""
    if not value or value.strip().lower() == "all":
        return ""
    now = now or datetime.now(UTC)
    m = _SINCE_RE.match(value)
    if m:
        try:
            return sup.fmt_time(now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))}))
        except OverflowError:  # 999999d: before year 1
            raise click.BadParameter(f"{value!r}: too far back (the calendar starts at year 1)") from None
    try:
        return sup.fmt_time(parse_time(value))
    except ValueError:
        raise click.BadParameter(f"{value!r}: use {WHEN_FORMS}") from None


def _connect(settings: Settings, write: bool) -> sqlite3.Connection:
    try:
        return sup.connect(settings.db, settings.store_timeout, write=write)
    except sup.NoDatabase as exc:
        raise click.ClickException(str(exc)) from exc
    except sqlite3.Error as exc:
        raise click.ClickException(f"{display_name(settings.db)}: {exc}") from exc


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return ""


def _address(value: str) -> str:
    """The address as the store has it (classify/address.py: IDN in A-labels, lower case), or a usage error."""
    checked = canonical(value.strip().strip("<>"))
    if not checked.address or not _ADDRESS_RE.match(checked.address):
        raise click.BadParameter(f"{show(value)!r}: not an email address{': ' + checked.note if checked.note else ''}")
    return checked.address


def _lookup_key(value: str) -> str:
    """An address to look up as given (the store may hold forms `_address` refuses, e.g. user@localhost), but not
    an empty one, and only text the store can hold (a non-UTF-8 argument arrives with surrogates)."""
    text = value.strip().strip("<>").strip()
    if not text:
        raise click.BadParameter("an empty address", param_hint="ADDRESS")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise click.BadParameter(f"{show(value)!r}: not UTF-8 text", param_hint="ADDRESS") from None
    return text


@click.command("suppress")
@config_options
@click.argument("address")
@click.option("--reason", default="", metavar="TEXT", help="Why (recorded with the change).")
@click.option("--by", default=None, metavar="WHO", help="Who made the change (default: the invoking user).")
@click.option(
    "--skip-invalid", is_flag=True, help="With -: leave out lines that are not addresses (else nothing is saved)."
)
@click.option(
    "--source",
    type=click.Choice(sup.SOURCES),
    default="manual",
    show_default=True,
    help="opt-out: the subscriber asked (a one-click unsubscribe, a request by phone): category opt-out.",
)
def suppress_cmd(
    config_path: str | None,
    db: str | None,
    address: str,
    reason: str,
    by: str | None,
    skip_invalid: bool,
    source: str,
) -> None:
    """Suppress ADDRESS by hand (kept by rebuild-suppressions until unsuppressed). ADDRESS - reads one address
    per line from standard input (blank lines and # comments skipped) and saves them in one transaction.

    \b
    Examples:
      bouncemilter suppress alice@example.org --reason "asked by phone" --by ann
      bouncemilter suppress - --reason "unsubscribed at the old ESP" < unsubscribed.txt
      bouncemilter suppress alice@example.org --source opt-out --reason "one-click (RFC 8058)" --by web
    """
    settings = load(config_path, db)
    if address == "-":
        _suppress_stdin(settings, reason, by, skip_invalid, source)
        return
    addr = _address(address)
    conn = _connect(settings, write=True)
    try:
        changed = sup.suppress(conn, addr, reason, _who(by), source=source)
    except sqlite3.Error as exc:  # e.g. a read-only file, or a PostgreSQL role without the right to write
        raise click.ClickException(f"{display_name(settings.db)}: {exc}") from exc
    finally:
        conn.close()
    click.echo(f"{printable(addr)}: {'suppressed' if changed else 'already suppressed by hand; reason updated'}")


def _capped_lines(stream: IO[str]) -> Iterator[str]:
    """The lines of `stream`, up to sources.STDIN_MAX characters in all: `suppress - < /dev/zero` (one endless
    line) stops with an error instead of filling the memory."""
    from .sources import STDIN_MAX

    total = 0
    while line := stream.readline(STDIN_MAX - total + 1):
        total += len(line)
        if total > STDIN_MAX:
            raise click.ClickException(
                f"more than {STDIN_MAX >> 20} MiB on standard input; nothing saved (split the list)"
            )
        yield line


def _suppress_stdin(settings: Settings, reason: str, by: str | None, skip_invalid: bool, source: str) -> None:
    addresses: dict[str, None] = {}  # ordered, without repeats
    bad: list[tuple[int, str]] = []
    for n, line in enumerate(_capped_lines(stdin_text()), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            addresses[_address(text)] = None
        except click.BadParameter:
            bad.append((n, line.rstrip("\n")))
    for n, text in bad[:20]:
        click.echo(f"bouncemilter: stdin line {n}: not an email address: {text!r}", err=True)
    if bad and not skip_invalid:
        raise click.ClickException(f"{len(bad)} line(s) are not addresses; nothing saved (or give --skip-invalid)")
    conn = _connect(settings, write=True)
    try:
        changed = sup.suppress_many(conn, addresses, reason, _who(by), source=source)
    except sqlite3.Error as exc:
        raise click.ClickException(f"{display_name(settings.db)}: {exc}; nothing saved") from exc
    finally:
        conn.close()
    click.echo(
        f"{changed} suppressed, {len(addresses) - changed} already suppressed by hand (reason updated)"
        + (f", {len(bad)} invalid line(s) left out" if bad else "")
    )


@click.command("unsuppress")
@config_options
@click.argument("address")
@click.option("--reason", default="", metavar="TEXT", help="Why (recorded with the change).")
@click.option("--by", default=None, metavar="WHO", help="Who made the change (default: the invoking user).")
def unsuppress_cmd(config_path: str | None, db: str | None, address: str, reason: str, by: str | None) -> None:
    """Lift the suppression of ADDRESS. Evidence up to now no longer counts, also after rebuild-suppressions;
    new bounces can suppress it again.

    \b
    Example:
      bouncemilter unsuppress --db bounces.db alice@example.org --reason "mailbox fixed" --by ann
    """
    settings = load(config_path, db)
    addr = _address(address)
    conn = _connect(settings, write=True)
    try:
        changed = sup.unsuppress(conn, addr, reason, _who(by))
    finally:
        conn.close()
    done = "unsuppressed" if changed else "was not suppressed; older evidence will not count"
    click.echo(f"{printable(addr)}: {done}")


@click.command("rebuild-suppressions")
@config_options
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def rebuild_cmd(config_path: str | None, db: str | None, fmt: str) -> None:
    """Recompute the suppression list from the whole history with the current [policy] settings.

    Manual suppressions stay; a manual unsuppression keeps hiding the evidence before it.

    \b
    Example:
      bouncemilter rebuild-suppressions --config /etc/bouncemilter/bouncemilter.toml
    """
    settings = load(config_path, db)
    conn = _connect(settings, write=True)
    try:
        counts = sup.rebuild(conn, Policy.from_settings(settings))
    except sqlite3.Error as exc:
        raise click.ClickException(f"{display_name(settings.db)}: {exc}") from exc
    finally:
        conn.close()
    if fmt == "json":
        echo_json(counts)
    else:
        click.echo(", ".join(f"{n} {name}" for name, n in counts.items()))


_CSV_COLUMNS = (
    "address",
    "source",
    "category",
    "reason",
    "status",
    "summary",
    "suppressed_at",
    "first_evidence_at",
    "last_evidence_at",
    "evidence_count",
    "soft_score",
    "manual_by",
    "manual_reason",
    "flags",
)


_PENDING_CSV_COLUMNS = (
    "address",
    "created_at",
    "client_addr",
    "message_row",
    "held_because",
    "category",
    "reason",
    "status",
    "summary",
    "evidence_count",
    "flags",
)


@click.command("suppressed")
@config_options
@click.option(
    "--since", metavar="WHEN", help="Only addresses whose evidence dates their suppression since: 24h, 7d, an ISO date."
)
@click.option(
    "--recorded-since",
    metavar="WHEN",
    help="Only addresses we put on the list since (whatever the evidence's date, e.g. after an import).",
)
@click.option(
    "--pending",
    is_flag=True,
    help="List the suppressions held by a cap ([limits]) instead, waiting for approve or reject.",
)
@click.option(
    "--category",
    type=click.Choice(CATEGORIES),
    help="Only this category (opt-out: the subscriber asked; complaint: a spam complaint).",
)
@click.option(
    "--changes-since",
    "changes_since",
    metavar="CURSOR",
    help="The feed: additions, removals and updates after CURSOR (0 = from the start), then the next cursor.",
)
@click.option("--limit", type=click.IntRange(1), help="With --changes-since: at most this many changes.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "jsonl", "postfix"]),
    default="table",
    show_default=True,
    help="postfix: an access map for check_recipient_access (postmap it); jsonl: one JSON object per line.",
)
def suppressed_cmd(
    config_path: str | None,
    db: str | None,
    since: str | None,
    recorded_since: str | None,
    pending: bool,
    category: str | None,
    changes_since: str | None,
    limit: int | None,
    fmt: str,
) -> None:
    """List suppressed addresses (with --pending: the suppressions held by a cap; with --changes-since: the
    changes of the list since a cursor).

    \b
    Examples:
      bouncemilter suppressed --since 7d
      bouncemilter suppressed --recorded-since 24h --format csv
      bouncemilter suppressed --format postfix > /etc/postfix/suppressed && postmap /etc/postfix/suppressed
      bouncemilter suppressed --pending
      bouncemilter suppressed --category opt-out
      bouncemilter suppressed --changes-since 0 --format jsonl     # last line: {"next_cursor": N}
    """
    settings = load(config_path, db)
    if changes_since is not None:
        _print_changes(settings, changes_since, limit, category or "", fmt, since or recorded_since or pending)
        return
    if limit is not None:
        raise click.BadParameter("only with --changes-since", param_hint="--limit")
    lower = parse_since(since)
    recorded = parse_since(recorded_since)
    if pending and fmt == "postfix":
        raise click.BadParameter("held suppressions are not suppressed: no access map for them", param_hint="--format")
    if pending and recorded_since:
        raise click.BadParameter("held suppressions are not on the list yet", param_hint="--recorded-since")
    conn = _connect(settings, write=False)
    try:
        rows = sup.pending(conn, lower) if pending else sup.suppressed(conn, lower, recorded)
    finally:
        conn.close()
    if category:
        rows = [r for r in rows if r["category"] == category]
    if pending:
        _print_pending(rows, fmt)
        return
    for r in rows:
        r["evidence_count"] = len(r["evidence"])
    if fmt == "json":
        echo_json(rows)
    elif fmt == "jsonl":
        for r in rows:
            click.echo(json.dumps(r, ensure_ascii=False))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        # escaped like the table: a CSV file is read in terminals and spreadsheets too
        writer.writerows([printable(r[c]) if isinstance(r[c], str) else r[c] for c in _CSV_COLUMNS] for r in rows)
    elif fmt == "postfix":
        _postfix_map(rows)
    else:
        echo_table(
            ("ADDRESS", "SINCE", "SOURCE", "WHY", "EVIDENCE", "LAST EVIDENCE"),
            [
                (
                    r["address"],
                    (r["suppressed_at"] or "")[:19],
                    r["source"] + (f" ({r['manual_by']})" if r["source"] == "manual" and r["manual_by"] else ""),
                    ("[look-alike] " if "lookalike" in (r.get("flags") or "") else "") + r["summary"],
                    r["evidence_count"],
                    (r["last_evidence_at"] or "")[:19],
                )
                for r in rows
            ],
        )
        click.echo(f"\n{len(rows)} suppressed address(es)")


def _print_changes(settings: Settings, since: str, limit: int | None, category: str, fmt: str, other: Any) -> None:
    """The feed (bouncemilter.feed): the changes after a cursor, and the next cursor to keep."""
    if other:
        raise click.BadParameter("not with --since, --recorded-since or --pending", param_hint="--changes-since")
    if fmt not in ("table", "json", "jsonl"):
        raise click.BadParameter("the feed is table, json or jsonl", param_hint="--format")
    try:
        cursor = feed.parse_cursor(since)
    except feed.CursorError as exc:
        raise click.BadParameter(str(exc), param_hint="--changes-since") from None
    conn = _connect(settings, write=False)
    try:
        if not feed.has_feed(conn):
            raise click.ClickException(
                f"{display_name(settings.db)}: no feed yet (a bouncemilter run or any write command adds it)"
            )
        rows, next_cursor = feed.changes(conn, cursor, limit or 0, category)
    except feed.CursorError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        conn.close()
    records = [feed.as_record(r) for r in rows]
    if fmt == "jsonl":
        for rec in records:
            click.echo(json.dumps(rec, ensure_ascii=False))
        click.echo(json.dumps({"next_cursor": next_cursor, "changes": len(records)}))
    elif fmt == "json":
        echo_json({"changes": records, "next_cursor": next_cursor})
    else:
        echo_table(
            ("CURSOR", "AT", "OP", "ADDRESS", "CATEGORY", "SOURCE", "WHY"),
            [
                (r["cursor"], (r["at"] or "")[:19], r["op"], r["address"], r["category"], r["source"], r["summary"])
                for r in records
            ],
        )
        click.echo(f"\n{len(records)} change(s); next cursor: {next_cursor}")


def _print_pending(rows: list[dict[str, Any]], fmt: str) -> None:
    for r in rows:
        r["evidence_count"] = len(r["evidence"])
    if fmt == "json":
        echo_json(rows)
        return
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(_PENDING_CSV_COLUMNS)
        writer.writerows(
            [printable(r[c]) if isinstance(r[c], str) else r[c] for c in _PENDING_CSV_COLUMNS] for r in rows
        )
        return
    echo_table(
        ("ADDRESS", "HELD SINCE", "CLIENT", "REPORT", "WOULD BE", "HELD BECAUSE"),
        [
            (
                r["address"],
                (r["created_at"] or "")[:19],
                r["client_addr"] or "(local)",
                r["message_row"] or "",
                ("[look-alike] " if "lookalike" in (r.get("flags") or "") else "") + r["summary"],
                r["held_because"],
            )
            for r in rows
        ],
    )
    click.echo(
        f"\n{len(rows)} pending suppression(s): bouncemilter approve|reject ADDRESS... (or --message ROW, "
        "--client ADDR, --all)"
    )


def _decide_cmd(name: str, decide: Any, done_word: str, doc: str) -> click.Command:
    @click.command(name, help=doc)
    @config_options
    @click.argument("addresses", nargs=-1)
    @click.option(
        "--message",
        "message_row",
        type=click.IntRange(1, SQL_INT_MAX),
        metavar="ROW",
        help="Every one held from this report.",
    )
    @click.option("--client", metavar="ADDR", help="Every one held from this SMTP client address.")
    @click.option("--all", "every", is_flag=True, help="Every pending suppression.")
    @click.option("--reason", default="", metavar="TEXT", help="Why (recorded with the change).")
    @click.option("--by", default=None, metavar="WHO", help="Who decided (default: the invoking user).")
    def command(
        config_path: str | None,
        db: str | None,
        addresses: tuple[str, ...],
        message_row: int | None,
        client: str | None,
        every: bool,
        reason: str,
        by: str | None,
    ) -> None:
        chosen = sum((bool(addresses), message_row is not None, client is not None, every))
        if chosen != 1:
            raise click.UsageError("give ADDRESS... or exactly one of --message, --client, --all")
        settings = load(config_path, db)
        conn = _connect(settings, write=True)
        try:
            done = decide(
                conn,
                addresses,
                client=client,
                message_row=message_row,
                every=every,
                by=_who(by),
                reason=reason,
            )
            left = sup.pending_count(conn)
        finally:
            conn.close()
        for address in done:
            click.echo(f"{printable(address)}: {done_word}")
        click.echo(f"{len(done)} {done_word}, {left} still pending")
        if not done:
            sys.exit(1)

    return command


approve_cmd = _decide_cmd(
    "approve",
    sup.approve,
    "approved",
    """Suppress held suppressions: the evidence was real. They become ordinary policy suppressions.

    \b
    Examples:
      bouncemilter approve alice@example.org bob@example.org
      bouncemilter approve --message 4711 --reason "checked with the ESP"
    """,
)
reject_cmd = _decide_cmd(
    "reject",
    sup.reject,
    "rejected",
    """Drop held suppressions as forged: their evidence up to now no longer counts (as after unsuppress, also
    for rebuild-suppressions); later bounces can still suppress the addresses.

    \b
    Examples:
      bouncemilter reject --client 203.0.113.9 --reason "forged DSN flood"
      bouncemilter reject --all
    """,
)


def reject_text(row: dict[str, Any]) -> str:
    """The text after 'REJECT 5.1.1': printable ASCII on one line, short (it ends up in an SMTP reply)."""
    day = (row.get("suppressed_at") or "")[:10]
    text = f"Recipient suppressed: {row.get('summary') or 'suppressed'}{' since ' + day if day else ''}"
    text = re.sub(r"[^\x20-\x7e]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()[:200]


def _postfix_map(rows: list[dict[str, Any]]) -> None:
    click.echo(f"# bouncemilter suppression list, {sup.fmt_time(datetime.now(UTC))}: {len(rows)} address(es)")
    click.echo(
        "# Use: postmap hash:THIS_FILE; smtpd_recipient_restrictions = check_recipient_access hash:THIS_FILE, ..."
    )
    skipped = 0
    for r in sorted(rows, key=lambda x: x["address"]):
        if not _MAP_KEY_RE.match(r["address"]):
            skipped += 1  # a key with spaces, quotes or '#' would break the map or match the wrong thing
            continue
        click.echo(f"{r['address']}\tREJECT 5.1.1 {reject_text(r)}")
    if skipped:
        click.echo(f"bouncemilter: {skipped} address(es) cannot be written as a Postfix map key", err=True)


@click.command("history")
@config_options
@click.argument("address")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def history_cmd(config_path: str | None, db: str | None, address: str, fmt: str) -> None:
    """Every recorded event for ADDRESS, with the evidence and whether it counted toward suppression.

    \b
    Example:
      bouncemilter history --db bounces.db alice@example.org
    """
    settings = load(config_path, db)
    address = _lookup_key(address)
    conn = _connect(settings, write=False)
    try:
        data = sup.history(conn, address, Policy.from_settings(settings), datetime.now(UTC))
    finally:
        conn.close()
    if fmt == "json":
        echo_json(data)
        return
    row = data["suppression"]
    held = data.get("pending")
    if held is not None:
        state = f"PENDING since {(held['created_at'] or '')[:19]}: {held['summary']} (held: {held['held_because']})"
    elif row is None:
        state = "not suppressed"
    elif row["state"] == "suppressed":
        state = f"SUPPRESSED since {(row['suppressed_at'] or '')[:19]} ({row['source']}): {row['summary']}"
    else:
        state = f"unsuppressed by {row['manual_by'] or '?'} at {(row['manual_at'] or '')[:19]}"
        state += f" ({row['manual_reason']})" if row["manual_reason"] else ""
    click.echo(printable(f"{data['address']}: {state}"))
    click.echo(f"current soft-bounce score: {data['current_soft_score']}\n")
    echo_table(
        ("TIME", "KIND", "REASON", "STATUS", "VERIFIED", "COUNTED", "REMOTE MTA", "DIAGNOSTIC", "POLICY"),
        [
            (
                e["received_at"][:19],
                e["kind"],
                e["reason"],
                e["status"] or e["reply_code"],
                {True: "yes", False: "NO"}.get(e["verified"], "-"),
                ("yes" if e["counted"] else "no") + ("*" if e["evidence"] else ""),
                e["remote_mta"],
                e["diagnostic"],
                e["verdict"] + (f" [{e['note']}]" if e.get("note") else ""),
            )
            for e in data["events"]
        ],
    )
    click.echo(f"\n{len(data['events'])} event(s); * = listed as evidence of the suppression")
    unverified = [e for e in data["events"] if e["verified"] is False]
    if unverified:
        click.echo(f"{len(unverified)} unverified (not proven to answer our mail; never counted):")
        for e in unverified:
            click.echo(printable(f"  {e['received_at'][:19]}  {e['kind']}: {e['verification']}"))
    if data["log"]:
        click.echo("\nchanges:")
        for entry in data["log"]:
            who = f" by {entry['by']}" if entry["by"] else ""
            line = f"  {entry['at'][:19]}  {entry['action']} ({entry['source']}{who}) {entry['why']}"
            click.echo(printable(line.rstrip()))


COMMANDS = (suppress_cmd, unsuppress_cmd, rebuild_cmd, suppressed_cmd, history_cmd, approve_cmd, reject_cmd)


def register(group: click.Group) -> None:
    for cmd in COMMANDS:
        group.add_command(cmd)
