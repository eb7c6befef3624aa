"""A user who may read the store but not write its directory (a monitoring user in the store's group) gets a
clear reason, not SQLite's "attempt to write a readonly database", when nothing has the store open."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from bouncemilter.suppressions import open_store

ROOT = Path(__file__).resolve().parents[1]
PYTHON = "/usr/bin/python3"
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists(PYTHON),
    reason="needs root, setpriv and the system python3 to run a reader as nobody",
)


def test_reader_without_write_access_to_the_directory_is_told_why() -> None:
    # not pytest's tmp_path: its parents are root's alone, and nobody must reach the files
    tmp_path = Path(tempfile.mkdtemp(prefix="bm-reader-", dir="/tmp"))
    try:
        _check(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _check(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    db = folder / "bounces.db"
    open_store(str(db)).close()  # a WAL store; nothing has it open afterwards, so no -shm file
    assert not (folder / "bounces.db-shm").exists()
    code = tmp_path / "code"
    shutil.copytree(ROOT / "bouncemilter", code / "bouncemilter")
    for path in (tmp_path, folder, code, *code.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    db.chmod(0o644)
    script = (
        "import sqlite3\nfrom bouncemilter.store.db import connect\n"
        f"try:\n    connect({str(db)!r}, read_only=True)\nexcept sqlite3.OperationalError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", PYTHON, "-c", script],
        cwd=tmp_path,
        env={"PYTHONPATH": str(code), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "No module named" in out.stderr:
        pytest.skip(f"the system python3 lacks a module the store imports: {out.stderr.strip().splitlines()[-1]}")
    assert "bounces.db-shm" in out.stdout and "may not write" in out.stdout, (out.stdout, out.stderr)
    assert "attempt to write a readonly database" not in out.stdout
    # never the advice to let the reader write the directory: its -shm would lock a later milter out
    assert "bouncemilter backup" in out.stdout and "write access" not in out.stdout, out.stdout
