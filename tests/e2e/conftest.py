"""Session fixtures: one private Postfix on 127.0.0.1 with bouncemilter in smtpd_milters and non_smtpd_milters.

The milter runs as a separate `bouncemilter run` process on a unix socket, as root but without
CAP_DAC_OVERRIDE (via setpriv) so that file permissions apply to it like to the unprivileged user
it runs as in production: that is what makes the "read-only store" fault test meaningful.
Set BOUNCEMILTER_E2E_KEEP=1 to keep the rig directory for inspection.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import smtplib
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ..conftest import query_rows
from .postfix_rig import Rig, postfix_available

REPO = Path(__file__).resolve().parents[2]
BOUNCES = "bounces@test.example"
USER = "user@test.example"

CONFIG = """\
[milter]
{socket}
body_cap = 1048576

[store]
db = "{db}"
timeout = 1.0

[bounce]
addresses = ["bounces+*@test.example"]

[actions]
auto_reply = "{auto_reply}"

[headers]
add = true

[log]
level = "debug"
"""


class MilterProc:
    """`bouncemilter run` in a child process; its JSON log goes to a file."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.sock = base / "milter" / "milter.sock"
        self.db = base / "db" / "bounces.db"
        self.log = base / "milter.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.drop_dac = shutil.which("setpriv") is not None

    def write_config(self, auto_reply: str) -> Path:
        path = self.base / f"bouncemilter-{auto_reply}.toml"
        path.write_text(CONFIG.format(socket=self.socket_setting(), db=self.db, auto_reply=auto_reply))
        return path

    def socket_setting(self) -> str:
        return f'socket = "unix:{self.sock}"\nsocket_mode = "0666"'

    def start(self, auto_reply: str = "discard") -> None:
        cmd = [sys.executable, "-m", "bouncemilter.cli", "run", "--config", str(self.write_config(auto_reply))]
        if self.drop_dac:
            caps = "-dac_override,-dac_read_search"
            cmd = ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", *cmd]
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                cmd, cwd=self.base, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bouncemilter exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            if self.listening():
                return
            time.sleep(0.05)
        raise RuntimeError(f"bouncemilter did not listen on {self.sock}: {self.log.read_text()[-2000:]}")

    def listening(self) -> bool:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.sock))
            return True
        return False

    def stop(self) -> float:
        if self.proc is None:
            return 0.0
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None
        return time.monotonic() - t0

    def events(self, name: str | None = None) -> list[dict]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if name is None or rec.get("event") == name:
                    out.append(rec)
        return out

    def wait_events(self, name: str, match: Callable[[dict], bool], timeout: float = 10) -> list[dict]:
        """The `name` events that `match`, once there is one: the milter commits a row before it writes the
        message's log line, so a test that waited for the row may read the log a moment too early."""
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events(name) if match(e)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


class E2E:
    def __init__(self, base: Path, rig: Rig, milter: MilterProc) -> None:
        self.base = base
        self.rig = rig
        self.milter = milter

    # -- sending

    def send(self, sender: str, recipients: list[str], raw: bytes) -> tuple[int, str, str]:
        """One SMTP transaction; returns (final code, reply text, queue id or "")."""
        with smtplib.SMTP("127.0.0.1", self.rig.smtp_port, local_hostname="client.example", timeout=120) as smtp:
            smtp.ehlo()  # smtplib's mail() does not say EHLO by itself
            code, msg = smtp.mail(sender, [f"SIZE={len(raw)}"] if smtp.has_extn("size") else [])
            if code != 250:
                return code, msg.decode(errors="replace"), ""
            for rcpt in recipients:
                code, msg = smtp.rcpt(rcpt)
                if code not in (250, 251):
                    return code, msg.decode(errors="replace"), ""
            code, msg = smtp.data(raw)
        text = msg.decode(errors="replace")
        qid = text.rsplit("queued as ", 1)[1].strip() if "queued as " in text else ""
        return code, text, qid

    # -- maildirs

    def find_file(self, box: str, token: str) -> Path | None:
        new = self.rig.maildir(box) / "new"
        needle = token.encode()
        for path in sorted(new.glob("*")) if new.is_dir() else []:
            with open(path, "rb") as fh:
                if needle in fh.read(256 * 1024):
                    return path
        return None

    def wait_file(self, box: str, token: str, timeout: float = 30) -> Path:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.find_file(box, token)
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"no message with {token} in {box}/new; maillog:\n{self.rig.log.read_text()[-3000:]}")

    # -- database

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        return query_rows(self.milter.db, sql, params)

    def message_rows(self, token: str) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM messages WHERE message_id LIKE ?", (f"%{token}%",))

    def wait_message_row(self, token: str, timeout: float = 20, column: str = "message_id") -> sqlite3.Row:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.query(f"SELECT * FROM messages WHERE {column} LIKE ?", (f"%{token}%",))
            if rows:
                return rows[0]
            time.sleep(0.1)
        raise AssertionError(f"no messages row for {token}; milter log:\n{self.milter.log.read_text()[-3000:]}")

    def recipient_rows(self, message_row_id: int) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM recipients WHERE message_id = ? ORDER BY id", (message_row_id,))

    def wait_queue(self, timeout: float = 30) -> None:
        assert self.rig.wait_queue(timeout), f"queue not empty:\n{self.rig.queue_json()}"


@pytest.fixture(scope="session")
def e2e() -> Iterator[E2E]:
    reason = postfix_available()
    if reason:
        pytest.skip(f"end-to-end tests need a local Postfix: {reason}")
    base = Path(tempfile.mkdtemp(prefix="bm-e2e-", dir="/tmp"))
    os.chmod(base, 0o755)
    (base / "milter").mkdir(mode=0o755)
    (base / "db").mkdir(mode=0o755)
    milter = MilterProc(base)
    milter.start()
    rig = Rig(
        base / "pf",
        milter=f"unix:{milter.sock}",
        extra_main_cf={"message_size_limit": "0", "mailbox_size_limit": "0"},
    )
    try:
        rig.start()
        yield E2E(base, rig, milter)
    finally:
        rig.stop()
        milter.stop()
        if not os.environ.get("BOUNCEMILTER_E2E_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def token(request: pytest.FixtureRequest) -> str:
    name = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")
    return f"{name[:40]}-{int(time.time() * 1000) % 10**8}"
