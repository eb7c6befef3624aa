"""`bouncemilter doctor`: check the wiring between Postfix and the milter on a live host, each check with its fix.

It reads Postfix's own view of its settings (`postconf -xh`, so `$smtpd_milters` is expanded), talks to the
milter's socket as the Postfix user would, checks that the service user can write the database, and finally
sends one test report through Postfix to a bounce address and looks for it in the store. The test report is a
*successful* delivery report (kind "delivered"): it never suppresses anybody.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import smtplib
import socket
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import store as store_db
from .milter import SocketSpec, parse_socket
from .store import sql as Q


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""
    fix: str = ""

    def lines(self) -> list[str]:
        head = f"{'PASS' if self.ok else 'FAIL'}  {self.name}" + (f": {self.detail}" if self.detail else "")
        return [head] + ([f"      fix: {self.fix}"] if self.fix and not self.ok else [])


class Postconf:
    """`postconf -xh NAME` of one Postfix instance (-c DIR for a non-default config directory)."""

    def __init__(self, config_dir: str | None = None) -> None:
        self.binary = shutil.which("postconf") or "/usr/sbin/postconf"
        self.config_dir = config_dir

    def get(self, name: str) -> str:
        cmd = [self.binary, *(["-c", self.config_dir] if self.config_dir else []), "-xh", name]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip() or f"postconf {name} failed")
        return out.stdout.strip()


def postfix_form(spec: SocketSpec) -> str:
    """How main.cf names our socket: unix:/path, inet:host:port, inet:[::1]:port."""
    if spec.kind == "unix":
        return f"unix:{spec.path}"
    host = f"[{spec.host}]" if ":" in spec.host else spec.host
    return f"inet:{host}:{spec.port}"


def milter_entries(value: str) -> list[str]:
    """The milter addresses of a *_milters value: 'a, b' or '{ unix:/x, default_action=accept } inet:h:p'."""
    out: list[str] = []
    depth = 0
    for token in value.replace(",", " ").replace("{", " { ").replace("}", " } ").split():
        if token == "{":
            depth += 1
            out.append("")
        elif token == "}":
            depth = max(depth - 1, 0)
        elif depth and out and out[-1]:
            continue  # an option of the milter inside braces
        elif depth and out:
            out[-1] = token
        else:
            out.append(token)
    return [e for e in out if e]


def _same_socket(entry: str, ours: SocketSpec, chroot: str) -> bool:
    try:
        kind, _, rest = entry.partition(":")
        if kind in ("unix", "local") and ours.kind == "unix":
            # chrooted smtpd names the socket relative to the queue directory
            return os.path.normpath(rest) == os.path.normpath(ours.path) or (
                bool(chroot) and os.path.normpath(chroot + "/" + rest) == os.path.normpath(ours.path)
            )
        if kind in ("inet", "inet6") and ours.kind in ("inet", "inet6"):
            host, _, port = rest.rpartition(":")
            loopback = {"127.0.0.1", "localhost", "[::1]", "::1"}
            same_host = host.strip("[]") == ours.host or (host in loopback and ours.host in loopback)
            return int(port) == ours.port and same_host
    except ValueError:
        return False
    return False


def _as_user(user: str, action: Callable[[], bool]) -> bool | None:
    """Run `action` in a child process with `user`'s uid, gid and groups; None when we cannot (not root)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(user)
    pid = os.fork()
    if pid == 0:  # child: drop to the user, answer with the exit status
        code = 1
        try:
            os.initgroups(user, entry.pw_gid)
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            code = 0 if action() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _connects(spec: SocketSpec) -> Callable[[], bool]:
    def attempt() -> bool:
        family = socket.AF_UNIX if spec.kind == "unix" else socket.AF_INET6 if ":" in spec.host else socket.AF_INET
        address: Any = spec.path if spec.kind == "unix" else (spec.host, spec.port)
        with contextlib.suppress(OSError), socket.socket(family) as s:
            s.settimeout(5)
            s.connect(address)
            return True
        return False

    return attempt


def test_address(settings: Any, token: str) -> str:
    """A bounce address to send the test report to; a VERP one when configured (it tests the delimiter too)."""
    patterns = [getattr(b, "pattern", str(b)) for b in settings.bounce_addresses]
    for p in patterns:
        if "*@" in p:
            return p.replace("*@", f"doctor-{token}{settings.verp_encoding}bouncemilter.invalid@")
    for p in patterns:
        if not p.startswith("@"):
            return p
    return f"doctor@{patterns[0][1:]}" if patterns else ""


def test_report(to: str, token: str, hostname: str) -> bytes:
    """A delivery report saying the message was *delivered*: recorded as kind "delivered", never a suppression."""
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n"
        f"To: {to}\r\n"
        f"Subject: bouncemilter doctor test {token}\r\n"
        f"Message-ID: <doctor-{token}@bouncemilter.invalid>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="d-{token}"\r\n\r\n'
        f"--d-{token}\r\nContent-Type: text/plain\r\n\r\n"
        "A test report from `bouncemilter doctor`: it checks that reports reach the milter. Delete it.\r\n\r\n"
        f"--d-{token}\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; {hostname}\r\n\r\n"
        "Final-Recipient: rfc822; doctor-test@bouncemilter.invalid\r\n"
        "Action: delivered\r\nStatus: 2.0.0\r\n\r\n"
        f"--d-{token}--\r\n"
    ).encode()


def run_checks(
    settings: Any,
    *,
    postconf: Postconf,
    smtp: tuple[str, int] | None,
    service_user: str,
    timeout: float = 30.0,
) -> list[Check]:
    checks: list[Check] = []
    spec = parse_socket(settings.socket)
    ours = postfix_form(spec)
    listening = _connects(spec)()
    checks.append(
        Check(
            "the milter listens",
            listening,
            settings.socket,
            "start it: systemctl start bouncemilter (journalctl -u bouncemilter says why it does not)",
        )
    )
    try:
        get = postconf.get
        smtpd = milter_entries(get("smtpd_milters"))
        non_smtpd = milter_entries(get("non_smtpd_milters"))
        classes = get("internal_mail_filter_classes").replace(",", " ").split()
        delimiter = get("recipient_delimiter")
        owner = get("mail_owner") or "postfix"
        chroot = get("queue_directory") if _smtpd_chrooted(postconf) else ""
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        checks.append(Check("postconf", False, str(exc), "install Postfix, or give --postfix-config DIR"))
        return checks
    checks.append(
        Check(
            "smtpd_milters has the milter",
            any(_same_socket(e, spec, chroot) for e in smtpd),
            f"smtpd_milters = {' '.join(smtpd) or '(empty)'}",
            f"main.cf: smtpd_milters = {ours}; then postfix reload",
        )
    )
    in_non = any(_same_socket(e, spec, chroot) for e in non_smtpd)
    checks.append(
        Check(
            "non_smtpd_milters has the milter (Postfix's own bounces)",
            in_non and "bounce" in classes,
            f"non_smtpd_milters = {' '.join(non_smtpd) or '(empty)'}, internal_mail_filter_classes = "
            f"{' '.join(classes) or '(empty)'}",
            "main.cf: non_smtpd_milters = $smtpd_milters and internal_mail_filter_classes = bounce; postfix reload",
        )
    )
    verp = any(getattr(b, "kind", "") == "verp" for b in settings.bounce_addresses)
    checks.append(
        Check(
            "recipient_delimiter matches verp_separator",
            settings.verp_separator in delimiter or not verp,
            f"recipient_delimiter = {delimiter or '(empty)'}, verp_separator = {settings.verp_separator}"
            + ("" if verp else " (no VERP address configured)"),
            f"main.cf: recipient_delimiter = {settings.verp_separator}; then postfix reload "
            "(without it Postfix answers 554 to every VERP bounce)",
        )
    )
    reach = _as_user(owner, _connects(spec)) if listening else False
    checks.append(
        Check(
            f"Postfix (user {owner}) can connect to the socket",
            bool(reach) or (reach is None and listening),
            "" if reach is not None else "not checked as that user (run doctor as root)",
            f"bouncemilter.toml: socket_mode = 0o660 and socket_group = a group {owner} is in "
            f"(usermod -a -G bouncemilter {owner}); every directory above the socket searchable by it",
        )
    )
    checks.append(_db_check(settings, service_user))
    if smtp is not None:
        checks.append(_send_check(settings, smtp, timeout))
    return checks


def _smtpd_chrooted(postconf: Postconf) -> bool:
    cmd = [postconf.binary, *(["-c", postconf.config_dir] if postconf.config_dir else []), "-Fh", "smtp/inet/chroot"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return out.returncode == 0 and out.stdout.strip().lower() in ("y", "-")  # "-": the default, y before 3.5


def _db_check(settings: Any, user: str) -> Check:
    if store_db.is_url(settings.db):  # PostgreSQL: no file to own; the store must answer within its timeout
        name = store_db.display_name(settings.db)
        try:
            store_db.connect(settings.db, settings.store_timeout, write=True).close()
        except (sqlite3.Error, store_db.NoDatabase) as exc:
            return Check(
                "the store (PostgreSQL) answers and its schema is up to date",
                False,
                f"{name}: {' '.join(str(exc).split())}",
                "start PostgreSQL or fix [store] db (host, port, sslmode, the password in ~/.pgpass or PGPASSWORD); "
                "deploy/postgres/ has the roles and grants",
            )
        return Check("the store (PostgreSQL) answers and its schema is up to date", True, name, "")
    db = os.path.abspath(settings.db)
    folder = os.path.dirname(db)

    def writable() -> bool:
        names = [db, db + "-wal", db + "-shm"]
        return os.access(folder, os.W_OK | os.X_OK) and all(
            os.access(n, os.R_OK | os.W_OK) for n in names if os.path.exists(n)
        )

    ok = _as_user(user, writable) if user != pwd.getpwuid(os.geteuid()).pw_name else writable()
    return Check(
        f"the service user {user} can write the database",
        bool(ok) or ok is None,
        db + ("" if ok is not None else " (not checked as that user: run doctor as root)"),
        f"chown {user} {folder} {db}*; chmod u+rw {db}*",
    )


def _send_check(settings: Any, smtp: tuple[str, int], timeout: float) -> Check:
    token = uuid.uuid4().hex[:12]
    name = "a test report through Postfix is recorded"
    to = test_address(settings, token)
    if not to:
        return Check(name, False, "no bounce address configured", "bouncemilter.toml: [bounce] addresses = [...]")
    raw = test_report(to, token, socket.getfqdn())
    try:
        with smtplib.SMTP(smtp[0], smtp[1], timeout=timeout) as conn:
            conn.ehlo()
            code, msg = conn.mail("")
            if code == 250:
                code, msg = conn.rcpt(to)
            if code == 250:
                code, msg = conn.data(raw)
    except (OSError, smtplib.SMTPException) as exc:
        return Check(name, False, f"SMTP to {smtp[0]}:{smtp[1]}: {exc}", "give --smtp HOST:PORT of Postfix's smtpd")
    if code != 250:
        reply = f"{code} {msg.decode(errors='replace')}"
        fix = "see the checks above"
        if code >= 500 and settings.verp_separator in to.split("@")[0]:
            fix = f"main.cf: recipient_delimiter = {settings.verp_separator}; then postfix reload"
        if 400 <= code < 500:
            fix = "Postfix cannot reach the milter (see its log: 'milter ... connect'), or the store fails"
        return Check(name, False, f"MAIL FROM:<> RCPT TO:<{to}> answered {reply}", fix)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error, OSError, store_db.NoDatabase):
            conn2 = store_db.connect(settings.db, 5, read_only=True)
            try:
                row = conn2.execute(
                    Q.MESSAGE_KIND_BY_MESSAGE_ID, (f"<doctor-{token}@bouncemilter.invalid>",)
                ).fetchone()
            finally:
                conn2.close()
            if row is not None:
                return Check(name, True, f"sent to {to}, stored as {row[0]}")
        time.sleep(0.2)
    return Check(
        name,
        False,
        f"Postfix accepted the report for {to}, but it is not in {store_db.display_name(settings.db)} after "
        f"{timeout:g} s",
        "smtpd_milters must name this milter's socket; check Postfix's log for 'milter'",
    )
