"""End to end: the milter in a private Postfix records bounces and keeps the suppression list (its Store hook);
the commands read that database; `suppressed --format postfix` loads with postmap and makes a real Postfix
reject a suppressed recipient at RCPT TO while accepting another one.

Everything listens on 127.0.0.1 only (tests/e2e/postfix_rig.py). Needs root and Postfix, like tests/e2e.
"""

from __future__ import annotations

import json
import os
import shutil
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter.cli import main
from tests.e2e.conftest import MilterProc
from tests.e2e.postfix_rig import Rig, postfix_available
from tests.test_suppress_cli import arf, dsn


@dataclass
class Env:
    rig: Rig
    milter: MilterProc
    map_file: Path

    @property
    def db(self) -> str:
        return str(self.milter.db)

    def postmap(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [shutil.which("postmap") or "/usr/sbin/postmap", "-c", str(self.map_file.parent / "etc"), *args],
            capture_output=True,
            text=True,
            check=False,
        )

    def smtp(self) -> smtplib.SMTP:
        smtp = smtplib.SMTP("127.0.0.1", self.rig.smtp_port, local_hostname="client.example", timeout=60)
        smtp.ehlo()
        return smtp


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    reason = postfix_available()
    if reason:
        pytest.skip(f"needs a local Postfix: {reason}")
    base = Path(tempfile.mkdtemp(prefix="bm-map-", dir="/tmp"))
    os.chmod(base, 0o755)
    for sub in ("milter", "db", "map"):
        (base / sub).mkdir(mode=0o755)
    map_file = base / "map" / "suppressed"
    map_file.write_text("")
    # postmap only needs a config directory; a private, empty main.cf keeps the system's out of it
    (base / "map" / "etc").mkdir()
    (base / "map" / "etc" / "main.cf").write_text("")
    milter = MilterProc(base)
    milter.start()
    rig = Rig(
        base / "pf",
        milter=f"unix:{milter.sock}",
        extra_main_cf={
            "smtpd_recipient_restrictions": f"check_recipient_access hash:{map_file}, permit_mynetworks, reject"
        },
    )
    e = Env(rig, milter, map_file)
    try:
        res = e.postmap(f"hash:{map_file}")  # before Postfix starts: smtpd opens its tables once, at process start
        assert res.returncode == 0, res.stderr
        rig.start()
        yield e
    finally:
        rig.stop()
        milter.stop()
        if not os.environ.get("BOUNCEMILTER_E2E_KEEP"):
            shutil.rmtree(base, ignore_errors=True)


def cli(*args: str) -> str:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def deliver_report(env: Env, raw: bytes) -> None:
    with env.smtp() as smtp:
        code, msg = smtp.mail("<>")
        assert code == 250, msg
        code, msg = smtp.rcpt("bounces@test.example")
        assert code == 250, msg
        code, msg = smtp.data(raw)
        assert code == 250, msg


def rcpt_reply(env: Env, address: str) -> tuple[int, str]:
    with env.smtp() as smtp:
        code, msg = smtp.mail("news@test.example")
        assert code == 250, msg
        code, msg = smtp.rcpt(address)
        smtp.rset()
        return code, msg.decode(errors="replace")


def rcpt_reply_after_reload(env: Env, address: str, want: int) -> tuple[int, str]:
    """rcpt_reply once `postfix reload` took effect (reply class `want`, or the last reply after 10 s): the reload
    is asynchronous, and an smtpd started before it may serve one more session with the old table."""
    deadline = time.monotonic() + 10
    while True:
        code, text = rcpt_reply(env, address)
        if code // 100 == want or time.monotonic() > deadline:
            return code, text
        time.sleep(0.1)


def test_milter_keeps_the_list_and_postfix_rejects_suppressed(env: Env) -> None:
    deliver_report(env, dsn(101, "dead@example.org", "5.1.1", "550 5.1.1 <dead@example.org>: User unknown"))
    deliver_report(
        env, dsn(102, "ok@example.org", "5.7.1", "554 5.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org")
    )
    deliver_report(env, arf(103, "angry@example.org"))

    # the milter's own Store hook suppressed them while recording (no rebuild involved)
    rows = {r["address"]: r for r in json.loads(cli("suppressed", "--db", env.db, "--format", "json"))}
    assert set(rows) == {"dead@example.org", "angry@example.org"}
    assert rows["dead@example.org"]["category"] == "hard"
    hist = json.loads(cli("history", "--db", env.db, "--format", "json", "dead@example.org"))
    assert hist["events"][0]["counted"] and hist["events"][0]["remote_mta"] == "mail.example.org"
    assert hist["events"][0]["client_addr"] == "127.0.0.1"
    ok = json.loads(cli("history", "--db", env.db, "--format", "json", "ok@example.org"))
    assert ok["suppression"] is None and ok["events"][0]["reason"] == "blocked" and not ok["events"][0]["counted"]

    # before the map is loaded, Postfix accepts the dead address
    assert rcpt_reply(env, "dead@example.org")[0] == 250

    env.map_file.write_text(cli("suppressed", "--db", env.db, "--format", "postfix"))
    res = env.postmap(f"hash:{env.map_file}")
    assert res.returncode == 0, res.stderr
    res = env.postmap("-q", "dead@example.org", f"hash:{env.map_file}")
    assert res.stdout.startswith("REJECT 5.1.1 Recipient suppressed: hard bounce (userunknown 5.1.1)"), res
    env.rig.postfix("reload")  # idle smtpd processes would otherwise serve one more session with the old table

    code, text = rcpt_reply_after_reload(env, "dead@example.org", 5)
    assert code // 100 == 5 and "5.1.1" in text and "Recipient suppressed" in text, (code, text)
    code, text = rcpt_reply(env, "Angry@Example.ORG")  # Postfix folds case for hash: lookups
    assert code // 100 == 5, (code, text)
    assert rcpt_reply(env, "ok@example.org")[0] == 250
    assert rcpt_reply(env, "someone@example.org")[0] == 250

    # an admin lifts the suppression; the next export lets the address through again
    cli("unsuppress", "--db", env.db, "dead@example.org", "--by", "ann", "--reason", "test")
    env.map_file.write_text(cli("suppressed", "--db", env.db, "--format", "postfix"))
    assert env.postmap(f"hash:{env.map_file}").returncode == 0
    env.rig.postfix("reload")
    assert rcpt_reply_after_reload(env, "dead@example.org", 2)[0] == 250
