"""Local doors: what `run` and `import` create is closed to other local users whatever the umask - the unix
socket 0660 (owned by the configured group, else the milter's own), the database and its -wal/-shm 0640."""

from __future__ import annotations

import grp
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .e2e import messages as M

CONFIG = """\
[milter]
socket = "unix:{sock}"
{extra}
[store]
db = "{db}"

[bounce]
addresses = ["bounces@test.example"]
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def run_milter(tmp_path: Path, umask: int, extra: str = "") -> tuple[Path, Path]:
    sock, db = tmp_path / "m.sock", tmp_path / "new.db"
    cfg = tmp_path / "m.toml"
    cfg.write_text(CONFIG.format(sock=sock, db=db, extra=extra))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bouncemilter.cli", "run", "--config", str(cfg)],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        umask=umask,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            with socket.socket(socket.AF_UNIX) as s:
                try:
                    s.connect(str(sock))
                    break
                except OSError:
                    pass
            assert time.monotonic() < deadline, "the milter did not listen"
            time.sleep(0.05)
        modes = {p.name: mode(p) for p in (sock, db, Path(f"{db}-wal"), Path(f"{db}-shm"))}
        groups = {p.name: os.stat(p).st_gid for p in (sock,)}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    return modes, groups  # type: ignore[return-value]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_run_creates_socket_0660_and_database_0640(tmp_path: Path, umask: int) -> None:
    modes, groups = run_milter(tmp_path, umask)
    assert modes == {"m.sock": 0o660, "new.db": 0o640, "new.db-wal": 0o640, "new.db-shm": 0o640}
    assert groups["m.sock"] == os.getegid()


def test_socket_group_and_mode_settings_still_apply(tmp_path: Path) -> None:
    group = grp.getgrgid(os.getegid()).gr_name
    modes, groups = run_milter(tmp_path, 0o022, f'socket_group = "{group}"\nsocket_mode = "0600"\n')
    assert modes["m.sock"] == 0o600 and groups["m.sock"] == os.getegid()


def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "new.db"
    sqlite3.connect(db).close()
    os.chmod(db, 0o600)
    modes, _ = run_milter(tmp_path, 0o022)
    assert modes["new.db"] == 0o600 and modes["new.db-wal"] == 0o600


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_import_creates_the_database_0640(tmp_path: Path, umask: int) -> None:
    mbox = tmp_path / "in.mbox"
    mbox.write_bytes(b"From MAILER-DAEMON Thu Nov 26 10:00:00 2026\n" + M.hard_bounce("doors").replace(b"\r\n", b"\n"))
    db = tmp_path / "imported.db"
    out = subprocess.run(
        [sys.executable, "-m", "bouncemilter.cli", "import", "--db", str(db), str(mbox)],
        capture_output=True,
        text=True,
        umask=umask,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "1 new" in out.stdout
    assert mode(db) == 0o640
