"""`bouncemilter import PATH...`: record the messages of an existing bounce mailbox in the store.

For admins moving from a mailbox that a script used to poll: each message goes through the same
classify-and-record step as the milter (`ingest`), with the envelope facts the mailbox kept
(`ingest.mailbox_envelope`), committed in batches. Importing the same mailbox again adds nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

import click

from . import ingest
from .cli_common import ConfigProblem, config_options, echo_json, remember_store, stop_on_signals
from .config import ConfigError, Settings, load_settings
from .policy import Policy
from .progress import Progress
from .sentlog import SentReader
from .sources import (
    STDIN,
    Entry,
    SourceError,
    collect,
    has_header_block,
    read_file,
    read_stdin,
    split_mbox_envelopes,
)
from .store import StoreError, display_name
from .suppressions import open_store
from .unsubscribe import AddressMatcher, build_matcher
from .verdict import make_domain_checker, make_verifier


class ImportProgress(Progress):
    """The classify progress bar, advancing inside a big mbox too (it counts as one file)."""

    part = 0.0  # fraction of the current file done

    def line(self, elapsed: float) -> str:
        rate = self.messages / elapsed if elapsed > 0 else 0.0
        done = min((self.files + self.part) / self.total, 1.0) if self.total else 1.0
        filled = int(done * 24)
        bar = "#" * filled + "-" * (24 - filled)
        return f"importing [{bar}] {done:4.0%} {self.files}/{self.total} files, {self.messages} messages, {rate:.0f}/s"


def _read(entry: Entry) -> bytes:
    return read_stdin() if entry.path == STDIN else read_file(entry.path)


def _label(source: str, index: int, count: int) -> str:
    return f"{source}#{index + 1}" if count > 1 else source


def _describe(exc: OSError) -> str:
    return "is a directory" if isinstance(exc, IsADirectoryError) else exc.strerror or str(exc)


def read_mailbox(
    entries: list[Entry],
    errors: list[SourceError],
    matcher: AddressMatcher,
    progress: ImportProgress,
    stop: threading.Event | None = None,
) -> Iterator[tuple[bytes, ingest.Envelope]]:
    """(raw, envelope facts) per message; unreadable entries go to `errors` and the rest goes on. Once `stop` is
    set nothing more is read: the messages read so far are committed as the last batch."""
    for entry in entries:
        if stop is not None and stop.is_set():
            return
        try:
            data = _read(entry)
        except OSError as exc:
            errors.append(SourceError(entry.source, _describe(exc)))
        else:
            messages = split_mbox_envelopes(data) if data.startswith(b"From ") else [(b"", data)]
            count = len(messages)
            for i, (from_line, raw) in enumerate(messages):
                if not raw.strip():  # nothing to classify: an empty row would only be noise in the store
                    errors.append(SourceError(_label(entry.source, i, count), "empty message"))
                elif not has_header_block(raw):
                    errors.append(SourceError(_label(entry.source, i, count), "not a mail message (no header block)"))
                else:
                    yield raw, ingest.mailbox_envelope(raw, matcher, from_line)
                progress.part = (i + 1) / count
                progress.message_done()
                if stop is not None and stop.is_set():
                    return
        progress.part = 0.0
        progress.file_done()


def _settings(
    config_path: str | None, db: str | None, bounce_addresses: tuple[str, ...], unsubscribe: tuple[str, ...] = ()
) -> Settings:
    try:
        overrides = {"db": db, "bounce_addresses": list(bounce_addresses), "unsubscribe_addresses": list(unsubscribe)}
        settings = load_settings(config_path, overrides)
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from exc
    remember_store(settings.db)
    return settings


@click.command("import")
@config_options
@click.option(
    "--bounce-address",
    "bounce_addresses",
    metavar="ADDR",
    multiple=True,
    help="Return-path the mailbox received for (exact, bounces+*@example.com or @domain), to decode VERP "
    "recipients; overrides the config file's list. Repeatable.",
)
@click.option(
    "--unsubscribe-address",
    "unsubscribe_addresses",
    metavar="ADDR",
    multiple=True,
    help="List-Unsubscribe mailto: address the mailbox received for (exact, unsubscribe+*@example.com or "
    "@domain): its mail is an opt-out unless a bounce or an auto-reply; overrides the config file's list.",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100000),
    default=ingest.BATCH_SIZE,
    show_default=True,
    help="Messages per transaction.",
)
@click.argument("paths", nargs=-1, required=True)
def import_cmd(
    config_path: str | None,
    db: str | None,
    bounce_addresses: tuple[str, ...],
    unsubscribe_addresses: tuple[str, ...],
    fmt: str,
    batch_size: int,
    paths: tuple[str, ...],
) -> None:
    """Import an existing bounce mailbox: mbox files, Maildirs, directories of messages, files or - (stdin).

    Every message is classified and recorded as if the milter had seen it (suppressions included).
    Importing the same messages again changes nothing.

    \b
    Examples:
      bouncemilter import --config /etc/bouncemilter/bouncemilter.toml /var/mail/bounces
      bouncemilter import --db bounces.db --bounce-address 'bounces+*@example.com' ~/Maildir/.Bounces
    """
    settings = _settings(config_path, db, bounce_addresses, unsubscribe_addresses)
    matcher = build_matcher(settings)
    if not matcher:
        click.echo(
            "bouncemilter: no bounce addresses configured (--bounce-address or [bounce] addresses): "
            "VERP recipients will not be decoded, and nothing imported can suppress an address",
            err=True,
        )
    try:
        store = open_store(settings.db, settings.store_timeout)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    sent = SentReader(settings.db, settings.store_timeout) if settings.signing_log_sent else None
    try:
        # signed return paths are judged at each message's arrival; DNS checks get the whole lookup time
        dns = make_domain_checker(settings)
        verifier = make_verifier(settings, matcher, sent, dns, dns_wait=settings.dns_lookup_timeout)
    except ConfigError as exc:
        store.close()
        raise ConfigProblem(str(exc)) from exc
    store.suppressions.policy = Policy.from_settings(settings)

    errors: list[SourceError] = []
    entries = collect(paths, errors)
    progress = ImportProgress(len(entries))
    new = already = truncated = unverified = 0
    kinds: dict[str, int] = {}
    t0 = time.monotonic()
    failure: StoreError | None = None
    # Ctrl-C or SIGTERM: the batch in progress is committed, the summary printed, and the exit status says so
    with stop_on_signals() as stop:
        try:
            stream = read_mailbox(entries, errors, matcher, progress, stop)
            outcomes = ingest.ingest_many(
                stream, settings, store, batch_size, action=ingest.IMPORT_ACTION, verifier=verifier
            )
            for out in outcomes:
                if out.inserted and out.classification is not None:
                    new += 1
                    kinds[out.classification.kind] = kinds.get(out.classification.kind, 0) + 1
                    truncated += out.classification.truncated
                    unverified += out.verified is False
                else:
                    already += 1
        except StoreError as exc:
            failure = exc
        finally:
            progress.close()
            store.close()
            if sent is not None:
                sent.close()
            if dns is not None:
                dns.close()
    seconds = time.monotonic() - t0

    for err in errors:
        click.echo(f"bouncemilter: cannot read {err.source}: {err.message}", err=True)
    summary = {
        "new": new,
        "already_stored": already,
        "unreadable": len(errors),
        "kinds": dict(sorted(kinds.items())),
        "truncated": truncated,  # reports that named more recipients than were read
        "unverified": unverified,  # signed return paths: not proven to answer our mail
        "seconds": round(seconds, 3),
        "errors": [{"source": e.source, "message": e.message} for e in errors],
        "db": display_name(settings.db),
    }
    if fmt == "json":
        echo_json(summary)
    else:
        detail = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        click.echo(f"{new} new, {already} already stored, {len(errors)} unreadable" + (f" ({detail})" if new else ""))
        if unverified:
            click.echo(f"{unverified} unverified (not proven to answer our mail: kept, never counted)")
    if truncated:
        click.echo(
            f"bouncemilter: {truncated} report(s) named more recipients than were read; the first ones are recorded",
            err=True,
        )
    if failure is not None:
        click.echo(
            f"bouncemilter: store failed after {new + already} message(s): {failure}; "
            "those are committed, run the same import again to continue",
            err=True,
        )
        sys.exit(2)
    if stop.is_set():
        click.echo(
            f"bouncemilter: interrupted: {new + already} message(s) done and committed; "
            "run the same import again to continue",
            err=True,
        )
        sys.exit(130)
    if errors:
        sys.exit(1)


def register(group: click.Group) -> None:
    group.add_command(import_cmd)
