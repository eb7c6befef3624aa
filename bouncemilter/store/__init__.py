"""The bounce store: one interface, two backends.

`Store(db)` opens SQLite when `db` is a file path (the embedded default, `core`) and PostgreSQL when it is a
libpq URL ``postgresql://...`` (`postgres`, for a fleet of MX hosts sharing one database). Both have the same
schema, migrations with a version table (`core.MIGRATIONS` and `core.PG_MIGRATIONS`, side by side) and the same
idempotency key. The suppression policy is passed in (`policy_hook`; `suppressions.open_store` does it), so the
store does not import the policy that uses it. `connect()` opens a connection for readers and the CLI, on either.
"""

from . import sql
from .core import *  # noqa: F403
from .core import (
    FIELD_CAP,
    INSERT_MESSAGE,
    MIGRATIONS,
    PG_MIGRATIONS,
    MessageMeta,
    Store,
    StoreError,
    _recipient_rows,
    current_version,
    dedup_key,
    dialect,
    fmt_time,
    has_column,
    has_table,
    is_url,
    last_feed_id,
    legacy_dedup_key,
    migrate,
    row_address,
    utc_now,
    verp_addresses,
)
from .db import NoDatabase, connect, display_name

__all__ = [
    "FIELD_CAP",
    "INSERT_MESSAGE",
    "MIGRATIONS",
    "PG_MIGRATIONS",
    "MessageMeta",
    "NoDatabase",
    "Store",
    "StoreError",
    "_recipient_rows",
    "connect",
    "current_version",
    "dedup_key",
    "dialect",
    "display_name",
    "fmt_time",
    "has_column",
    "has_table",
    "is_url",
    "last_feed_id",
    "legacy_dedup_key",
    "migrate",
    "row_address",
    "sql",
    "utc_now",
    "verp_addresses",
]
