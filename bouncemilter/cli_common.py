"""Options and helpers every data command shares: --config, --db, --format."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click

from .config import ConfigError, Settings, config_path, load_settings

FORMATS_DATA = ("table", "json")


def config_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--config FILE and --db PATH (overriding the file's [store] db)."""
    func = click.option(
        "--db",
        "db",
        metavar="PATH",
        help="The store: a SQLite file or a PostgreSQL URL postgresql://... (overrides the config file's store.db).",
    )(func)
    func = click.option(
        "--config",
        "config_path",
        metavar="FILE",
        type=click.Path(dir_okay=False),
        callback=resolve_config,
        help="TOML configuration file (default: $BOUNCEMILTER_CONFIG, else /etc/bouncemilter/bouncemilter.toml "
        "if it exists, else embedded defaults).",
    )(func)
    return func


def resolve_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--config, else $BOUNCEMILTER_CONFIG, else /etc/bouncemilter/bouncemilter.toml when it exists."""
    return config_path(value)


def load(config_path: str | None, db: str | None) -> Settings:
    """Settings from the file and flags; a ConfigError becomes a clean click error."""
    try:
        return load_settings(config_path, {"db": db})
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def printable(value: Any) -> str:
    """Text for a terminal or a CSV file: every character that is not printable as \\xNN, \\uNNNN or \\UNNNNNNNN.

    Diagnostics, remote MTA names and addresses come from whoever sent the bounce; raw, ESC[2J clears the
    screen, ESC[1A ESC[2K hides the rows above, an OSC sequence retitles the terminal, and a bidi override
    reorders what is shown. Printable text (Cyrillic, CJK, ...) stays as it is; JSON output is never escaped.
    """
    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def echo_table(header: Sequence[str], rows: Iterable[Sequence[Any]], max_width: int = 60) -> None:
    """A plain aligned table for people (no box drawing: it must survive pipes and mail); cells `printable`."""
    cells = [[printable(v) for v in row] for row in rows]
    widths = [min(max([len(h)] + [len(r[i]) for r in cells]), max_width) for i, h in enumerate(header)]
    for row in [list(header), *cells]:
        click.echo("  ".join(c[:max_width].ljust(widths[i]) for i, c in enumerate(row)).rstrip())
