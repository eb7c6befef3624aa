"""Options and helpers every data command shares: --config, --db, --format, and the one path by which an error
becomes a message (`Group`)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any

import click

from .config import ConfigError, Settings, config_path, load_settings

FORMATS_DATA = ("table", "json")
_DB_KEY = "bouncemilter.db"  # ctx.meta: the store the command opened, to name it in an error that does not


class ConfigProblem(click.ClickException):
    """An invalid configuration file or flag: exit 2, like click's usage errors and `check-config`."""

    exit_code = 2


class Interrupted(click.ClickException):
    """Ctrl-C: 128 + SIGINT, as a shell reports it."""

    exit_code = 130


class Group(click.Group):
    """The `bouncemilter` group: whatever a command lets escape ends as one line on stderr and a non-zero exit,
    never a traceback. A store that cannot be opened or read (sqlite3.Error, StoreError, NoDatabase), a file
    that cannot be read or written (OSError), a full disk under standard output, a configuration problem (exit 2)
    and a multi-line driver message (libpq's hints) all take this path; commands only catch what they can say
    better."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
        except SystemExit:
            _flush_stdout()
            raise
        except click.ClickException as exc:
            foreign = _foreign_store(exc)
            if foreign is not None:  # a command said "cannot open the store": say it is the wrong file, exit 2
                raise ConfigProblem(one_line(str(foreign))) from foreign
            exc.message = one_line(exc.message)
            raise
        except KeyboardInterrupt:
            # rather than click's bare "Aborted!": every write command commits whole transactions and is idempotent
            raise Interrupted(
                "interrupted; a command that writes commits whole transactions: run it again to finish"
            ) from None
        except (click.exceptions.Exit, click.Abort):
            raise
        except ConfigError as exc:
            raise ConfigProblem(one_line(str(exc))) from exc
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # the reader went away (`| head`): click exits quietly
            if _stdout_broken(exc):
                raise click.ClickException(
                    f"cannot write to standard output: {exc.strerror or exc}; the output is incomplete"
                ) from exc
            raise click.ClickException(one_line(_os_message(exc))) from exc
        except Exception as exc:
            from .store import NoDatabase, StoreError

            if _foreign_store(exc) is not None:  # a wrong --db or store.db: a usage mistake, nothing was written
                raise ConfigProblem(one_line(str(exc))) from exc
            if not isinstance(exc, sqlite3.Error | StoreError | NoDatabase):
                raise
            raise click.ClickException(one_line(_name_store(ctx, str(exc)))) from exc
        _flush_stdout()
        return result


def _foreign_store(exc: BaseException) -> BaseException | None:
    """The ForeignDatabase behind `exc` (itself, or what a command turned into its own message), else None."""
    from .store.db import ForeignDatabase

    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None or isinstance(seen, ForeignDatabase):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class Seconds(click.FloatRange):
    """A number of seconds within a range; nan slips through FloatRange's comparisons, so it is refused here."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if number != number:  # nan
            self.fail(f"{value!r} is not a number", param, ctx)
        return number


def one_line(text: str) -> str:
    """A message on one line (libpq adds indented hints on lines of their own), without a doubled
    "NAME: NAME: " prefix (a command naming the store before a store error that already names it)."""
    text = " ".join(str(text).split())
    return re.sub(r"^(\S+): \1: ", r"\1: ", text)


def _name_store(ctx: click.Context, message: str) -> str:
    from .store import display_name

    db = ctx.find_root().meta.get(_DB_KEY)
    name = display_name(db) if db else ""
    return message if not name or name in message else f"{name}: {message}"


def _os_message(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename else reason


# what a write to a full or failing disk raises; a file the command opens itself names itself (exc.filename)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EBADF}


def _stdout_broken(exc: OSError | None = None) -> bool:
    """Whether standard output refuses writes (a full disk, a closed descriptor): `exc` is a write error naming no
    file, or a flush fails. Then it is pointed at /dev/null, so that the interpreter's last flush does not print a
    traceback of its own."""
    broken = exc is not None and exc.filename is None and exc.errno in _WRITE_ERRNOS
    try:
        sys.stdout.flush()
    except OSError:
        broken = True
    if broken:
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return broken


def _flush_stdout() -> None:
    """Output buffered to a full disk fails only at the flush: report it rather than exit 0 (or 120)."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            raise
        _stdout_broken()
        raise click.ClickException(
            f"cannot write to standard output: {exc.strerror or exc}; the output is incomplete"
        ) from exc


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM/SIGINT set the event instead of killing the command: a batch command finishes (and commits) the
    batch in progress, then stops and says how far it got."""
    stop = threading.Event()

    def handler(_signum: int, _frame: Any) -> None:
        stop.set()

    before = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, old in before.items():
            signal.signal(sig, old)


def stdin_binary() -> IO[bytes]:
    """Standard input for `-`, or a usage error when there is none (a daemon or cron job started with it closed)."""
    if sys.stdin is None:
        raise click.UsageError("standard input is closed: give a file instead of -")
    return sys.stdin.buffer


def stdin_text() -> IO[str]:
    if sys.stdin is None:
        raise click.UsageError("standard input is closed: give a file instead of -")
    return sys.stdin


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
        settings = load_settings(config_path, {"db": db})
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from exc
    remember_store(settings.db)
    return settings


def remember_store(db: str) -> None:
    """Name `db` in any store error the command lets escape (sqlite3's messages do not say which file)."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.find_root().meta[_DB_KEY] = db


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
