"""The `bouncemilter` command: thin click commands over the library."""

from __future__ import annotations

import json
import sys

import click

from . import __version__
from .classify import Classification, classify
from .sources import SourceError, iter_messages

PROGRESS_MIN = 200  # show a progress bar from this many messages on (and only on a terminal)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
@click.argument("paths", nargs=-1, required=True)
def classify_cmd(fmt: str, paths: tuple[str, ...]) -> None:
    """Classify message files, directories, mbox files, Maildirs or - (stdin).

    \b
    Examples:
      bouncemilter classify bounce.eml
      bouncemilter classify --format jsonl ~/Maildir/.Bounces > bounces.jsonl
    """
    errors: list[SourceError] = []
    results: list[dict] = []
    messages = iter_messages(list(paths), errors)
    if sys.stderr.isatty():
        messages = _with_progress(messages)
    for source, raw in messages:
        record = {"source": source, **classify(raw).as_dict()}
        if fmt == "jsonl":
            click.echo(json.dumps(record, ensure_ascii=False))
        else:
            results.append(record)
    if fmt == "json":
        click.echo(json.dumps(results, ensure_ascii=False, indent=2))
    elif fmt == "table":
        _print_table(results)
    for err in errors:
        click.echo(f"bouncemilter: {err.source}: {err.message}", err=True)
    if errors:
        sys.exit(1)


def _with_progress(messages):  # type: ignore[no-untyped-def]
    """Messages pass through unchanged; a counter on stderr once a run is long."""
    with click.progressbar(length=0, label="classifying", file=sys.stderr, show_pos=True) as bar:
        for n, item in enumerate(messages, 1):
            if n >= PROGRESS_MIN:
                bar.update(1)
            elif n == PROGRESS_MIN - 1:
                bar.update(n)
            yield item


def _print_table(records: list[dict]) -> None:
    header = ("SOURCE", "KIND", "RECIPIENT", "REASON", "HARD", "STATUS", "DETECTOR")
    rows: list[tuple[str, ...]] = []
    for rec in records:
        recipients = rec["recipients"] or [{"recipient": "", "reason": "", "hard": False, "status": ""}]
        for i, r in enumerate(recipients):
            rows.append(
                (
                    rec["source"] if i == 0 else "",
                    rec["kind"] if i == 0 else "",
                    r["recipient"],
                    r["reason"],
                    "yes" if r["hard"] else "",
                    r["status"],
                    rec["detector"] if i == 0 else "",
                )
            )
    widths = [min(max([len(h)] + [len(row[i]) for row in rows]), 48) for i, h in enumerate(header)]
    for row in [header, *rows]:
        click.echo("  ".join(cell[:48].ljust(widths[i]) for i, cell in enumerate(row)).rstrip())


def describe(result: Classification) -> str:
    """One line for logs and people."""
    who = ", ".join(r.recipient for r in result.recipients) or "-"
    return f"{result.kind} {who} ({result.detector}: {result.evidence})"



@main.command("run")
@click.option("--config", "config_path", metavar="FILE", help="TOML settings (see conf/bouncemilter.toml); optional.")
@click.option(
    "--socket", "socket_spec", metavar="SPEC", help="unix:/path or inet:PORT@HOST (default inet:9025@127.0.0.1)."
)
@click.option("--db", "db_path", metavar="PATH", help="SQLite database file (default ./bouncemilter.db).")
@click.option(
    "--bounce-address",
    "bounce_addresses",
    metavar="ADDR",
    multiple=True,
    help="Return-path to watch: exact, VERP pattern (bounces+*@example.com) or @domain. Repeatable.",
)
def run_cmd(
    config_path: str | None, socket_spec: str | None, db_path: str | None, bounce_addresses: tuple[str, ...]
) -> None:
    """Run the milter (foreground; stop with SIGTERM).

    \b
    Examples:
      bouncemilter run --bounce-address bounces@example.com
      bouncemilter run --config /etc/bouncemilter/bouncemilter.toml
    """
    from .config import ConfigError, load_settings
    from .milter import serve

    overrides = {"socket": socket_spec, "db": db_path, "bounce_addresses": list(bounce_addresses)}
    try:
        settings = load_settings(config_path, overrides)
    except ConfigError as exc:
        click.echo(f"bouncemilter: {exc}", err=True)
        sys.exit(2)
    sys.exit(serve(settings))


if __name__ == "__main__":
    main()
