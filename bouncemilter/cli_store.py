"""Commands that move a whole store: `migrate-store` (SQLite <-> PostgreSQL) and `export --format sqlite`."""

from __future__ import annotations

import sqlite3

import click

from .cli_common import Seconds, config_options, echo_json, load
from .config import check_db
from .store import NoDatabase, Store, StoreError, connect, current_version, display_name, is_url
from .store.transfer import copy_store, export_sqlite


@click.command("migrate-store")
@click.option("--from", "src", metavar="DB", help="The store to copy: a SQLite file or a URL (none: only create --to).")
@click.option("--to", "dst", required=True, metavar="DB", help="The new store: postgresql://... or a SQLite file.")
@click.option(
    "--timeout",
    type=Seconds(0.1, 3600),
    default=30.0,
    show_default=True,
    help="Seconds to wait for a lock or a connection.",
)
def migrate_store_cmd(src: str | None, dst: str, timeout: float) -> None:
    """Copy every row of one store into a new, empty one, e.g. an existing SQLite store into PostgreSQL:

    \b
      bouncemilter migrate-store --from /var/lib/bouncemilter/bounces.db \\
          --to postgresql://bouncemilter@db.example.com/bouncemilter

    One read snapshot of the source, one transaction on the destination (all rows or none); row ids and the
    suppression list are kept as they are. Stop the milters (or point them at the new store) first: bounces
    stored in the source after the snapshot are not copied.

    Without --from: create the schema of --to, or bring it up to date (as PostgreSQL's owner role, before the
    milters connect with a role that may not create tables; see deploy/postgres/)."""
    for flag, value in (("--from", src), ("--to", dst)):
        if value is not None:
            try:
                check_db(value)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint=flag) from None
    if src is None:
        try:
            if not is_url(dst):  # a new SQLite file: created here, as the docstring promises
                Store(dst, timeout).close()
            conn = connect(dst, timeout, write=is_url(dst))  # (Store() migrated a SQLite file already)
            version = current_version(conn)
            conn.close()
        except (OSError, sqlite3.Error, StoreError, NoDatabase) as exc:
            raise click.ClickException(f"{display_name(dst)}: {exc}") from exc
        echo_json({"to": display_name(dst), "schema_version": version})
        return
    try:
        out = copy_store(src, dst, timeout=timeout)
    except (OSError, ValueError, sqlite3.Error, Exception) as exc:
        if isinstance(exc, click.ClickException):
            raise
        raise click.ClickException(f"{display_name(src)} -> {display_name(dst)}: {exc}") from exc
    echo_json(out)


@click.command("export")
@config_options
@click.option("--format", "fmt", type=click.Choice(["sqlite"]), default="sqlite", show_default=True)
@click.option("--force", is_flag=True, help="Replace DEST if it exists.")
@click.argument("dest", type=click.Path(dir_okay=False, readable=False))
def export_cmd(config_path: str | None, db: str | None, fmt: str, force: bool, dest: str) -> None:
    """Write the store (SQLite or PostgreSQL) as one SQLite file DEST: a snapshot for Datasette, sqlite3 and
    sqlite-utils, e.g. `datasette DEST --metadata deploy/datasette/metadata.json`."""
    from .maintenance import check_destination

    settings = load(config_path, db)
    try:
        check_destination(settings.db, dest)
        out = export_sqlite(settings.db, dest, timeout=max(settings.store_timeout, 30.0), force=force)
    except (OSError, ValueError, sqlite3.Error, StoreError, NoDatabase) as exc:
        raise click.ClickException(f"{display_name(settings.db)} -> {dest}: {exc}") from exc
    echo_json(out)


def register(group: click.Group) -> None:
    group.add_command(migrate_store_cmd)
    group.add_command(export_cmd)
