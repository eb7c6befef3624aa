"""Traps a Postfix admin can walk into with a plausible command line: another program's database as --db, a FIFO
or a device as --config or as a message, a port in use. Each gets a clear error or a safe default, never a hang,
a crash or a change to a file that is not ours."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter.cli import main
from bouncemilter.store import MIGRATIONS, migrate

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "bouncemilter" / "samples" / "hard-bounce.eml"
ENV = {"BOUNCEMILTER_CONFIG": ""}  # never the host's /etc/bouncemilter/bouncemilter.toml


def cli(*args: str, input: str | bytes | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), env=ENV, input=input, catch_exceptions=False)


def process(*args: str, timeout: float = 60, **kw):  # type: ignore[no-untyped-def]
    """The real process: what CliRunner cannot show (a blocking open, libmilter, the exit status of `run`)."""
    return subprocess.run(
        [sys.executable, "-m", "bouncemilter.cli", *args],
        text=True,
        capture_output=True,
        env={**os.environ, **ENV},
        timeout=timeout,
        **kw,
    )


# ------------------------------------------------------------------ 1. --db naming another program's database


def _foreign(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('root')")
    conn.commit()
    conn.close()
    return path


def _state(path: Path) -> tuple[list[str], str, bytes]:
    conn = sqlite3.connect(path)
    try:
        names = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master"))
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    return names, mode, path.read_bytes()


WRITERS = [
    ("import", "--bounce-address", "bounces@example.com", str(SAMPLE)),
    ("suppress", "alice@example.org"),
    ("unsuppress", "alice@example.org"),
    ("rebuild-suppressions",),
    ("import-suppressions", "{csv}"),
    ("migrate-store", "--to", "{db}"),
    ("migrate-store", "--from", "{db}", "--to", "{new}"),
    ("export", "{new}"),  # a reader, but it copies through the same path as migrate-store --from
]


@pytest.mark.parametrize("args", WRITERS, ids=lambda a: a[0])
def test_a_write_command_refuses_another_programs_database(tmp_path: Path, args: tuple[str, ...]) -> None:
    db = _foreign(tmp_path / "app.db")
    before = _state(db)
    csv = tmp_path / "list.csv"
    csv.write_text("email\nalice@example.org\n")
    argv = [a.format(db=db, csv=csv, new=tmp_path / "new.db") for a in args]
    if argv[0] != "migrate-store":
        argv += ["--db", str(db)]
    res = cli(*argv)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    line = [x for x in res.output.splitlines() if x.startswith("Error:")][-1]
    assert f"{db}: not a bouncemilter store" in line and "users" in line, line
    assert _state(db) == before  # no table, no WAL mode, not a byte changed
    assert not (tmp_path / "app.db-wal").exists()
    assert not (tmp_path / "new.db").exists()  # migrate-store --from, export: refused before the destination is made


def test_run_refuses_another_programs_database(tmp_path: Path) -> None:
    db = _foreign(tmp_path / "app.db")
    before = _state(db)
    res = process("run", "--db", str(db), "--socket", f"unix:{tmp_path}/m.sock")
    assert res.returncode == 2, res.stderr
    assert '"start_failed"' in res.stderr and "not a bouncemilter store" in res.stderr, res.stderr
    assert _state(db) == before


@pytest.mark.parametrize("kind", ["missing", "empty", "version 1", "version 8"])
def test_new_files_and_older_stores_are_still_opened(tmp_path: Path, kind: str) -> None:
    db = tmp_path / "b.db"
    if kind == "empty":
        db.touch()  # e.g. made by install -m 0640 before the first run
    elif kind.startswith("version"):
        conn = sqlite3.connect(db, isolation_level=None)
        migrate(conn, MIGRATIONS[: int(kind.split()[1])])
        conn.close()
    res = cli("import", "--db", str(db), "--bounce-address", "bounces@example.com", str(SAMPLE))
    assert res.exit_code == 0, res.output
    res = cli("suppress", "--db", str(db), "zed@example.org")
    assert res.exit_code == 0, res.output
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == MIGRATIONS[-1][0]
    conn.close()


# ------------------------------------------------------------------ 4. a port in use, whoever starts the milter


def test_serve_on_a_port_in_use_says_so_before_opening_the_store(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import socket

    from bouncemilter.config import load_settings
    from bouncemilter.milter import serve

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = load_settings(None, {"socket": f"inet:{port}@127.0.0.1", "db": str(tmp_path / "r.db")})
        assert serve(settings, exit_process=False) == 1
    err = capsys.readouterr().err
    assert '"start_failed"' in err and f"cannot listen on inet:{port}@127.0.0.1: the address is in use" in err, err
    assert not (tmp_path / "r.db").exists()  # refused before the store was created


# ------------------------------------------------------------------ 2. --config naming what is not a file


def _not_a_config(tmp_path: Path, kind: str) -> str:
    import socket

    path = tmp_path / "b.toml"
    if kind == "fifo":
        os.mkfifo(path)  # no writer: open() alone would block forever
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    elif kind == "directory":
        path.mkdir()
    elif kind == "device":
        return "/dev/zero"  # endless
    elif kind == "huge":
        path.write_text("# " + "x" * (1 << 20) + "\n")  # valid TOML (a comment), but no configuration is 1 MiB
    return str(path)


@pytest.mark.parametrize("kind", ["fifo", "socket", "directory", "device", "huge"])
@pytest.mark.parametrize("command", ["check-config", "run", "stats"])
def test_a_config_that_is_not_a_regular_file_is_an_error_not_a_hang(tmp_path: Path, kind: str, command: str) -> None:
    path = _not_a_config(tmp_path, kind)
    db = () if command == "check-config" else ("--db", str(tmp_path / "s.db"))
    res = process(command, "--config", path, *db, timeout=30)
    assert res.returncode == 2, res.stderr
    why = "larger than 1 MiB" if kind == "huge" else "not a regular file"
    if command == "stats" and kind == "directory":
        why = "is a directory"  # click's own check of --config (dir_okay=False) comes first
    assert f"{path}" in res.stderr and why in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "s.db").exists()


def test_dev_null_as_config_is_still_no_configuration() -> None:
    res = cli("check-config", "--config", os.devnull)
    assert res.exit_code == 0 and 'socket = "inet:9025@127.0.0.1"' in res.output, res.output


def test_a_signing_key_file_that_is_a_fifo_is_an_error_not_a_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "keys", 0o600)
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'[signing]\nsecret_file = "{tmp_path}/keys"\n')
    res = process("check-config", "--config", str(cfg), timeout=30)
    assert res.returncode == 2 and "signing.secret_file" in res.stderr and "named pipe" in res.stderr, res.stderr


# ------------------------------------------------------------------ 3. a message path or stdin that never ends


@pytest.mark.parametrize(
    "command", [("classify",), ("import", "--db", "{tmp}/s.db"), ("import-suppressions", "--db", "{tmp}/s.db")]
)
@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_message_path_that_is_not_a_file_is_reported_not_read_forever(
    tmp_path: Path, command: tuple[str, ...], kind: str
) -> None:
    path = "/dev/zero" if kind == "device" else str(tmp_path / "in")
    if kind == "fifo":
        os.mkfifo(path)
    argv = [a.format(tmp=tmp_path) for a in command]
    res = process(*argv, path, timeout=30)
    assert res.returncode == 1, res.stderr
    what = "character device" if kind == "device" else "named pipe (FIFO)"
    assert f"{path}" in res.stderr and f"{what}, not a regular file" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    "command", [("classify",), ("import", "--db", "{tmp}/s.db"), ("import-suppressions", "--db", "{tmp}/s.db")]
)
def test_endless_standard_input_stops_at_the_cap(tmp_path: Path, command: tuple[str, ...]) -> None:
    from bouncemilter.sources import STDIN_MAX

    producer = subprocess.Popen(["cat", "/dev/zero"], stdout=subprocess.PIPE)  # a pipe that never ends
    try:
        res = process(*[a.format(tmp=tmp_path) for a in command], "-", stdin=producer.stdout, timeout=60)
    finally:
        producer.kill()
        producer.wait()
        assert producer.stdout is not None
        producer.stdout.close()
    assert res.returncode == 1, res.stderr
    assert f"more than {STDIN_MAX >> 20} MiB on standard input" in res.stderr and "Traceback" not in res.stderr


def test_a_message_on_a_pipe_under_the_cap_is_classified() -> None:
    res = process("classify", "--format", "jsonl", "-", input=SAMPLE.read_text())
    assert res.returncode == 0, res.stderr
    assert '"kind": "bounce"' in res.stdout


def test_suppress_from_endless_standard_input_stops_and_saves_nothing(tmp_path: Path) -> None:
    from bouncemilter.sources import STDIN_MAX

    db = tmp_path / "s.db"
    assert cli("import", "--db", str(db), str(SAMPLE)).exit_code == 0
    producer = subprocess.Popen(["cat", "/dev/zero"], stdout=subprocess.PIPE)  # one endless line
    try:
        res = process("suppress", "--db", str(db), "-", stdin=producer.stdout, timeout=60)
    finally:
        producer.kill()
        producer.wait()
        assert producer.stdout is not None
        producer.stdout.close()
    assert res.returncode == 1 and f"more than {STDIN_MAX >> 20} MiB on standard input" in res.stderr, res.stderr
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM suppressions WHERE source = 'manual'").fetchone()[0] == 0
    conn.close()
