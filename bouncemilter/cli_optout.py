"""Commands of the suppression feed (issue #11): import-suppressions (a CSV from an ESP) and notify (the webhook)."""

from __future__ import annotations

import csv
import errno
import os
import sqlite3
import sys
import threading
import time
from typing import Any

import click

from . import notify as nt
from . import suppress_import as si
from .cli_common import config_options, echo_json, load, printable, stdin_binary
from .cli_suppress import _connect, _who
from .regularfile import read_regular
from .store import Store, StoreError, display_name

SHOWN = 50  # skipped rows listed on stderr; --rejects has them all


@click.command("import-suppressions")
@config_options
@click.argument("path", metavar="FILE.csv", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--by", default=None, metavar="WHO", help="Who imports (default: the invoking user).")
@click.option(
    "--category",
    type=click.Choice(si.CATEGORIES),
    help="Every row is this category (e.g. opt-out for a list of unsubscribes), whatever its reason says.",
)
@click.option("--rejects", metavar="FILE", help="Write the skipped rows here (the file's columns, line, why).")
@click.option("--no-notify", is_flag=True, help="Do not announce these suppressions to [notify] url.")
@click.option("--dry-run", is_flag=True, help="Read and check everything, save nothing.")
@click.option(
    "--batch-size", type=click.IntRange(1, 100000), default=si.BATCH, show_default=True, help="Rows per transaction."
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def import_suppressions_cmd(
    config_path: str | None,
    db: str | None,
    path: str,
    by: str | None,
    category: str | None,
    rejects: str | None,
    no_notify: bool,
    dry_run: bool,
    batch_size: int,
    fmt: str,
) -> None:
    """Load a suppression list exported from an ESP or list manager: a CSV with a header naming an address (or
    email) column and optionally reason and date columns. Rows that cannot be read are skipped and reported
    (exit status 1); the rest is saved. Loading the same file again changes nothing.

    \b
    Examples:
      bouncemilter import-suppressions mailchimp-unsubscribed.csv --category opt-out
      bouncemilter import-suppressions esp-suppressions.csv --rejects rejected.csv
    """
    settings = load(config_path, db)
    t0 = time.monotonic()
    try:
        # a FIFO or /dev/zero as PATH is an error, and standard input is capped (sources.STDIN_MAX), never a hang
        data = _stdin_capped() if path == "-" else read_regular(path)
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        parsed = si.parse(data, category=category or "")
    except si.CsvError as exc:
        raise click.ClickException(f"{path}: {exc}; nothing saved") from None
    try:  # a list from the previous ESP may come before the milter ever ran: the database is created if need be
        Store(settings.db, settings.store_timeout).close()
    except StoreError as exc:
        raise click.ClickException(f"{exc}; nothing saved") from None
    conn = _connect(settings, write=True)
    try:
        out = si.write(
            conn,
            parsed.rows,
            source_name=os.path.basename(path) if path != "-" else "stdin",
            by=_who(by),
            notify=not no_notify,
            batch=batch_size,
            dry_run=dry_run,
        )
    except sqlite3.Error as exc:
        raise click.ClickException(
            f"{display_name(settings.db)}: {exc}; the batches before it are saved, run the same import again to finish"
        ) from None
    finally:
        conn.close()
    seconds = time.monotonic() - t0
    skipped = sorted(parsed.skipped + out.skipped, key=lambda s: s.line)
    if rejects:
        _write_rejects(rejects, parsed.header, skipped)
    for s in skipped[:SHOWN]:
        click.echo(printable(f"bouncemilter: {path}:{s.line}: skipped: {s.why}"), err=True)
    if len(skipped) > SHOWN:
        more = f" (all in {rejects})" if rejects else " (--rejects FILE writes them all)"
        click.echo(f"bouncemilter: ... and {len(skipped) - SHOWN} more skipped row(s){more}", err=True)
    summary: dict[str, Any] = {
        "file": path,
        "rows": len(parsed.rows) + len(parsed.skipped),
        "suppressed": out.suppressed,
        "now_opt_out": out.opted_out,
        "already_suppressed": out.already,
        "skipped": len(skipped),
        "by_category": dict(sorted(out.by_category.items())),
        "columns": parsed.columns,
        "encoding": parsed.encoding,
        "dry_run": dry_run,
        "seconds": round(seconds, 3),
        "skipped_rows": [{"line": s.line, "why": s.why} for s in skipped],
    }
    if fmt == "json":
        echo_json(summary)
    else:
        detail = ", ".join(f"{n} {c}" for c, n in sorted(out.by_category.items()))
        click.echo(
            ("dry run: " if dry_run else "")
            + f"{summary['rows']} row(s): {out.suppressed} suppressed"
            + (f" ({detail})" if detail else "")
            + (f", {out.opted_out} now opt-out" if out.opted_out else "")
            + f", {out.already} already suppressed, {len(skipped)} skipped"
            + (f"; columns {', '.join(f'{k}={v!r}' for k, v in parsed.columns.items())}" if parsed.columns else "")
            + (f"; read as {parsed.encoding}" if parsed.encoding != "utf-8" else "")
        )
    if skipped:
        sys.exit(1)


def _stdin_capped() -> bytes:
    from .sources import STDIN_MAX

    data = stdin_binary().read(STDIN_MAX + 1)
    if len(data) > STDIN_MAX:
        raise OSError(
            errno.EFBIG, f"more than {STDIN_MAX >> 20} MiB on standard input (give a list this big as a file)"
        )
    return data


def _write_rejects(path: str, header: list[str], skipped: list[si.Skip]) -> None:
    try:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow([*header, "line", "why"])
            for s in skipped:
                cells = s.cells + [""] * (len(header) - len(s.cells))
                writer.writerow([*cells, s.line, s.why])
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot write the rejected rows: {exc.strerror or exc}") from None


@click.command("notify")
@config_options
@click.option("--status", "show_status", is_flag=True, help="Show the outbox (waiting, delivered, last failure).")
@click.option("--watch", is_flag=True, help="Keep delivering (as `run` does) until interrupted.")
@click.option("--retry-now", is_flag=True, help="Try every waiting delivery now, whatever its backoff.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def notify_cmd(
    config_path: str | None, db: str | None, show_status: bool, watch: bool, retry_now: bool, fmt: str
) -> None:
    """Deliver the new suppressions to [notify] url (one pass; `bouncemilter run` does this by itself).

    Exit status 0 when nothing is left waiting, 1 when deliveries failed (they stay in the outbox), 2 when the
    webhook cannot work (no url or secret).

    \b
    Examples:
      bouncemilter notify --status
      */5 * * * * bouncemilter notify      # a host where the milter does not run
    """
    settings = load(config_path, db)
    if show_status:
        conn = _connect(settings, write=True)
        try:
            info = nt.status(conn)
        finally:
            conn.close()
        info["url"] = settings.notify_url or None
        if fmt == "json":
            echo_json(info)
        else:
            last = info["last_failure"]
            click.echo(
                f"{info['waiting']} waiting, {info['delivered']} delivered"
                + (f"; oldest waiting since {info['oldest_waiting'][:19]}" if info["oldest_waiting"] else "")
                + (f"; url {info['url']}" if info["url"] else "; no [notify] url")
            )
            if last:
                line = (
                    f"last failure: {last['address']} (id {last['id']}), {last['attempts']} attempt(s), "
                    f"{last['last_error']}; next attempt {last['next_attempt_at'][:19]}"
                )
                click.echo(printable(line))
        return
    if not settings.notify_url:
        click.echo("bouncemilter: no [notify] url configured: nothing to deliver to", err=True)
        sys.exit(2)
    _connect(settings, write=True).close()  # the schema, up to date
    notifier = nt.Notifier(settings.db, settings, _stderr_logger(), db_timeout=settings.store_timeout)
    if watch:
        stop = threading.Event()
        try:
            notifier.loop(stop)
        except KeyboardInterrupt:
            stop.set()
        return
    try:
        result = notifier.run_once(retry_now=retry_now)
    except nt.NotifyError as exc:
        click.echo(f"bouncemilter: {exc}; nothing sent, nothing lost", err=True)
        sys.exit(2)
    except sqlite3.Error as exc:
        raise click.ClickException(f"{display_name(settings.db)}: {exc}") from None
    if fmt == "json":
        echo_json({k: v for k, v in result.__dict__.items() if k != "delivered_ids"})
    else:
        click.echo(
            f"{result.delivered} delivered, {result.failed} failed, {result.waiting} waiting"
            + (f" ({result.queued} new)" if result.queued else "")
            + (f"; last error: {result.error}" if result.error else "")
        )
    if result.failed:
        sys.exit(1)


def _stderr_logger() -> Any:
    from . import logjson

    return logjson.setup("stderr")


COMMANDS = (import_suppressions_cmd, notify_cmd)


def register(group: click.Group) -> None:
    for cmd in COMMANDS:
        group.add_command(cmd)
