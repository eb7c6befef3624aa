"""Commands for running a host: check-config, doctor, prune, backup."""

from __future__ import annotations

import os
import sqlite3
import sys

import click

from .cli_common import Seconds, config_options, echo_json, load, resolve_config
from .config import ConfigError, Settings, load_settings, render
from .store import display_name

MAX_DAYS = 36500  # as [store] retention_days: a hundred years; more would reach before year 1


@click.command("check-config")
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    callback=resolve_config,
    help="The file to check (default: $BOUNCEMILTER_CONFIG, else /etc/bouncemilter/bouncemilter.toml).",
)
def check_config_cmd(config_path: str | None) -> None:
    """Validate the configuration and print the effective settings (exit 0 valid, 2 invalid).

    \b
    Examples:
      bouncemilter check-config
      bouncemilter check-config --config /etc/bouncemilter/bouncemilter.toml.new && systemctl reload bouncemilter
    """
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        click.echo(f"bouncemilter: {exc}", err=True)
        sys.exit(2)
    _check_store_path(settings.db)
    click.echo(f"# {config_path or 'no file: embedded defaults'}: valid. Effective settings:\n")
    click.echo(render(settings), nl=False)


def _check_store_path(db: str) -> None:
    """What the file's syntax cannot show: store.db naming a directory is an error (the milter would not start);
    a relative path or a missing parent directory is a warning (check-config may run before deploy/setup.sh
    creates the directory; the embedded default is relative)."""
    from .store import is_url

    if is_url(db):
        return
    if os.path.isdir(db):
        click.echo(f"bouncemilter: store.db: {db}: is a directory; name the database file in it", err=True)
        sys.exit(2)
    if not os.path.isabs(db) and db != Settings().db:  # the embedded default is relative on purpose (README)
        click.echo(
            f"bouncemilter: warning: store.db: {db} is relative: each command opens it in its own working "
            f"directory (here {os.path.abspath(db)}); give an absolute path",
            err=True,
        )
    parent = os.path.dirname(os.path.abspath(db))
    if not os.path.isdir(parent):
        click.echo(f"bouncemilter: warning: store.db: {db}: the directory {parent} does not exist (yet)", err=True)


@click.command("prune")
@config_options
@click.option(
    "--older-than",
    "days",
    type=click.IntRange(1, MAX_DAYS),
    metavar="DAYS",
    help="Default: [store] retention_days.",
)
@click.option(
    "--with-suppressions",
    is_flag=True,
    help="Also forget suppressions last changed before then (those addresses may be mailed again).",
)
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def prune_cmd(
    config_path: str | None, db: str | None, days: int | None, with_suppressions: bool, dry_run: bool, fmt: str
) -> None:
    """Delete messages and recipients older than DAYS (personal data), in small transactions beside a running
    milter. The suppression list stays, with the rows that are its evidence, unless --with-suppressions.

    \b
    Examples:
      bouncemilter prune --older-than 400 --dry-run
      bouncemilter prune                      # [store] retention_days of the config file
    """
    from .maintenance import prune

    settings = load(config_path, db)
    days = days or settings.retention_days
    if not days:
        raise click.UsageError("give --older-than DAYS or set [store] retention_days")
    try:
        out = prune(
            settings.db, days, with_suppressions=with_suppressions, dry_run=dry_run, timeout=settings.store_timeout
        )
    except (OSError, sqlite3.Error) as exc:
        raise click.ClickException(f"{display_name(settings.db)}: {exc}") from exc
    if fmt == "json":
        echo_json({"dry_run": dry_run, "older_than_days": days, **out})
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"{verb} {out['messages']} message(s) and {out['recipients']} recipient row(s) received before "
        f"{out['cutoff'][:19]} ({days} days); kept {out['kept_as_evidence']} as evidence of current suppressions"
        + (f"; {verb} {out['suppressions']} suppression(s)" if with_suppressions else "")
    )


@click.command("backup")
@config_options
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@click.argument("dest", metavar="FILE", type=click.Path(dir_okay=False, readable=False))
def backup_cmd(config_path: str | None, db: str | None, dest: str, force: bool) -> None:
    """Write a consistent copy of the store to FILE while the milter runs (cp of a WAL database is not one).

    \b
    Example:
      bouncemilter backup /var/backups/bouncemilter-$(date +%F).db
    """
    from .maintenance import backup

    settings = load(config_path, db)
    try:
        out = backup(settings.db, dest, timeout=settings.store_timeout, force=force)
    except (OSError, ValueError, sqlite3.Error) as exc:
        raise click.ClickException(f"{display_name(settings.db)} -> {dest}: {exc}") from exc
    click.echo(
        f"{dest}: {out['messages']} messages, {out['recipients']} recipients, {out['suppressions']} suppressions "
        f"({out['bytes']:,} bytes, {out['seconds']:.2f} s)"
    )


@click.command("doctor")
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    callback=resolve_config,
    help="The milter's configuration (default: $BOUNCEMILTER_CONFIG, else /etc/bouncemilter/bouncemilter.toml).",
)
@click.option("--postfix-config", metavar="DIR", help="Postfix's config directory (default: postconf's own).")
@click.option(
    "--smtp", metavar="HOST:PORT", default="127.0.0.1:25", show_default=True, help="Postfix's smtpd, for the test."
)
@click.option("--no-send", is_flag=True, help="Skip the test report through Postfix.")
@click.option(
    "--service-user", metavar="USER", help="The user the milter runs as (default: bouncemilter if it exists)."
)
@click.option(
    "--timeout",
    type=Seconds(1, 600),
    default=30.0,
    show_default=True,
    help="Seconds for Postfix's SMTP reply, and for the test report to reach the store.",
)
def doctor_cmd(
    config_path: str | None,
    postfix_config: str | None,
    smtp: str,
    no_send: bool,
    service_user: str | None,
    timeout: float,
) -> None:
    """Check the wiring between the live Postfix and the milter: one PASS/FAIL line per check, with the fix.
    Exit 0 when everything passes, 1 when a check fails, 2 for an invalid configuration.

    \b
    Checks: the milter listens; smtpd_milters and non_smtpd_milters (with internal_mail_filter_classes =
    bounce) name its socket; recipient_delimiter matches verp_separator; Postfix's user can connect to the
    socket; the service user can write the database; a test report sent through Postfix to a bounce address
    is recorded (a "delivered" report: it suppresses nobody).

    \b
    Examples:
      bouncemilter doctor
      bouncemilter doctor --smtp 127.0.0.1:2525 --postfix-config /etc/postfix-out
    """
    import pwd

    from .doctor import Postconf, run_checks

    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        click.echo(f"FAIL  configuration: {exc}")
        sys.exit(2)
    click.echo(f"bouncemilter doctor: {config_path or 'embedded defaults'}")
    host, _, port = smtp.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise click.BadParameter(f"{smtp!r}: give HOST:PORT", param_hint="--smtp")
    if service_user is None:
        try:
            service_user = pwd.getpwnam("bouncemilter").pw_name
        except KeyError:
            service_user = pwd.getpwuid(os.geteuid()).pw_name
    checks = run_checks(
        settings,
        postconf=Postconf(postfix_config),
        smtp=None if no_send else (host.strip("[]"), int(port)),
        service_user=service_user,
        timeout=timeout,
    )
    for check in checks:
        for line in check.lines():
            click.echo(line)
    failed = [c for c in checks if not c.ok]
    click.echo(f"{len(checks) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


def register(group: click.Group) -> None:
    for cmd in (check_config_cmd, doctor_cmd, prune_cmd, backup_cmd):
        group.add_command(cmd)
