"""The `bouncemilter` command: thin click commands over the library."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable

import click

from . import __version__
from .classify import Classification, classify
from .cli_common import Group, printable, resolve_config
from .progress import Progress
from .sources import SourceError, collect, read_messages


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bouncemilter")
def main() -> None:
    """Recognise, classify and record bounces, complaints and auto-replies."""


@main.command("classify")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "jsonl"]),
    default="table",
    show_default=True,
    help="table for people; json (one array) or jsonl (one object per line) for programs.",
)
@click.option(
    "--unsubscribe-address",
    "unsubscribe_addresses",
    metavar="ADDR",
    multiple=True,
    help="An address of your List-Unsubscribe mailto: URLs (exact, unsubscribe+*@example.com or @domain): a "
    "message sent to it (X-Original-To, Delivered-To, To, Cc) that is not a bounce or an auto-reply is an "
    "opt-out. Repeatable.",
)
@click.argument("paths", nargs=-1, required=True)
def classify_cmd(fmt: str, unsubscribe_addresses: tuple[str, ...], paths: tuple[str, ...]) -> None:
    """Classify message files, directories, mbox files, Maildirs or - (stdin).

    Paths must be files or directories: a FIFO or a device (/dev/zero) is reported as unreadable, never waited
    on; send a stream to - instead. Standard input is read up to 64 MiB when it is a pipe, a terminal or a
    device (more is reported as unreadable: give a mailbox that big as a file). Files gzip, bzip2 or xz
    compressed are read as their content. Exit status 1 when any path could not be read.

    \b
    Examples:
      bouncemilter classify bounce.eml
      bouncemilter classify --format jsonl ~/Maildir/.Bounces > bounces.jsonl
      bouncemilter classify --unsubscribe-address 'unsubscribe+*@example.com' request.eml
    """
    classifier = _unsubscribe_classifier(unsubscribe_addresses)
    errors: list[SourceError] = []
    entries = collect(paths, errors)
    progress = Progress(len(entries))
    out = _Output(fmt)
    try:
        for source, raw in read_messages(entries, errors, done=progress.file_done):
            out.add({"source": source, **classifier(raw).as_dict()})
            progress.message_done()
        progress.close()
        out.finish()
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, without a traceback at exit.
        progress.close()
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    for err in errors:
        click.echo(f"bouncemilter: cannot read {err.source}: {err.message}", err=True)
    if errors:
        click.echo(f"bouncemilter: {len(errors)} path(s) could not be read", err=True)
        sys.exit(1)


def _unsubscribe_classifier(patterns: tuple[str, ...]) -> Callable[[bytes], Classification]:
    """classify(), plus the opt-out rule for messages whose headers say they went to one of `patterns`."""
    if not patterns:
        return classify
    from . import ingest
    from .classify import optout
    from .config import ConfigError, load_settings
    from .unsubscribe import build_matcher, subscriber

    try:  # the embedded defaults' VERP separator and encoding, as `run` would use them
        settings = load_settings(None, {"unsubscribe_addresses": list(patterns)})
    except ConfigError as exc:
        message = str(exc).removeprefix("command line: --unsubscribe-address: ")
        raise click.BadParameter(message, param_hint="--unsubscribe-address") from None
    matcher = build_matcher(settings)

    def run(raw: bytes) -> Classification:
        result = classify(raw)
        env = ingest.mailbox_envelope(raw, matcher)
        if not env.unsubscribe:
            return result
        matches = [m for m in map(matcher.match, env.bounce_addresses) if m is not None]
        return optout.for_unsubscribe_address(result, raw, subscriber(matches), env.envelope_from)

    return run


class _Output:
    """jsonl and json are streamed message by message; the table needs its widths first."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.count = 0
        self.kinds: dict[str, int] = {}
        self.rows: list[tuple[str, ...]] = []

    def add(self, record: dict) -> None:
        self.count += 1
        self.kinds[record["kind"]] = self.kinds.get(record["kind"], 0) + 1
        if self.fmt == "jsonl":
            click.echo(json.dumps(record, ensure_ascii=False))
        elif self.fmt == "json":
            text = json.dumps(record, ensure_ascii=False, indent=2).replace("\n", "\n  ")
            click.echo(("[\n  " if self.count == 1 else ",\n  ") + text, nl=False)
        else:
            self.rows.extend(_table_rows(record))

    def finish(self) -> None:
        if self.fmt == "json":
            click.echo("\n]" if self.count else "[]")
        elif self.fmt == "table":
            _print_table(self.rows)
            summary = ", ".join(f"{n} {kind}" for kind, n in sorted(self.kinds.items()))
            click.echo(f"\n{self.count} message(s){': ' + summary if summary else ''}")


_TABLE_HEADER = ("SOURCE", "KIND", "RECIPIENT", "REASON", "HARD", "STATUS", "DETECTOR")


def _table_rows(rec: dict) -> list[tuple[str, ...]]:
    recipients = rec["recipients"] or [{"recipient": "", "reason": "", "hard": False, "status": ""}]
    return [
        (
            rec["source"] if i == 0 else "",
            rec["kind"] if i == 0 else "",
            # an alias's failure: the address the sender used first, as the suppression list holds it
            f"{r['original_recipient']} -> {r['recipient']}" if r.get("original_recipient") else r["recipient"],
            r["reason"],
            "yes" if r["hard"] else "",
            r["status"],
            rec["detector"] if i == 0 else "",
        )
        for i, r in enumerate(recipients)
    ]


def _print_table(rows: list[tuple[str, ...]]) -> None:
    rows = [tuple(printable(c) for c in row) for row in rows]  # file names and report text: no raw escapes
    widths = [min(max([len(h)] + [len(row[i]) for row in rows]), 48) for i, h in enumerate(_TABLE_HEADER)]
    for row in [_TABLE_HEADER, *rows]:
        click.echo("  ".join(_fit(cell, i == 0).ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


def _fit(cell: str, keep_end: bool, width: int = 48) -> str:
    """A long source keeps its end (the file name), any other long value its start."""
    if len(cell) <= width:
        return cell
    return "…" + cell[1 - width :] if keep_end else cell[: width - 1] + "…"


def describe(result: Classification) -> str:
    """One line for logs and people."""
    who = ", ".join(r.recipient for r in result.recipients) or "-"
    return f"{result.kind} {who} ({result.detector}: {result.evidence})"


@main.command("run")
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    callback=resolve_config,
    help="TOML settings (see conf/bouncemilter.toml). Default: $BOUNCEMILTER_CONFIG, else "
    "/etc/bouncemilter/bouncemilter.toml if it exists, else embedded defaults.",
)
@click.option(
    "--socket",
    "socket_spec",
    metavar="SPEC",
    help="unix:/path or inet:PORT@HOST (overrides the config file's milter.socket; default inet:9025@127.0.0.1).",
)
@click.option(
    "--db",
    "db_path",
    metavar="PATH",
    help="The store: a SQLite file or a PostgreSQL URL postgresql://... (overrides the config file's store.db; "
    "default ./bouncemilter.db).",
)
@click.option(
    "--bounce-address",
    "bounce_addresses",
    metavar="ADDR",
    multiple=True,
    help="Return-path to watch: exact, VERP pattern (bounces+*@example.com) or @domain. Repeatable.",
)
@click.option(
    "--unsubscribe-address",
    "unsubscribe_addresses",
    metavar="ADDR",
    multiple=True,
    help="List-Unsubscribe mailto: address to watch (exact, unsubscribe+*@example.com or @domain). Repeatable.",
)
def run_cmd(
    config_path: str | None,
    socket_spec: str | None,
    db_path: str | None,
    bounce_addresses: tuple[str, ...],
    unsubscribe_addresses: tuple[str, ...],
) -> None:
    """Run the milter (foreground; stop with SIGTERM, reload the configuration with SIGHUP).

    \b
    Examples:
      bouncemilter run --bounce-address bounces@example.com
      bouncemilter run --config /etc/bouncemilter/bouncemilter.toml
    """
    from .config import ConfigError, load_settings
    from .milter import serve

    overrides = {
        "socket": socket_spec,
        "db": db_path,
        "bounce_addresses": list(bounce_addresses),
        "unsubscribe_addresses": list(unsubscribe_addresses),
    }
    try:
        settings = load_settings(config_path, overrides)
    except ConfigError as exc:
        # JSON like every other line the milter writes, so that a log pipeline (jq, a shipper) reads it too
        from . import logjson

        logjson.event(logjson.setup("stderr"), logging.ERROR, "config_error", str(exc))
        sys.exit(2)
    # SIGHUP reads the same file with the same flags again
    sys.exit(serve(settings, reload=lambda: load_settings(config_path, overrides)))


from .cli_suppress import register as _register_suppress  # noqa: E402  (needs `main`)

_register_suppress(main)  # suppress, unsuppress, rebuild-suppressions, suppressed, history

from .cli_import import register as _register_import  # noqa: E402

_register_import(main)  # import

from .cli_fetch import register as _register_fetch  # noqa: E402

_register_fetch(main)  # fetch

from .cli_report import register as _register_report  # noqa: E402  (needs `main`)

_register_report(main)  # stats, check

from .cli_sign import register as _register_sign  # noqa: E402  (needs `main`)

_register_sign(main)  # sign, verify

from .cli_admin import register as _register_admin  # noqa: E402

_register_admin(main)  # check-config, doctor, prune, backup

from .cli_optout import register as _register_optout  # noqa: E402

_register_optout(main)  # import-suppressions, notify

from .cli_store import register as _register_store  # noqa: E402

_register_store(main)  # migrate-store, export

if __name__ == "__main__":  # after every register(): `python -m bouncemilter.cli export` needs the last one too
    main()
