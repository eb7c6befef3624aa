"""A production host in a directory, for the docs' blocks (tests/test_docs_blocks.py).

The blocks' production paths are moved below ROOT by `docblocks.localize` (its PATHS table):

    ROOT/work/                  the working directory of every command: links to the checkout's bouncemilter/,
                                bench/, conf/, deploy/, docs/, tests/; .venv/bin/{bouncemilter,python} (this
                                checkout, this Python); the CSV exports the examples import
    ROOT/bin/                   first in PATH: bouncemilter; journalctl (prints ROOT/journal: what a real
                                `bouncemilter run` wrote to stderr, after a line of systemd's own, as `-o cat`
                                shows the unit's journal); mail (keeps each message in ROOT/mail.out);
                                app-apply-suppressions (the cron recipe's application: keeps its input)
    ROOT/etc/bouncemilter/      bouncemilter.toml as deploy/setup.sh installs it, with the admin guide's blocks
                                (HOST_BLOCKS) applied; keys (a signing key), notify.secret
    ROOT/var/lib/bouncemilter/  bouncemilter.db: the host's database, with the fixtures of `populate`
    ROOT/var/mail/bounces, ROOT/home/Maildir/.Bounces (HOME is ROOT/home): bounce mailboxes to import

A template is built once per test module; each block runs in a copy of it, so blocks never see each other's
changes and run in any order.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from bouncemilter.config import load_settings
from bouncemilter.ingest import ingest, mailbox_envelope
from bouncemilter.policy import Policy
from bouncemilter.suppressions import open_store
from bouncemilter.unsubscribe import build_matcher

from .docblocks import REPO, Block, localize
from .e2e import messages as M

LINKED = ("bouncemilter", "bench", "conf", "deploy", "docs", "tests")
CONFIG = "etc/bouncemilter/bouncemilter.toml"
DB = "var/lib/bouncemilter/bouncemilter.db"


def own_group() -> str:
    return grp.getgrgid(os.getgid()).gr_name


def group_mapping(text: str) -> str:
    """The docs' group `bouncemilter` (deploy/setup.sh creates it) is the test's own group where it does not
    exist, e.g. on a CI machine that never ran setup.sh."""
    try:
        grp.getgrnam("bouncemilter")
        return text
    except KeyError:
        return re.sub(r'(chgrp |socket_group = ")bouncemilter\b', rf"\g<1>{own_group()}", text)


class Sandbox:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "work"
        self.config = root / CONFIG
        self.db = root / DB
        self.extra_env: dict[str, str] = {}
        self.rewrites: list[tuple[str, str]] = []  # (documented, here) for one block, after the paths

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            # the shims, then this Python's scripts (datasette), as after `pip install` in an activated venv
            PATH=f"{self.root / 'bin'}:{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",
            MAIL_CONFIG=str(self.root / "etc/postfix"),  # postmap's config directory, as /etc/postfix
            HOME=str(self.root / "home"),
            BOUNCEMILTER_CONFIG=str(self.config),  # as /etc/bouncemilter/bouncemilter.toml on a configured host
            TZ="UTC",
            COLUMNS="120",
            PYTHONPATH=str(REPO),
        )
        env.pop("CI", None)
        env.update(self.extra_env)
        return env

    def localize(self, text: str) -> str:
        text = group_mapping(localize(text, self.root))
        for documented, here in self.rewrites:
            text = text.replace(documented, here)
        return text

    def sh(self, command: str, shell: str = "bash", timeout: float = 120, **kw: object) -> subprocess.CompletedProcess:
        """`command` (already localized) as the docs' reader would type it, in the working directory."""
        kw.setdefault("stderr", subprocess.PIPE)
        return subprocess.run(
            [shell, "-c", command],
            cwd=self.work,
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
            timeout=timeout,
            **kw,  # type: ignore[arg-type]
        )

    def copy(self, dest: Path) -> Sandbox:
        shutil.copytree(self.root, dest, symlinks=True)
        box = Sandbox(dest)
        # the config and the shims name their root: point them at the copy
        for path in [box.config, *sorted((dest / "bin").iterdir())]:
            path.write_text(path.read_text().replace(str(self.root), str(dest)))
        return box

    def settings(self):  # type: ignore[no-untyped-def]
        return load_settings(str(self.config))

    def query(self, sql: str, *params: object) -> list[tuple]:
        conn = sqlite3.connect(self.db)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()


# -- building the template -----------------------------------------------------------------------------------


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def installed_config(setup_sh: str, state: Path) -> str:
    """conf/bouncemilter.toml as deploy/setup.sh installs it: its own command for that, run here."""
    m = re.search(r"^\s*(sed [^\n]*conf/bouncemilter\.toml)", setup_sh, re.M)
    assert m, "deploy/setup.sh: no sed line writing conf/bouncemilter.toml"
    command = m.group(1).split(">", 1)[0]
    out = subprocess.run(
        ["bash", "-c", command], cwd=REPO, env={**os.environ, "STATE": str(state)}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def merge_toml(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge_toml(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def dump_toml(data: dict, prefix: str = "") -> str:
    """A TOML document for the config's own shapes (tables of scalars and lists; socket_mode as octal)."""
    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        elif key == "socket_mode" and isinstance(value, int):
            lines.append(f"{key} = 0o{value:o}")
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, value in tables:
        name = f"{prefix}{key}"
        out += f"\n[{name}]\n" + dump_toml(value, f"{name}.")
    return out


def host_config(root: Path, host_blocks: list[Block]) -> str:
    """What the admin guide has the admin write to /etc/bouncemilter/bouncemilter.toml, here."""
    state = root / "var/lib/bouncemilter"
    data = tomllib.loads(installed_config((REPO / "deploy/setup.sh").read_text(), state))
    for block in host_blocks:
        data = merge_toml(data, tomllib.loads(group_mapping(localize(block.text, root))))
    return dump_toml(data)


SHIMS = {
    "bouncemilter": '#!/bin/sh\nexec {python} -m bouncemilter.cli "$@"\n',
    # the unit's journal as `journalctl -u bouncemilter -o cat` prints it (with -f: what is there, then the end)
    "journalctl": "#!/bin/sh\ncat {root}/journal\n",
    "mail": '#!/bin/sh\n{{ echo "mail $*"; cat; echo; }} >> {root}/mail.out\n',
    "app-apply-suppressions": "#!/bin/sh\ncat >> {root}/var/lib/app/applied\n",
}


def when(days: float = 0, hours: float = 0, minutes: float = 0, at: str | None = None) -> datetime:
    t = datetime.now(UTC) - timedelta(days=days, hours=hours, minutes=minutes)
    if at:
        hh, mm = map(int, at.split(":"))
        t = t.replace(hour=hh, minute=mm, second=23, microsecond=0)
    return t


def delivered(raw: bytes, at: datetime, to: str = "bounces@example.com", sender: str = "") -> bytes:
    """`raw` as our server's delivery agent stored it: Return-Path, X-Original-To and a Received line."""
    head = (
        f"Return-Path: <{sender}>\r\nX-Original-To: {to}\r\nDelivered-To: {to}\r\n"
        f"Received: from mx.remote.example (mx.remote.example [192.0.2.10])\r\n"
        f"\tby mx.example.com (Postfix) with ESMTPS id 4Q{abs(hash(raw)) % 10**8:08d}; {format_datetime(at)}\r\n"
    )
    return head.encode() + raw.replace(b"bounces@test.example", to.encode())


def mailboxfull(token: str, recipient: str, status: str, code: str) -> bytes:
    words = f"<{recipient}>: Mailbox full, quota exceeded" if status.startswith("4") else "Mailbox full"
    return M.dsn(token, recipient, status=status, diagnostic=f"smtp; {code} {status} {words}")


def blocked(token: str, recipient: str) -> bytes:
    diag = "smtp; 554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org"
    return M.dsn(token, recipient, status="5.7.1", diagnostic=diag)


def unsubscribe_request(token: str, subscriber: str, at: datetime) -> bytes:
    local, _, domain = subscriber.partition("@")
    to = f"unsubscribe+{local}={domain}@example.com"
    raw = (
        f"From: <{subscriber}>\r\nTo: {to}\r\nSubject: unsubscribe\r\nMessage-ID: <{token}@mail.example.org>\r\n"
        f"Date: {format_datetime(at)}\r\n\r\nPlease remove me.\r\n"
    ).encode()
    return delivered(raw, at, to=to, sender=subscriber)


def maildir(path: Path, messages: list[bytes]) -> None:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    for n, raw in enumerate(messages):
        (path / "new" / f"1764000000.M{n}P1.mx.example.com").write_bytes(raw)


def mbox(path: Path, messages: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for raw in messages:
            body = re.sub(rb"(?m)^(>*From )", rb">\1", raw.replace(b"\r\n", b"\n"))
            fh.write(b"From MAILER-DAEMON Thu Nov 26 10:00:00 2026\n" + body + b"\n")


ESP_EXPORT = """email,reason,created
ann@example.net,unsubscribed,2025-02-01
ben@example.net,spam complaint,2025-02-02T10:00:00Z
cid@example.net,hard bounce,1738500000
dee@example.net,unsubscribed,"Mon, 03 Feb 2025 10:00:00 +0000"
eve@example.net,soft bounce,03/04/2025
"""
MAILCHIMP_EXPORT = """Email Address,First Name,Last Name,UNSUB_TIME,UNSUB_REASON
gus@example.net,Gus,Gray,2025-03-01 10:00:00,No longer interested
hal@example.net,Hal,Hill,2025-03-02 11:00:00,Too many emails
"""


def build(root: Path, host_blocks: list[Block]) -> Sandbox:
    """The template: files, shims, the host's config and database."""
    box = Sandbox(root)
    for sub in (
        "work/.venv/bin",
        "bin",
        "home",
        "tmp",
        "var/lib/app",
        "var/lib/bouncemilter",
        "var/backups",
        "etc/postfix",
        "run/bouncemilter",
    ):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        (box.work / name).symlink_to(REPO / name)
    _write(box.work / ".venv/bin/bouncemilter", SHIMS["bouncemilter"].format(python=sys.executable), 0o755)
    _write(box.work / ".venv/bin/python", f'#!/bin/sh\nexec {sys.executable} "$@"\n', 0o755)
    for name, text in SHIMS.items():
        _write(root / "bin" / name, text.format(python=sys.executable, root=root), 0o755)
    _write(root / "etc/postfix/main.cf", "")
    _write(box.work / "esp-suppressions.csv", ESP_EXPORT)
    _write(box.work / "mailchimp-unsubscribed.csv", MAILCHIMP_EXPORT)
    # the signing key as the admin guide makes it, the webhook's key as its comment says (0640, 16 bytes or more)
    _write(root / "etc/bouncemilter/keys", "c2lnbmluZy1rZXktb2YtdGhlLWRvY3MtdGVzdHMtMzI=\n", 0o640)
    _write(root / "etc/bouncemilter/notify.secret", "a-webhook-secret-of-the-docs-tests\n", 0o640)
    _write(box.config, host_config(root, host_blocks), 0o640)
    populate(box)
    box.journal()
    return box


def populate(box: Sandbox) -> None:
    """The host's database: what the docs' examples read.

    - full@example.org: mailbox full on 3 days (twice on the first), suppressed on the third (`history`);
    - dead@example.org, bob@example.org: hard bounces (the Postfix access map);
    - in the last hour: 16 messages, 12 bounced recipients of which 6 hard and 2 blocked, 1 complaint, 2 opt-outs
      (`check`);
    - the feed: padded with manual suppressions up to cursor 41; then an opt-out (42) and a removal (43).
    The mailboxes ~/Maildir/.Bounces and /var/mail/bounces hold messages not imported yet.
    """
    settings = box.settings()
    old = [
        delivered(mailboxfull("full-1", "full@example.org", "4.2.2", "452"), when(8, at="13:23")),
        delivered(mailboxfull("full-2", "full@example.org", "4.2.2", "452"), when(8, at="15:47")),
        delivered(mailboxfull("full-3", "full@example.org", "5.2.2", "552"), when(6, at="13:23")),
        delivered(mailboxfull("full-4", "full@example.org", "5.2.2", "552"), when(4, at="13:23")),
        delivered(M.hard_bounce("dead-1", "dead@example.org"), when(40)),
        delivered(M.hard_bounce("bob-1", "bob@example.org"), when(20)),
    ]
    bounces = [
        delivered(M.hard_bounce("m1", "mia@example.org"), when(3)),
        delivered(M.arf_complaint("m2", "max@example.org"), when(3)),
        delivered(M.delay_warning("m3", "moe@example.org"), when(3)),
        delivered(M.ordinary("m4"), when(3)),
    ]
    maildir(box.root / "home/Maildir/.Bounces", bounces)
    inbox = [
        delivered(M.delay_warning("dora-1", "dora@example.org"), when(3)),
        delivered(M.hard_bounce("hank-1", "hank@example.org"), when(3)),
        delivered(M.arf_complaint("frank-1"), when(2)),
        delivered(M.ordinary("misc-1"), when(2)),
    ]
    mbox(box.root / "var/mail/bounces", inbox)
    recent = [
        *(delivered(M.hard_bounce(f"h{i}", f"h{i}@example.net"), when(minutes=50 - i)) for i in range(6)),
        *(delivered(blocked(f"b{i}", f"b{i}@example.net"), when(minutes=40 - i)) for i in range(2)),
        *(delivered(mailboxfull(f"s{i}", f"s{i}@example.net", "5.2.2", "552"), when(minutes=35 - i)) for i in range(4)),
        delivered(M.arf_complaint("c0", "c0@example.net"), when(minutes=30)),
        delivered(M.auto_reply("a0", "a0@example.net"), when(minutes=25)),
        unsubscribe_request("o0", "o0@example.net", when(minutes=20)),
    ]
    matcher = build_matcher(settings)
    with open_store(str(box.db)) as store:
        store.suppressions.policy = Policy.from_settings(settings)
        for raw in [*old, *recent]:
            ingest(raw, mailbox_envelope(raw, matcher), settings, store)
    (changes,) = box.query("SELECT COALESCE(MAX(id), 0) FROM suppression_changes")[0]
    assert changes < 41, changes
    pad = "".join(f"old-esp-{i}@example.com\n" for i in range(41 - changes))
    out = box.sh("bouncemilter suppress - --reason 'old ESP'", input=pad)
    assert out.returncode == 0, out.stderr
    raw = unsubscribe_request("o1", "o1@example.net", when(minutes=10))
    with open_store(str(box.db)) as store:
        store.suppressions.policy = Policy.from_settings(settings)
        ingest(raw, mailbox_envelope(raw, matcher), settings, store)
    out = box.sh("bouncemilter unsuppress bob@example.org --reason 'mailbox fixed' --by ann")
    assert out.returncode == 0, out.stderr
    assert box.query("SELECT MAX(id) FROM suppression_changes") == [(43,)]


# -- the milter, for real ------------------------------------------------------------------------------------


@contextlib.contextmanager
def milter(box: Sandbox, command: str, log: Path) -> Iterator[subprocess.Popen]:
    """`command` (a localized `bouncemilter run ...`) running in the sandbox until the block ends: SIGTERM."""
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=box.work,
            env=box.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_listening(proc: subprocess.Popen, log: Path, timeout: float = 15) -> dict:
    """The milter's `start` log line, once it is there (the socket listens before it is written)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if rec.get("event") == "start":
                    return rec
        if proc.poll() is not None:
            raise AssertionError(f"the milter exited with {proc.returncode}: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError(f"the milter did not start: {log.read_text()[-2000:]}")


def connect(spec: str) -> socket.socket:
    """A socket connected to a milter socket spec (unix:PATH, inet:PORT@HOST)."""
    if spec.startswith(("unix:", "local:")):
        s = socket.socket(socket.AF_UNIX)
        s.connect(spec.split(":", 1)[1])
        return s
    port, _, host = spec.removeprefix("inet:").partition("@")
    return socket.create_connection((host or "127.0.0.1", int(port)), timeout=10)


def send_over_milter(spec: str, raw: bytes, rcpt: str, queue_id: str) -> str:
    """One MTA session over the milter protocol (miltertest, the classic event sequence): MAIL FROM:<>, RCPT
    TO:<rcpt>, the message; the milter's final reply code ("a" for accept)."""
    import miltertest as mt

    C = mt.constants
    s = connect(spec)
    try:
        conn = mt.MilterConnection(s)
        _, proto = conn.optneg_mta(actions=C.SMFI_V6_ACTS & ~C.SMFIF_SETSYMLIST)

        def step(cmd: bytes, **kw: object) -> None:
            skip, no_reply = {
                C.SMFIC_CONNECT: (C.SMFIP_NOCONNECT, C.SMFIP_NR_CONN),
                C.SMFIC_HELO: (C.SMFIP_NOHELO, C.SMFIP_NR_HELO),
                C.SMFIC_MAIL: (C.SMFIP_NOMAIL, C.SMFIP_NR_MAIL),
                C.SMFIC_RCPT: (C.SMFIP_NORCPT, C.SMFIP_NR_RCPT),
                C.SMFIC_DATA: (C.SMFIP_NODATA, C.SMFIP_NR_DATA),
                C.SMFIC_HEADER: (C.SMFIP_NOHDRS, C.SMFIP_NR_HDR),
                C.SMFIC_EOH: (C.SMFIP_NOEOH, C.SMFIP_NR_EOH),
                C.SMFIC_BODY: (C.SMFIP_NOBODY, C.SMFIP_NR_BODY),
            }[cmd]
            if proto & skip:
                return
            if proto & no_reply:
                conn._send(cmd, **kw)
                return
            reply = conn.send_ar(cmd, **kw)
            assert reply[0] == C.SMFIR_CONTINUE, reply

        step(C.SMFIC_CONNECT, hostname="mx.remote.example", family="4", port=25, address="192.0.2.10")
        step(C.SMFIC_HELO, helo="mx.remote.example")
        step(C.SMFIC_MAIL, args=["<>"])
        step(C.SMFIC_RCPT, args=[f"<{rcpt}>"])
        conn.send_macro(C.SMFIC_DATA, i=queue_id)
        step(C.SMFIC_DATA)
        head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
        for line in re.split(rb"\n(?![ \t])", head):
            name, _, value = line.decode().partition(":")
            step(C.SMFIC_HEADER, name=name, value=value.strip())
        step(C.SMFIC_EOH)
        step(C.SMFIC_BODY, buf=body.replace(b"\n", b"\r\n").decode("utf-8", "replace"))
        return conn.send_eom()[-1][0]
    finally:
        s.close()


def _journal(self: Sandbox) -> None:
    """ROOT/journal: a systemd line, then what `bouncemilter run` really writes while it records a hard and a
    soft bounce and refuses a broken config at a reload (an error line)."""
    log = self.root / "tmp/journal.log"
    config = self.root / "tmp/journal.toml"
    config.write_text(self.config.read_text().replace(str(self.db), str(self.root / "tmp/journal.db")))
    with milter(self, f"bouncemilter run --config {config}", log) as proc:
        spec = wait_listening(proc, log)["socket"]
        sample = (REPO / "bouncemilter/samples/hard-bounce.eml").read_bytes()
        for n, raw in enumerate((sample, M.soft_bounce("j2"))):
            assert send_over_milter(spec, raw, "bounces@example.com", f"4QJ{n}") == "a"
        good = config.read_text()
        config.write_text(good + "\n[milter]\n")  # the table twice: not TOML
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reload_failed" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        config.write_text(good)
    lines = log.read_text().splitlines()
    assert any('"reload_failed"' in x for x in lines), lines
    _write(self.root / "journal", "\n".join(["Started bouncemilter.service - bouncemilter.", *lines]) + "\n")


Sandbox.journal = _journal  # type: ignore[attr-defined]
