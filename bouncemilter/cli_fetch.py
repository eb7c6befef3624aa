"""`bouncemilter fetch URL`: record the bounces of a hosted mailbox (IMAP or POP3), once or watching.

A thin command over `bouncemilter.fetch`: settings from --config's [fetch] section and the flags, the
secret from a file or an environment variable (never a flag: it would show in `ps`), a progress bar on a
terminal, a summary on stdout, one line on stderr and a non-zero status for every failure.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import click

from . import fetch, logjson
from .cli_common import ConfigProblem, Seconds, config_options, echo_json, remember_store
from .cli_common import stop_on_signals as _stop_on_signals
from .config import ConfigError, Settings, load_settings
from .policy import Policy
from .progress import Progress
from .sentlog import SentReader
from .store import StoreError, display_name
from .suppressions import open_store
from .unsubscribe import build_matcher
from .verdict import make_domain_checker, make_verifier

EXIT_MAILBOX = 1  # connection, TLS, login, folder, lost connection
EXIT_STORE = 2  # the store failed (everything before it is committed and acted on)


class FetchProgress(Progress):
    """The progress bar, counting messages (the total grows as passes list new mail)."""

    def __init__(self) -> None:
        super().__init__(0)

    def add_total(self, n: int) -> None:
        self.total += n

    def advance(self, n: int) -> None:
        self.files += n
        self.messages += n
        self._maybe_draw()

    def line(self, elapsed: float) -> str:
        rate = self.messages / elapsed if elapsed > 0 else 0.0
        done = min(self.files / self.total, 1.0) if self.total else 1.0
        filled = int(done * 24)
        bar = "#" * filled + "-" * (24 - filled)
        return f"fetching [{bar}] {done:4.0%} {self.files}/{self.total} messages, {rate:.0f}/s"


def _after_flags(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, action = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: must be CATEGORY=ACTION, e.g. hard=delete", param_hint="--after")
        out[name.strip()] = action.strip()
    return out


def _summary_line(stats: fetch.Stats) -> str:
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(stats.kinds.items()))
    done = [f"moved {n} to {f}" for f, n in sorted(stats.moved.items())]
    done += [f"{label} {n}" for label, n in (("marked seen", stats.seen), ("deleted", stats.deleted),
                                              ("left", stats.left)) if n]  # fmt: skip
    line = f"{stats.new} new, {stats.already} already stored" + (f" ({kinds})" if kinds else "")
    if stats.truncated:
        line += f", {stats.truncated} larger than --max-size (only their start read)"
    return line + ("; " + ", ".join(done) if done else "")


@click.command("fetch")
@config_options
@click.argument("url", required=False)
@click.option("--password-file", metavar="FILE", help="Read the password from the first line of FILE.")
@click.option("--password-env", metavar="VAR", help="Read the password from the environment variable VAR.")
@click.option(
    "--oauth2-token-file",
    metavar="FILE",
    help="Log in with OAuth2 (XOAUTH2) using the bearer token in FILE, re-read at every login.",
)
@click.option(
    "--bounce-address",
    "bounce_addresses",
    metavar="ADDR",
    multiple=True,
    help="Return-path the mailbox receives for (to decode VERP recipients); overrides the config file. Repeatable.",
)
@click.option("--watch", is_flag=True, help="Stay connected and record new mail as it arrives (IMAP IDLE).")
@click.option("--interval", type=Seconds(1, 86400), help="--watch: seconds between polls [default: 300].")
@click.option(
    "--after",
    "after",
    metavar="CATEGORY=ACTION",
    multiple=True,
    help="What to do with a message once stored: leave, seen, delete or move:FOLDER, per category (hard, soft, "
    "delay, complaint, opt_out, auto_reply, delivered, unrecognised). Repeatable. Default: mark seen and move to "
    "Bounces/Hard, Bounces/Soft, Bounces/Complaints, Bounces/OptOuts or Bounces/Unrecognised.",
)
@click.option("--batch-size", type=click.IntRange(1, 10000), help="Messages per fetch and transaction [default: 200].")
@click.option(
    "--max-size", type=click.IntRange(1024, 1 << 30), help="Bytes of a message fetched at most [default: 1048576]."
)
@click.option("--timeout", type=Seconds(1, 3600), help="Seconds the server may stay silent [default: 60].")
@click.option("--ca-file", metavar="FILE", help="Trust the server certificates this CA file signed (a private CA).")
@click.option(
    "--insecure",
    is_flag=True,
    help="FOR TESTS ONLY: do not verify the server's TLS certificate (anyone on the path can read the password).",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def fetch_cmd(
    config_path: str | None,
    db: str | None,
    url: str | None,
    password_file: str | None,
    password_env: str | None,
    oauth2_token_file: str | None,
    bounce_addresses: tuple[str, ...],
    watch: bool,
    interval: float | None,
    after: tuple[str, ...],
    batch_size: int | None,
    max_size: int | None,
    timeout: float | None,
    ca_file: str | None,
    insecure: bool,
    fmt: str,
) -> None:
    """Record the bounces of a mailbox: imap://, imaps://, pop3:// or pop3s://USER@HOST[:PORT][/FOLDER].

    Every message goes through the same classification and store as the milter's (suppressions included);
    fetching the same message again stores nothing new. Once its rows are committed, a message is marked
    seen and moved to a folder for its kind (--after changes that; POP3 can only leave or delete).
    imap:// and pop3:// upgrade to TLS with STARTTLS; certificates are always verified.

    \b
    Examples:
      bouncemilter fetch --db bounces.db --password-file ~/.imap-pass imaps://bounces@example.com@imap.example.com/INBOX
      bouncemilter fetch --config /etc/bouncemilter/bouncemilter.toml --watch
      BM_PASS=... bouncemilter fetch --password-env BM_PASS --after unrecognised=leave pop3s://bounces@pop.example.net
    """
    try:
        settings: Settings = load_settings(config_path, {"db": db, "bounce_addresses": list(bounce_addresses)})
    except ConfigError as exc:
        raise ConfigProblem(str(exc)) from exc
    remember_store(settings.db)
    text = url or settings.fetch_url
    if not text:
        raise click.UsageError("no mailbox: give a URL such as imaps://user@host/INBOX, or [fetch] url in --config")
    try:
        mailbox = fetch.parse_url(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="URL" if url else "[fetch] url") from exc
    try:
        after_given = {**dict(settings.fetch_after), **_after_flags(after)}
        opts = fetch.options_from(
            settings, after=fetch.after_map(after_given), batch=batch_size, max_size=max_size, timeout=timeout,
            ca_file=ca_file, insecure=insecure or None,
        )  # fmt: skip
    except click.BadParameter:
        raise
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--after") from exc

    def warn(msg: str) -> None:
        click.echo(f"bouncemilter: warning: {msg}", err=True)

    fetch.warn = warn
    if insecure:
        warn("--insecure: the server's certificate is not checked; use it for tests only")
    flags = (password_file, password_env, oauth2_token_file)
    if not any(flags):  # none on the command line: the config file's
        flags = (
            settings.fetch_password_file or None,
            settings.fetch_password_env or None,
            settings.fetch_oauth2_token_file or None,
        )
    try:
        creds = fetch.credentials(*flags)
    except fetch.FetchError as exc:
        _fail(mailbox, str(exc), EXIT_MAILBOX)
    matcher = build_matcher(settings)
    try:
        store = open_store(settings.db, settings.store_timeout)
    except StoreError as exc:
        _fail(mailbox, str(exc), EXIT_STORE)
    store.suppressions.policy = Policy.from_settings(settings)
    # signed return paths and DNS checks as for `import`: a fetched bounce is judged like one the milter receives
    sent = SentReader(settings.db, settings.store_timeout) if settings.signing_log_sent else None
    dns = None
    try:
        dns = make_domain_checker(settings)
        verifier = make_verifier(settings, matcher, sent, dns, dns_wait=settings.dns_lookup_timeout)
    except ConfigError as exc:  # the key file changed since the settings were read
        store.close()
        raise ConfigProblem(str(exc)) from exc
    recorder = fetch.Recorder(store, settings, matcher, verifier)
    try:
        if watch:
            _watch(mailbox, creds, opts, recorder, interval or settings.fetch_interval)
        else:
            _once(mailbox, creds, opts, recorder, fmt, display_name(settings.db))
    finally:
        recorder.close()
        store.close()
        if sent is not None:
            sent.close()
        if dns is not None:
            dns.close()


def _fail(mailbox: fetch.MailboxURL, msg: str, status: int) -> Any:
    click.echo(f"bouncemilter: fetch {mailbox}: {msg}", err=True)
    sys.exit(status)


def _once(
    mailbox: fetch.MailboxURL,
    creds: fetch.Credentials,
    opts: fetch.Options,
    recorder: fetch.Recorder,
    fmt: str,
    db: str,
) -> None:
    progress = FetchProgress()
    t0 = time.monotonic()
    try:
        with _stop_on_signals() as stop:
            stats = fetch.fetch_once(mailbox, creds, opts, recorder, progress, stop)
    except fetch.FetchStoreError as exc:
        progress.close()
        _fail(mailbox, f"{exc}; what was committed before stays, run the same command again to continue", EXIT_STORE)
    except fetch.FetchError as exc:
        progress.close()
        _fail(mailbox, str(exc), EXIT_MAILBOX)
    progress.close()
    seconds = time.monotonic() - t0
    if fmt == "json":
        echo_json({"mailbox": str(mailbox), **stats.as_dict(), "seconds": round(seconds, 3), "db": db})
    else:
        click.echo(_summary_line(stats))


def _watch(
    mailbox: fetch.MailboxURL, creds: fetch.Credentials, opts: fetch.Options, recorder: fetch.Recorder, interval: float
) -> None:
    """JSON log lines on stderr, like the milter's: the command is usually a service (deploy/systemd)."""
    logger = logjson.setup("stderr", "info")

    def on_pass(stats: fetch.Stats) -> None:
        if stats.listed:
            logjson.event(logger, logging.INFO, "fetch", mailbox=str(mailbox), **stats.as_dict())

    def on_error(msg: str, retry_in: float) -> None:
        logjson.event(logger, logging.ERROR, "fetch_error", msg, mailbox=str(mailbox), retry_in_s=retry_in)

    watching = []

    def on_idle() -> None:  # once: tells a supervisor (and the tests) that the first pass is done
        if not watching:
            watching.append(True)
            logjson.event(logger, logging.INFO, "fetch_watching", mailbox=str(mailbox))

    fetch.warn = lambda msg: logjson.event(logger, logging.WARNING, "fetch_warning", msg, mailbox=str(mailbox))
    watcher = fetch.Watcher(
        mailbox, creds, opts, recorder, interval=interval, on_pass=on_pass, on_error=on_error, on_idle=on_idle,
        fail_fast=True,
    )  # fmt: skip
    logjson.event(logger, logging.INFO, "fetch_start", mailbox=str(mailbox), pid=os.getpid())
    try:
        with _stop_on_signals() as stop:
            watcher.run(stop)
    except fetch.FetchError as exc:
        _fail(mailbox, str(exc), EXIT_STORE if isinstance(exc, fetch.FetchStoreError) else EXIT_MAILBOX)
    logjson.event(logger, logging.INFO, "fetch_stop", mailbox=str(mailbox))


def register(group: click.Group) -> None:
    group.add_command(fetch_cmd)
