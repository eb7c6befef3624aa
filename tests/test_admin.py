"""Admin commands: check-config, the default config path, prune, backup."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter import config
from bouncemilter.cli import main
from bouncemilter.config import Settings, load_settings
from bouncemilter.store import fmt_time
from bouncemilter.suppressions import open_store
from tests.conftest import db_connect

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict[str, str] | None = None, input: str | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)


def test_check_config_prints_the_effective_settings_which_load_back(tmp_path: Path) -> None:
    path = tmp_path / "b.toml"
    path.write_text(
        '[milter]\nsocket = "unix:/run/b/m.sock"\nsocket_mode = "0660"\n[bounce]\n'
        'addresses = ["bounces+*@example.com"]\n[actions]\nauto_reply = "discard"\n'
        '[fetch]\nurl = "imaps://bounces@imap.example.com/INBOX"\n[fetch.after]\nhard = "delete"\n'
    )
    res = cli("check-config", "--config", str(path))
    assert res.exit_code == 0, res.output
    assert f"# {path}: valid" in res.output
    assert 'addresses = ["bounces+*@example.com"]' in res.output and "socket_mode = 0o660" in res.output
    rendered = tmp_path / "rendered.toml"
    rendered.write_text(res.output)
    assert load_settings(str(rendered)) == load_settings(str(path))
    assert load_settings(str(REPO / "conf/bouncemilter.toml")) == Settings()


def test_check_config_names_the_error_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "b.toml"
    path.write_text("[milter]\nsocket_mode = 660\n")
    res = CliRunner().invoke(main, ["check-config", "--config", str(path)])
    assert res.exit_code == 2
    assert f"{path}: milter.socket_mode" in res.output


def test_default_config_path_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    etc = tmp_path / "etc.toml"
    etc.write_text(f'[store]\ndb = "{tmp_path / "etc.db"}"\n')
    env_file = tmp_path / "env.toml"
    env_file.write_text(f'[store]\ndb = "{tmp_path / "env.db"}"\n')
    monkeypatch.setattr(config, "DEFAULT_PATH", str(etc))
    monkeypatch.delenv("BOUNCEMILTER_CONFIG")
    assert config.config_path(None) == str(etc)  # a configured host needs no --config
    assert f"# {etc}: valid" in cli("check-config").output
    assert f"# {env_file}: valid" in cli("check-config", env={"BOUNCEMILTER_CONFIG": str(env_file)}).output
    assert "embedded defaults" in cli("check-config", env={"BOUNCEMILTER_CONFIG": ""}).output
    assert config.config_path("given.toml") == "given.toml"
    # a data command reads the same file: its database is the one named there
    res = CliRunner().invoke(main, ["suppressed"])
    assert res.exit_code != 0 and str(tmp_path / "etc.db") in res.output
    monkeypatch.setattr(config, "DEFAULT_PATH", str(tmp_path / "absent.toml"))
    assert config.config_path(None) is None


# ------------------------------------------------------------------------------------------------ prune


@pytest.fixture(params=["sqlite", "postgres"])
def history_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    from tests.test_suppress_cli import build_db

    if request.param == "postgres":
        return str(build_db(request.getfixturevalue("pg_url")))
    return str(build_db(tmp_path / "bounces.db"))


def _count(db: str, sql: str) -> int:
    from tests.conftest import query_rows

    return int(query_rows(db, sql)[0][0])


def test_prune_deletes_old_rows_but_keeps_the_evidence_of_suppressions(history_db: str) -> None:
    import json

    db = history_db
    old = _count(
        db, f"SELECT COUNT(*) FROM messages WHERE received_at < '{fmt_time(datetime.now(UTC) - timedelta(days=4))}'"
    )
    total = _count(db, "SELECT COUNT(*) FROM messages")
    before = {r["address"] for r in json.loads(cli("suppressed", "--db", db, "--format", "json").output)}
    dry = json.loads(cli("prune", "--db", db, "--older-than", "4", "--dry-run", "--format", "json").output)
    assert _count(db, "SELECT COUNT(*) FROM messages") == total  # a dry run changes nothing
    assert dry["messages"] + dry["kept_as_evidence"] == old and dry["kept_as_evidence"] >= 3
    res = cli("prune", "--db", db, "--older-than", "4")
    assert res.exit_code == 0 and res.output.startswith(f"deleted {dry['messages']} message(s)")
    assert _count(db, "SELECT COUNT(*) FROM messages") == total - dry["messages"]
    assert _count(db, "SELECT COUNT(*) FROM recipients WHERE message_id NOT IN (SELECT id FROM messages)") == 0
    # the list is intact, and a rebuild from what is left gives the same list (its evidence was kept)
    rebuilt = json.loads(cli("rebuild-suppressions", "--db", db, "--format", "json").output)
    assert rebuilt["removed"] == 0
    after = {r["address"] for r in json.loads(cli("suppressed", "--db", db, "--format", "json").output)}
    assert after == before and after
    # asked to: suppressions last changed before the cutoff go too, and then their evidence
    conn = db_connect(db)
    conn.execute("UPDATE suppressions SET updated_at = '2020-01-01T00:00:00.000Z' WHERE address = 'dead@example.org'")
    conn.commit()
    conn.close()
    gone = json.loads(cli("prune", "--db", db, "--older-than", "4", "--with-suppressions", "--format", "json").output)
    assert gone["suppressions"] == 1 and gone["messages"] == 1
    assert _count(db, "SELECT COUNT(*) FROM recipients WHERE address = 'dead@example.org'") == 0
    left = {r["address"] for r in json.loads(cli("suppressed", "--db", db, "--format", "json").output)}
    assert left == before - {"dead@example.org"}


def test_prune_needs_a_period(history_db: str, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["prune", "--db", history_db])
    assert res.exit_code == 2 and "retention_days" in res.output
    conf = tmp_path / "r.toml"
    conf.write_text(f'[store]\ndb = "{history_db}"\nretention_days = 4\n')
    res = cli("prune", "--config", str(conf), "--dry-run")
    assert res.exit_code == 0 and "(4 days)" in res.output


def test_the_milter_prunes_by_retention_days(history_db: str) -> None:
    import logging
    import threading
    from types import SimpleNamespace

    from bouncemilter.milter import retention_loop

    records: list[logging.LogRecord] = []
    logger = logging.getLogger("bouncemilter.test.retention")
    logger.addHandler(type("H", (logging.Handler,), {"emit": lambda self, r: records.append(r)})())
    logger.setLevel(logging.INFO)
    settings = load_settings(None, {"db": history_db})
    from dataclasses import replace

    rt = SimpleNamespace(settings=replace(settings, retention_days=4), store=open_store(history_db), logger=logger)
    stop = threading.Event()
    worker = threading.Thread(target=retention_loop, args=(rt, stop, 0.0))
    worker.start()
    deadline = time.monotonic() + 10
    while not records and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    worker.join(5)
    rt.store.close()
    (rec,) = records
    assert rec.event == "prune" and rec.fields["messages"] > 0  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------------ backup

WRITER = """
import sys, time
from bouncemilter.classify import classify
from bouncemilter.suppressions import open_store
from tests.conftest import make_meta
from tests.e2e import messages as M
store = open_store(sys.argv[1], 5.0)
n = 0
while True:  # what the milter does per bounce: one durable transaction, suppression hook included
    store.record(make_meta(100000 + n), classify(M.hard_bounce(f"w{n}", f"user{n}@example.org")), "accept")
    n += 1
"""


def test_backup_is_a_consistent_copy_while_the_store_is_written(history_db: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    writer = subprocess.Popen([sys.executable, "-c", WRITER, history_db], cwd=REPO)
    try:
        start = _count(history_db, "SELECT COUNT(*) FROM messages")
        while _count(history_db, "SELECT COUNT(*) FROM messages") < start + 20:
            assert writer.poll() is None
            time.sleep(0.05)
        sizes = []
        for n in range(4):
            dest = tmp_path / f"copy{n}.db"
            res = cli("backup", "--db", history_db, str(dest))
            assert res.exit_code == 0, res.output
            assert not Path(f"{dest}-wal").exists() and (dest.stat().st_mode & 0o777) == 0o640
            conn = sqlite3.connect(dest)
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            messages = conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
            # one instant: every message has its recipients, every recipient its message, every hard bounce
            # its suppression, or its pending suppression past the per-client cap (they commit together)
            assert (
                conn.execute(
                    "SELECT COUNT(*) FROM messages WHERE recipient_count != "
                    "(SELECT COUNT(*) FROM recipients r WHERE r.message_id = messages.id)"
                ).fetchone()[0]
                == 0
            )
            assert (
                conn.execute(
                    "SELECT COUNT(*) FROM recipients WHERE hard = 1 AND address NOT IN "
                    "(SELECT address FROM suppressions UNION SELECT address FROM pending_suppressions)"
                ).fetchone()[0]
                == 0
            )
            conn.close()
            assert f"{dest}: {messages} messages" in res.output
            sizes.append(messages)
            time.sleep(0.2)
        assert sizes == sorted(sizes) and sizes[-1] > sizes[0]  # the writer kept writing
    finally:
        writer.kill()
        writer.wait()
    res = CliRunner().invoke(main, ["backup", "--db", history_db, str(tmp_path / "copy0.db")])
    assert res.exit_code == 1 and "--force" in res.output
