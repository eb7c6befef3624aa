"""The docs' blocks that need a live Postfix, run against the private one (tests/test_docs_blocks.py lists them in
ELSEWHERE). The rig stands for the host the docs describe: its milter config is /etc/bouncemilter/bouncemilter.toml
(through $BOUNCEMILTER_CONFIG, as on a configured host), its Postfix the system's, its bounce domain example.com."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from ..docblocks import REPO, Block, all_blocks, commands, output_mismatch, transcript
from .conftest import E2E
from .test_doctor_e2e import postfix_setting


def block(doc: str, head: str) -> Block:
    (found,) = [b for b in all_blocks() if b.doc == doc and b.head.startswith(head)]
    return found


def as_documented(e2e: E2E, text: str, config: str) -> str:
    """The rig's names in a command's output, put back as the docs name them."""
    for rig, documented in (
        (config, "/etc/bouncemilter/bouncemilter.toml"),
        (f"unix:{e2e.milter.sock}", "unix:/run/bouncemilter/milter.sock"),
        (str(e2e.milter.db), "/var/lib/bouncemilter/bouncemilter.db"),
        ("service user root", "service user bouncemilter"),
        ("@test.example", "@example.com"),
    ):
        text = text.replace(rig, documented)
    return text


def test_the_readme_doctor_example(e2e: E2E) -> None:
    """The admin guide's `bouncemilter doctor`, on a Postfix whose main.cf lacks recipient_delimiter: the README's
    output, line by line (the rig's Postfix is the system's: --postfix-config and --smtp name it)."""
    ((command, expected),) = transcript(block("README.md", "$ bouncemilter doctor").text)
    assert command == "bouncemilter doctor"
    config = str(e2e.base / "bouncemilter-discard.toml")
    argv = [sys.executable, "-m", "bouncemilter.cli", *command.split()[1:]]
    argv += ["--postfix-config", str(e2e.rig.etc), "--smtp", f"127.0.0.1:{e2e.rig.smtp_port}"]
    argv += ["--service-user", "root", "--timeout", "10"]
    env = {**os.environ, "BOUNCEMILTER_CONFIG": config}
    with postfix_setting(e2e, "recipient_delimiter", ""):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert out.returncode == 1, out.stdout + out.stderr
    shown = as_documented(e2e, out.stdout + out.stderr, config).splitlines()
    mismatch = output_mismatch(expected, shown)
    assert mismatch is None, mismatch


def test_the_deploy_guide_test_bounce(e2e: E2E) -> None:
    """The deploy guide's test bounce by hand: swaks sends the sample with the null sender through Postfix, and
    sqlite3 finds its recipient in the milter's database."""
    for tool in ("swaks", "sqlite3"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (tests/run.sh installs it)")
    send, query = commands(block("deploy/postfix/README.md", "swaks --server").text)
    send = send.replace("--server localhost", f"--server 127.0.0.1:{e2e.rig.smtp_port}")
    send = send.replace("bounces@example.com", "bounces@test.example")
    out = subprocess.run(["bash", "-c", send], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    queue_id = re.search(r"queued as (\w+)", out.stdout)
    assert queue_id, out.stdout
    e2e.wait_message_row(queue_id.group(1), column="queue_id")
    query = query.replace("/var/lib/bouncemilter/bouncemilter.db", str(e2e.milter.db))
    out = subprocess.run(["bash", "-c", query], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "alice@example.org|userunknown|1" in out.stdout.splitlines()
