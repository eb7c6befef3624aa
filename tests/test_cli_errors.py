"""Hostile but plausible admin input to every command: a clear one-line error and a non-zero exit, never a
traceback, a hang or a device node replaced (cli_common.Group is the one path errors take)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter.cli import main
from bouncemilter.cli_common import one_line

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "bouncemilter" / "samples" / "hard-bounce.eml"
ENV = {"BOUNCEMILTER_CONFIG": ""}  # never the host's /etc/bouncemilter/bouncemilter.toml


def cli(*args: str, input: str | bytes | None = None):  # type: ignore[no-untyped-def]
    # catch_exceptions=False: a traceback would fail the test rather than hide in result.exception
    return CliRunner().invoke(main, list(args), env=ENV, input=input, catch_exceptions=False)


def run(*args: str, **kw):  # type: ignore[no-untyped-def]
    """The real process, for what CliRunner cannot show: closed descriptors, signals, the last flush."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.run(
        [sys.executable, "-m", "bouncemilter.cli", *args],
        text=True,
        env={**os.environ, **ENV},
        timeout=120,
        **kw,
    )


def assert_clean(res, code: int) -> str:  # type: ignore[no-untyped-def]
    """Exit `code`, no traceback, and the error on one line (click's usage errors add their usage lines)."""
    out = res.output if hasattr(res, "output") else res.stdout + res.stderr
    assert (res.exit_code if hasattr(res, "exit_code") else res.returncode) == code, out
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith(("Error:", "bouncemilter:"))]
    assert errors, out
    return errors[-1]


@pytest.fixture(scope="module")
def good_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("store") / "good.db"
    res = cli("import", "--db", str(db), "--bounce-address", "bounces+*@example.com", str(SAMPLE))
    assert res.exit_code == 0, res.output
    return db


# ------------------------------------------------------------------ a --db that is not a bouncemilter store

BROKEN_STORES = {
    "text": lambda p: p.write_text("hello, not a database\n"),
    "random": lambda p: p.write_bytes(bytes(range(256)) * 32),
    "directory": lambda p: p.mkdir(),
}
READERS = [
    ("history", "alice@example.org"),
    ("suppressed",),
    ("suppressed", "--changes-since", "0"),
    ("stats", "--since", "all"),
    ("prune", "--older-than", "5", "--dry-run"),
    ("suppress", "zed@example.org"),
    ("rebuild-suppressions",),
    ("notify", "--status"),
]


@pytest.mark.parametrize("kind", sorted(BROKEN_STORES))
@pytest.mark.parametrize("args", READERS, ids=lambda a: " ".join(a))
def test_a_db_that_is_not_a_store_is_one_line_naming_it(tmp_path: Path, kind: str, args: tuple[str, ...]) -> None:
    db = tmp_path / "x.db"
    BROKEN_STORES[kind](db)
    line = assert_clean(cli(*args, "--db", str(db)), 1)
    assert str(db) in line


def test_a_truncated_store_is_one_line(tmp_path: Path, good_db: Path) -> None:
    db = tmp_path / "trunc.db"
    db.write_bytes(good_db.read_bytes()[:1000])
    for args in READERS[:3]:
        line = assert_clean(cli(*args, "--db", str(db)), 1)
        assert str(db) in line and "malformed" in line


@pytest.mark.parametrize("db", ["{tmp}/missing/x.db", "{tmp}/new.db", "mysql://127.0.0.1/x"])
def test_export_of_no_store_is_one_line(tmp_path: Path, db: str) -> None:
    db = db.format(tmp=tmp_path)
    line = assert_clean(cli("export", "--db", db, str(tmp_path / "out.db")), 2 if "mysql" in db else 1)
    assert db in line


def test_an_unreachable_postgresql_is_one_line(tmp_path: Path) -> None:
    # port 1 on loopback: refused at once. libpq's message has a hint on a line of its own
    res = run("suppressed", "--db", "postgresql://bm@127.0.0.1:1/bm")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and "127.0.0.1" in res.stderr and "Is the server running" in res.stderr


def test_one_line_joins_lines_and_drops_a_doubled_name() -> None:
    assert one_line("db: db: cannot connect: refused\n\tIs the server running?") == (
        "db: cannot connect: refused Is the server running?"
    )
    assert one_line("a.db -> b.db: a.db: gone") == "a.db -> b.db: a.db: gone"


@pytest.mark.parametrize("db", ["mysql://127.0.0.1/x", "sqlite:///var/x.db", "a\x01b.db"])
def test_a_db_that_is_no_store_url_is_a_config_error(tmp_path: Path, db: str) -> None:
    line = assert_clean(cli("suppressed", "--db", db), 2)
    assert "--db" in line
    cfg = tmp_path / "b.toml"
    cfg.write_text(f"[store]\ndb = {json.dumps(db)}\n")  # a TOML basic string: \\u0001
    assert "store.db" in assert_clean(cli("check-config", "--config", str(cfg)), 2)


# ------------------------------------------------------------------ configuration errors: exit 2 everywhere

BAD_CONFIGS = {
    "missing": None,
    "garbage": "this is [not toml\n",
    "unknown key": "[store]\nbogus = 1\n",
    "wrong type": '[store]\ntimeout = "5"\n',
    "latin-1": b'[store]\ndb = "caf\xe9.db"\n',
}
CONFIG_COMMANDS = [
    ("suppressed",),
    ("stats",),
    ("suppress", "a@example.org"),
    ("history", "a@example.org"),
    ("import", str(SAMPLE)),
    ("import-suppressions", "-"),
    ("backup", "out.db"),
    ("export", "out.db"),
    ("prune", "--older-than", "5"),
    ("notify",),
    ("sign", "a@example.org"),
    ("verify", "bounces@example.com"),
    ("fetch", "imaps://u@127.0.0.1:1/INBOX"),
    ("approve", "--all"),
    ("check-config",),
]


@pytest.mark.parametrize("bad", sorted(BAD_CONFIGS))
@pytest.mark.parametrize("args", CONFIG_COMMANDS, ids=lambda a: a[0])
def test_a_bad_config_exits_2_naming_the_file(tmp_path: Path, bad: str, args: tuple[str, ...]) -> None:
    cfg = tmp_path / "b.toml"
    content = BAD_CONFIGS[bad]
    if isinstance(content, bytes):
        cfg.write_bytes(content)
    elif content is not None:
        cfg.write_text(content)
    line = assert_clean(cli(*args, "--config", str(cfg)), 2)
    assert str(cfg) in line


def test_signing_off_is_a_config_error() -> None:
    assert "secret_file" in assert_clean(cli("sign", "a@example.org"), 2)


def test_a_byte_order_mark_is_not_a_toml_error(tmp_path: Path) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_bytes(b'\xef\xbb\xbf[store]\ndb = "bom.db"\n')  # what Notepad writes
    res = cli("check-config", "--config", str(cfg))
    assert res.exit_code == 0 and 'db = "bom.db"' in res.output, res.output


def test_a_decimal_socket_mode_that_is_not_octal_is_not_offered_as_octal(tmp_path: Path) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text('[milter]\nsocket = "unix:/run/b.sock"\nsocket_mode = 99999\n')
    line = assert_clean(cli("check-config", "--config", str(cfg)), 2)
    assert "0o99999" not in line and "within 0o777" in line


@pytest.mark.parametrize("addr", ["bounces\\u0000@example.com", "bo\\u001bunces@example.com"])
def test_a_control_character_in_a_bounce_address_is_refused(tmp_path: Path, addr: str) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'[bounce]\naddresses = ["{addr}"]\n')
    assert "control character" in assert_clean(cli("check-config", "--config", str(cfg)), 2)


# ------------------------------------------------------------------ numbers, dates and addresses


@pytest.mark.parametrize(
    "args",
    [
        ("stats", "--since", "999999w"),
        ("stats", "--since", "1d", "--until", "99999999d"),
        ("suppressed", "--since", "99999999d"),
        ("suppressed", "--recorded-since", "999999w"),
        ("prune", "--older-than", "99999999"),
        ("approve", "--message", "99999999999999999999999"),
        ("reject", "--message", "0"),
        ("history", ""),
        ("history", "  <> "),
        ("history", "a\udcffb@example.org"),  # a non-UTF-8 argument
        ("migrate-store", "--timeout", "nan", "--to", "x.db"),
        ("migrate-store", "--timeout", "-1", "--to", "x.db"),
        ("migrate-store", "--to", "mysql://127.0.0.1/x"),
        ("doctor", "--timeout", "nan", "--no-send"),
        ("fetch", "--interval", "nan", "imaps://u@127.0.0.1:1/"),
    ],
    ids=lambda a: " ".join(a),
)
def test_out_of_range_input_is_a_usage_error(good_db: Path, args: tuple[str, ...]) -> None:
    extra = () if args[0] in ("migrate-store", "doctor") else ("--db", str(good_db))
    assert_clean(cli(*args, *extra), 2)


@pytest.mark.parametrize("value", ["nan", "inf", "1e999", "0,nan"])
@pytest.mark.parametrize("option", ["--max-hard-rate", "--max-complaints", "--max-blocked"])
def test_check_refuses_a_threshold_that_can_never_breach(good_db: Path, option: str, value: str) -> None:
    res = cli("check", "--db", str(good_db), option, value)
    assert res.exit_code == 3 and "BOUNCEMILTER UNKNOWN" in res.output and "finite" in res.output, res.output


@pytest.mark.parametrize("since", ["999999d", "999999w"])
def test_check_with_a_window_before_year_1_is_unknown(good_db: Path, since: str) -> None:
    res = cli("check", "--db", str(good_db), "--since", since, "--max-blocked", "1")
    assert res.exit_code == 3 and "too far back" in res.output, res.output


# ------------------------------------------------------------------ destinations: backup, export, --png


@pytest.mark.parametrize("command", ["backup", "export"])
def test_a_copy_never_replaces_a_device_or_pipe(tmp_path: Path, good_db: Path, command: str) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # stands for /dev/null: renaming a new file over it would replace the node
    line = assert_clean(cli(command, "--force", "--db", str(good_db), str(fifo)), 1)
    assert "not a regular file" in line
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.parametrize("command", ["backup", "export"])
def test_a_copy_never_replaces_the_store_itself(tmp_path: Path, good_db: Path, command: str) -> None:
    db = tmp_path / "live.db"
    db.write_bytes(good_db.read_bytes())
    inode = os.stat(db).st_ino
    line = assert_clean(cli(command, "--force", "--db", str(db), str(db)), 1)
    assert "the store itself" in line
    assert os.stat(db).st_ino == inode  # a running milter's file is still the store


@pytest.mark.parametrize(
    "args", [("export", "{tmp}/no/dir/x.db"), ("backup", "{tmp}/no/dir/x.db"), ("stats", "--png", "{tmp}/no/x.png")]
)
def test_a_destination_in_a_missing_directory_is_one_line(tmp_path: Path, good_db: Path, args: tuple[str, ...]) -> None:
    args = tuple(a.format(tmp=tmp_path) for a in args)
    assert_clean(cli(*args, "--db", str(good_db)), 1)


def test_a_destination_owned_by_root_is_not_called_unreadable(tmp_path: Path, good_db: Path) -> None:
    # an existing backup the invoking user cannot read: the problem is writing it, not reading it
    dest = tmp_path / "old.db"
    dest.write_text("")
    dest.chmod(0o200)
    res = cli("backup", "--db", str(good_db), str(dest))
    assert "not readable" not in res.output and "--force" in res.output


def test_migrate_store_without_from_creates_a_new_sqlite_store(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    res = cli("migrate-store", "--to", str(db))
    assert res.exit_code == 0 and '"schema_version"' in res.output, res.output
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (0,)


# ------------------------------------------------------------------ standard input and output


@pytest.mark.parametrize(
    "args",
    [("suppress", "-"), ("import", "-"), ("import-suppressions", "-"), ("classify", "-")],
    ids=lambda a: a[0],
)
def test_closed_stdin_is_one_line(tmp_path: Path, good_db: Path, args: tuple[str, ...]) -> None:
    db = ("--db", str(good_db)) if args[0] != "classify" else ()
    res = run(*args, *db, stdin=subprocess.DEVNULL, preexec_fn=lambda: os.close(0))
    assert res.returncode in (1, 2) and "Traceback" not in res.stderr, res.stderr
    assert "standard input is closed" in res.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("fmt", ["table", "csv", "postfix"])
def test_a_full_disk_under_stdout_is_an_error_not_exit_0(good_db: Path, fmt: str) -> None:
    with open("/dev/full", "w") as full:
        res = run("suppressed", "--db", str(good_db), "--format", fmt, stdout=full, stderr=subprocess.PIPE)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert "cannot write to standard output" in res.stderr and res.stderr.count("\n") == 1


def test_a_closed_pipe_is_quiet(good_db: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bouncemilter.cli", "suppressed", "--db", str(good_db), "--format", "jsonl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **ENV},
    )
    proc.stdout.close()  # type: ignore[union-attr]  # `| head -0`
    err = proc.stderr.read().decode()  # type: ignore[union-attr]
    assert proc.wait(timeout=60) != 0 and "Traceback" not in err, err


# ------------------------------------------------------------------ Ctrl-C during an import


def test_ctrl_c_during_import_commits_what_was_read_and_says_so(tmp_path: Path) -> None:
    raw = SAMPLE.read_bytes()
    mbox = tmp_path / "big.mbox"
    with open(mbox, "wb") as fh:
        for i in range(6000):
            fh.write(b"From MAILER-DAEMON Thu Nov 26 10:00:00 2026\n")
            fh.write(raw.replace(b"newsletter-2026-11", b"nl-%d" % i) + b"\n")
    db = tmp_path / "int.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bouncemilter.cli", "import", "--db", str(db), "--batch-size", "50", str(mbox)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **ENV},
    )
    deadline = time.monotonic() + 60
    stored = 0
    while proc.poll() is None and time.monotonic() < deadline and not stored:
        time.sleep(0.05)
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
                    stored = conn.execute("SELECT count(*) FROM messages").fetchone()[0]
            except sqlite3.Error:
                pass
    if proc.poll() is not None:
        pytest.skip("the import finished before it could be interrupted")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "interrupted" in err and "run the same import again" in err
    new = int(out.split()[0])
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == new
    assert 0 < new < 6000


# ------------------------------------------------------------------ sign: a recipient is an address or an error


@pytest.fixture
def signing_config(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    keys.write_text("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I=\n")
    keys.chmod(0o600)
    cfg = tmp_path / "b.toml"
    cfg.write_text(
        f'[bounce]\naddresses = ["bounces+*@example.com"]\n[unsubscribe]\naddresses = ["unsub+*@example.com"]\n'
        f'[signing]\nsecret_file = "{keys}"\n'
    )
    return cfg


@pytest.mark.parametrize("flag", [(), ("--unsubscribe",)], ids=["return-path", "unsubscribe"])
@pytest.mark.parametrize("recipient", ["a@", "@example.org", "a b@example.org", "al\x1bice@example.org", "a@b@c"])
def test_sign_refuses_what_is_not_an_address(signing_config: Path, flag: tuple[str, ...], recipient: str) -> None:
    # it used to print a message token, silently leaving the recipient out
    assert "RECIPIENT" in assert_clean(cli("sign", "--config", str(signing_config), *flag, recipient), 2)


def test_sign_says_when_an_address_only_gets_a_message_token(signing_config: Path) -> None:
    long = "a" * 60 + "@example.org"
    res = CliRunner().invoke(main, ["sign", "--config", str(signing_config), long], env=ENV)
    assert res.exit_code == 0 and "does not fit" in res.stderr
    assert res.stdout.startswith("bounces+") and "example.org" not in res.stdout
    res = CliRunner().invoke(main, ["sign", "--config", str(signing_config), "Alice@Example.org"], env=ENV)
    assert res.exit_code == 0 and res.stderr == "" and res.stdout.startswith("bounces+alice=example.org+")


# ------------------------------------------------------------------ messages an admin can act on


def test_a_binary_file_as_csv_gets_a_short_header_in_the_error(tmp_path: Path, good_db: Path) -> None:
    blob = tmp_path / "x.csv"
    blob.write_bytes(bytes(range(1, 256)) * 40)
    line = assert_clean(cli("import-suppressions", "--db", str(good_db), str(blob)), 1)
    assert len(line) < 400 and "\\\\x" not in line  # escaped once, not twice


def test_check_config_refuses_a_store_that_is_a_directory(tmp_path: Path) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text(f'[store]\ndb = "{tmp_path}"\n')
    assert "is a directory" in assert_clean(cli("check-config", "--config", str(cfg)), 2)
    cfg.write_text(f'[store]\ndb = "{tmp_path}/not/yet/b.db"\n')
    res = CliRunner().invoke(main, ["check-config", "--config", str(cfg)], env=ENV)
    assert res.exit_code == 0 and "does not exist (yet)" in res.stderr


# ------------------------------------- run: why it cannot listen (libmilter says "cannot opensocket")


def test_run_on_a_port_in_use_says_so(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = run("run", "--socket", f"inet:{port}@127.0.0.1", "--db", str(tmp_path / "r.db"))
    assert res.returncode == 1 and '"start_failed"' in res.stderr and "in use" in res.stderr, res.stderr


@pytest.mark.parametrize(
    "spec, why",
    [("unix:/tmp/" + "d" * 120 + "/m.sock", "at most 107 bytes"), ("inet:9025@999.1.1.1", "not an IPv4 address")],
)
def test_run_refuses_a_socket_no_kernel_would_take(tmp_path: Path, spec: str, why: str) -> None:
    res = run("run", "--socket", spec, "--db", str(tmp_path / "r.db"))
    assert res.returncode == 2 and '"config_error"' in res.stderr and why in res.stderr, res.stderr


def test_check_config_warns_about_a_relative_store_and_expands_a_tilde(tmp_path: Path) -> None:
    cfg = tmp_path / "b.toml"
    cfg.write_text('[store]\ndb = "bounces.db"\n')
    res = CliRunner().invoke(main, ["check-config", "--config", str(cfg)], env=ENV)
    assert res.exit_code == 0 and "is relative" in res.stderr
    cfg.write_text('[store]\ndb = "~/bounces.db"\n')
    res = CliRunner().invoke(main, ["check-config", "--config", str(cfg)], env={**ENV, "HOME": str(tmp_path)})
    assert res.exit_code == 0 and f'db = "{tmp_path}/bounces.db"' in res.stdout and res.stderr == ""


def test_a_huge_columns_does_not_draw_a_huge_bar(good_db: Path) -> None:
    res = CliRunner().invoke(
        main, ["stats", "--db", str(good_db), "--since", "all", "--format", "chart"], env={**ENV, "COLUMNS": "99999999"}
    )
    assert res.exit_code == 0 and "█" in res.output
    assert max(len(line) for line in res.output.splitlines()) <= 400


def test_ctrl_c_in_any_command_exits_130_with_a_line(tmp_path: Path, good_db: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from bouncemilter import suppress_import

    def interrupted(*_a, **_k):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(suppress_import, "parse", interrupted)
    csv = tmp_path / "s.csv"
    csv.write_text("email\nzed@example.org\n")
    res = cli("import-suppressions", "--db", str(good_db), str(csv))
    assert res.exit_code == 130 and "interrupted" in res.output and "Aborted" not in res.output, res.output
