"""A `bouncemilter run` with signed return paths behind the shared Postfix (tests/e2e/conftest.py).

`signing_milter()` starts the milter with its own store and key file, points the rig's smtpd_milters and
non_smtpd_milters at it (the same Postfix then plays the submission server that signs and the MX that gets the
bounces back), and restores the rig's own milter afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bouncemilter.signing import KeyRing

from .conftest import E2E, REPO, MilterProc

NEW_KEY = "e2e new key: 7Qm2v9XkPz4RtL8wHc3N"
OLD_KEY = "e2e old key: Jd5sYb1Fq6Gn0Uw2Ae7K"
KEYS = KeyRing([NEW_KEY, OLD_KEY])  # what the milter holds: the first signs, both verify
OLD_ONLY = KeyRing([OLD_KEY])  # the ring before the rotation
PATTERN = "bounces+*@test.example"

CONFIG = """\
[milter]
socket = "unix:{sock}"
socket_group = "postfix"

[store]
db = "{db}"
timeout = 2.0

[bounce]
addresses = ["{pattern}"]

[headers]
add = true

[log]
level = "debug"

[signing]
secret_file = "{keys}"
senders = ["@test.example"]
verify = "{verify}"
max_age_days = 30
{extra}
"""


class SigningMilter(MilterProc):
    def __init__(self, e2e: E2E, name: str, verify: str, extra: str = "") -> None:
        super().__init__(e2e.base / name)
        self.base.mkdir(mode=0o755, exist_ok=True)
        (self.base / "milter").mkdir(mode=0o755, exist_ok=True)
        (self.base / "db").mkdir(mode=0o755, exist_ok=True)
        self.keys = self.base / "keys"
        self.keys.write_text(f"# rotated: the new key signs, the old one still verifies\n{NEW_KEY}\n{OLD_KEY}\n")
        os.chmod(self.keys, 0o640)
        self.verify = verify
        self.extra = extra

    def write_config(self, auto_reply: str) -> Path:
        path = self.base / "bouncemilter.toml"
        path.write_text(
            CONFIG.format(
                sock=self.sock, db=self.db, pattern=PATTERN, keys=self.keys, verify=self.verify, extra=self.extra
            )
        )
        return path

    @property
    def config(self) -> Path:
        return self.base / "bouncemilter.toml"

    def cli(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "bouncemilter.cli", *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=True,
            timeout=60,
        )
        return out.stdout.strip()


def _point(e2e: E2E, spec: str) -> None:
    e2e.rig.postconf(f"smtpd_milters = {spec}", f"non_smtpd_milters = {spec}")
    e2e.rig.postfix("reload")
    time.sleep(1.0)  # let new smtpd and cleanup processes pick up the setting


@contextmanager
def signing_milter(e2e: E2E, name: str, verify: str, extra: str = "") -> Iterator[tuple[E2E, SigningMilter]]:
    milter = SigningMilter(e2e, name, verify, extra)
    milter.start()
    _point(e2e, f"unix:{milter.sock}")
    try:
        yield E2E(e2e.base, e2e.rig, milter), milter
    finally:
        _point(e2e, f"unix:{e2e.milter.sock}")
        milter.stop()


def suppressed(view: E2E) -> set[str]:
    return {r["address"] for r in view.query("SELECT address FROM suppressions WHERE state = 'suppressed'")}


def wait_row(view: E2E, token: str, column: str = "message_id", timeout: float = 30) -> dict:
    row = view.wait_message_row(token, timeout=timeout, column=column)
    return dict(row)
