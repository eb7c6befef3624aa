"""Commands over the bounce history: `stats` (table, JSON, terminal bar chart, PNG) and `check` (Nagios exit codes)."""

from __future__ import annotations

import shutil
import sqlite3
import sys
from datetime import UTC, datetime
from typing import Any, NoReturn

import click

from . import reports
from . import store as store_db
from .cli_common import config_options, echo_json, echo_table, load, printable
from .config import ConfigError, load_settings
from .store import sql as Q

_EIGHTHS = " ▏▎▍▌▋▊▉█"


def _now() -> datetime:
    return datetime.now(UTC)


def _read_only(db: str, timeout: float) -> Any:
    """A read-only connection (SQLite mode=ro: a typo in --db must not create an empty database; PostgreSQL:
    read-only transactions). Raises FileNotFoundError when there is no store, sqlite3.Error on either engine."""
    try:
        conn = store_db.connect(db, timeout, read_only=True)
    except store_db.NoDatabase as exc:
        raise FileNotFoundError(str(exc)) from None
    conn.execute(Q.IS_A_STORE)  # fails early when it is not a bouncemilter database
    return conn


def _unreachable(db: str, exc: BaseException) -> bool:
    """A PostgreSQL store that cannot be reached (down, refusing, timing out), as opposed to a bad --db."""
    return store_db.is_url(db) and isinstance(exc, sqlite3.OperationalError)


# ------------------------------------------------------------------------------------------------------ stats


def bar(value: float, maximum: float, width: int) -> str:
    """A horizontal bar of `width` cells at most, in eighths of a cell."""
    if maximum <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / maximum * width * 8))
    return "█" * (eighths // 8) + (_EIGHTHS[eighths % 8] if eighths % 8 else "")


def render_chart(st: reports.Stats, columns: int) -> list[str]:
    """Label, bar, count and share per row, fitted to `columns` characters."""
    if not st.rows:
        return []
    values = [st.value(r) for r in st.rows]
    counts = [f"{v} ({r.share * 100:.1f}%)" for v, r in zip(values, st.rows, strict=True)]
    keys = [printable(r.key) for r in st.rows]
    label_w = min(max(len(k) for k in keys), max(12, columns // 3))
    count_w = max(len(c) for c in counts)
    bar_w = max(columns - label_w - count_w - 4, 10)
    top = max(values)
    lines = []
    for key, v, c in zip(keys, values, counts, strict=True):
        label = key if len(key) <= label_w else key[: label_w - 1] + "…"
        lines.append(f"{label.ljust(label_w)} │{bar(v, top, bar_w).ljust(bar_w)} {c.rjust(count_w)}".rstrip())
    return lines


def _title(st: reports.Stats) -> str:
    span = f"since {st.since}" if st.since else "all time"
    return f"{st.unit} by {st.by}, {span} (until {st.until})"


def write_png(st: reports.Stats, path: str) -> None:
    """A horizontal bar chart as PNG.

    Pillow rather than matplotlib: a few MB instead of tens, no font cache or backend to configure on a
    server, and it draws text (a hand-written PNG encoder would need its own bitmap font). It is an optional
    dependency (`pip install bouncemilter[chart]`): the milter never needs it."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise click.ClickException("--png needs Pillow: pip install 'bouncemilter[chart]' (or pillow)") from None
    rows = st.rows or [reports.StatsRow("(no data)", 0, 0, 0, 0.0)]
    try:
        font = ImageFont.load_default(size=15)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        font = ImageFont.load_default()
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_w(text: str) -> int:
        left, _, right, _ = scratch.textbbox((0, 0), text, font=font)
        return int(right - left)

    pad, row_h, bar_h, bar_w = 16, 26, 18, 480
    labels = [r.key[:48] for r in rows]
    values = [st.value(r) for r in rows]
    counts = [f"{v}  ({r.share * 100:.1f}%)" for v, r in zip(values, rows, strict=True)]
    label_w = max(text_w(t) for t in labels)
    count_w = max(text_w(t) for t in counts)
    title = _title(st) + ("  -  red: hard bounces" if st.unit == "recipients" else "")
    width = max(pad * 3 + label_w + bar_w + count_w + 8, text_w(title) + 2 * pad)
    height = pad * 2 + 30 + row_h * len(rows)
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((pad, pad), title, fill="black", font=font)
    top = max(values) or 1
    y0 = pad + 30
    x_bar = pad * 2 + label_w
    for i, (label, v, c) in enumerate(zip(labels, values, counts, strict=True)):
        y = y0 + i * row_h
        draw.text((pad + label_w - text_w(label), y + 2), label, fill="black", font=font)
        length = round(v / top * bar_w)
        if length:
            draw.rectangle([x_bar, y + 2, x_bar + length, y + 2 + bar_h], fill="#3b6fb6")
            hard = rows[i].hard if st.unit == "recipients" else 0
            if hard:  # the hard share of the bar, darker
                draw.rectangle([x_bar, y + 2, x_bar + round(hard / top * bar_w), y + 2 + bar_h], fill="#b63b3b")
        draw.text((x_bar + length + 8, y + 2), c, fill="black", font=font)
    draw.line([x_bar, y0 - 4, x_bar, y0 + row_h * len(rows)], fill="#888888")
    img.save(path, format="PNG")


@click.command("stats")
@config_options
@click.option(
    "--since", default="24h", show_default=True, metavar="WHEN", help="24h, 7d, 30m, 2w, an ISO date, or all."
)
@click.option("--until", metavar="WHEN", help="End of the window, same forms as --since (default: now).")
@click.option("--by", "by", type=click.Choice(reports.BY_CHOICES), default="kind", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "chart"]), default="table", show_default=True)
@click.option("--png", "png", metavar="FILE", type=click.Path(dir_okay=False), help="Also write a PNG bar chart.")
def stats_cmd(
    config_path: str | None, db: str | None, since: str, until: str | None, by: str, fmt: str, png: str | None
) -> None:
    """Counts of messages, affected recipients and hard bounces, grouped one way.

    \b
    Examples:
      bouncemilter stats --db bounces.db
      bouncemilter stats --since 7d --by domain --format chart
      bouncemilter stats --since 48h --by hour --png /tmp/bounces.png
      bouncemilter stats --since all --by reason --format json
      bouncemilter stats --since 2026-10-01 --until 2026-11-01 --by week
    """
    settings = load(config_path, db)
    now = _now()
    try:
        start = None if since.strip().lower() == "all" else reports.window_start(since, now)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    if until:
        try:
            now = reports.window_start(until, now) or now
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--until") from None
        if start is not None and start > now:
            raise click.BadParameter(f"{until!r} is before --since {since!r}", param_hint="--until")
    try:
        conn = _read_only(settings.db, settings.store_timeout)
        try:
            st = reports.stats(conn, by, start, now)
        finally:
            conn.close()
    except (OSError, sqlite3.Error) as exc:
        raise click.ClickException(f"{store_db.display_name(settings.db)}: {exc}") from exc
    if png:
        write_png(st, png)
    if fmt == "json":
        echo_json(st.as_dict())
        return
    click.echo(printable(_title(st)))
    if fmt == "chart":
        # COLUMNS comes from the environment: 99999999 would draw a 100 MB bar
        columns = min(shutil.get_terminal_size((80, 24)).columns, 400)
        for line in render_chart(st, columns):
            click.echo(line)
    else:
        header = [by, "messages", "recipients", "hard", "unverified", "share"]
        echo_table(
            header,
            [(r.key, r.messages, r.recipients, r.hard, r.unverified, f"{r.share * 100:.1f}%") for r in st.rows],
        )
    unverified = f", {st.total_unverified} unverified message(s)" if st.total_unverified else ""
    click.echo(
        f"total: {st.total_messages} message(s), {st.total_recipients} recipient(s), {st.total_hard} hard{unverified}"
    )


# ------------------------------------------------------------------------------------------------------ check


class _NagiosCommand(click.Command):
    """Usage errors exit 3 (UNKNOWN), not click's 2, which a monitoring system would read as CRITICAL, and
    print a status line on stdout: NRPE shows only stdout, and click writes its usage errors to stderr."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.exit_code = reports.UNKNOWN
            click.echo(f"BOUNCEMILTER UNKNOWN - {' '.join(exc.format_message().split())}")
            raise


def _threshold(rate: bool) -> Any:
    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> reports.Threshold:
        if value is None:
            return reports.Threshold()
        try:
            return reports.parse_threshold(value, rate=rate)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return convert


def _unknown(message: str) -> NoReturn:
    click.echo(f"BOUNCEMILTER UNKNOWN - {message}")
    sys.exit(reports.UNKNOWN)


@click.command("check", cls=_NagiosCommand)
@config_options
@click.option("--since", default="1h", show_default=True, metavar="WHEN", help="The window: 1h, 30m, 1d, ...")
@click.option(
    "--max-hard-rate",
    metavar="[WARN,]CRIT",
    callback=_threshold(True),
    help="Hard bounce recipients / all bounce recipients, e.g. 0.2 or 10%,20%.",
)
@click.option("--max-complaints", metavar="[WARN,]CRIT", callback=_threshold(False), help="Complaint messages.")
@click.option(
    "--max-blocked", metavar="[WARN,]CRIT", callback=_threshold(False), help="Bounce recipients refused as blocked."
)
@click.option(
    "--min-bounces",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Judge the hard rate only with at least this many bounce recipients in the window.",
)
def check_cmd(
    config_path: str | None,
    db: str | None,
    since: str,
    max_hard_rate: reports.Threshold,
    max_complaints: reports.Threshold,
    max_blocked: reports.Threshold,
    min_bounces: int,
) -> None:
    """Alert on the last window: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios plugin convention).

    A threshold is CRIT or WARN,CRIT (WARN, alone: warning only); a value above a limit breaches it. The first
    output line is Nagios status text with perfdata, then one line per breached threshold.

    \b
    Examples:
      bouncemilter check --db bounces.db --since 1h --max-hard-rate 10%,25% --max-complaints 0,5 --max-blocked 20
      bouncemilter check --config /etc/bouncemilter/bouncemilter.toml --max-blocked 0 || mail -s bounces root
    """
    try:
        settings = load_settings(config_path, {"db": db})
    except ConfigError as exc:
        _unknown(str(exc))
    now = _now()
    try:
        start = reports.window_start(since, now)
    except ValueError as exc:
        _unknown(f"--since: {exc}")
    if start is None:
        _unknown("--since: give a window such as 1h")
    if not (max_hard_rate.active or max_complaints.active or max_blocked.active):
        _unknown("no threshold given (--max-hard-rate, --max-complaints, --max-blocked)")
    try:
        conn = _read_only(settings.db, settings.store_timeout)
        try:
            result = reports.check(
                conn,
                start,
                now,
                hard_rate=max_hard_rate,
                complaints=max_complaints,
                blocked=max_blocked,
                min_bounces=min_bounces,
                label=since.strip(),
            )
        finally:
            conn.close()
    except (OSError, sqlite3.Error) as exc:
        if _unreachable(settings.db, exc):  # the milter cannot store bounces either: it answers 4xx
            click.echo(f"BOUNCEMILTER CRITICAL - store unreachable: {' '.join(str(exc).split())}")
            sys.exit(reports.CRITICAL)
        _unknown(f"cannot read {store_db.display_name(settings.db)}: {exc}")
    click.echo(result.text)
    sys.exit(result.state)


def register(main: click.Group) -> None:
    main.add_command(stats_cmd)
    main.add_command(check_cmd)
