"""`bouncemilter doctor` against the private Postfix: the correct wiring passes, and three miswirings are each
named with their fix."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from .conftest import E2E


def doctor(e2e: E2E) -> tuple[int, str]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bouncemilter.cli",
            "doctor",
            "--config",
            str(e2e.base / "bouncemilter-discard.toml"),
            "--postfix-config",
            str(e2e.rig.etc),
            "--smtp",
            f"127.0.0.1:{e2e.rig.smtp_port}",
            "--service-user",
            "root",
            "--timeout",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.returncode, out.stdout + out.stderr


def failed(report: str) -> list[str]:
    return [line for line in report.splitlines() if line.startswith("FAIL")]


@contextlib.contextmanager
def postfix_setting(e2e: E2E, name: str, value: str) -> Iterator[None]:
    old = subprocess.run(
        ["postconf", "-c", str(e2e.rig.etc), "-h", name], capture_output=True, text=True, check=True
    ).stdout.strip()
    e2e.rig.postconf(f"{name} = {value}")
    e2e.rig.postfix("reload")
    time.sleep(1.0)  # new smtpd processes take the setting
    try:
        yield
    finally:
        e2e.rig.postconf(f"{name} = {old}")
        e2e.rig.postfix("reload")
        time.sleep(1.0)


def test_correct_wiring_passes(e2e: E2E) -> None:
    code, report = doctor(e2e)
    assert code == 0, report
    assert failed(report) == []
    assert "PASS  a test report through Postfix is recorded: sent to bounces+doctor-" in report
    assert "stored as delivered" in report  # a delivered report: it suppresses nobody
    assert e2e.query("SELECT COUNT(*) FROM suppressions WHERE address LIKE 'doctor%'")[0][0] == 0


def test_no_recipient_delimiter(e2e: E2E) -> None:
    with postfix_setting(e2e, "recipient_delimiter", ""):
        code, report = doctor(e2e)
    assert code == 1
    fails = failed(report)
    assert any(f.startswith("FAIL  recipient_delimiter matches verp_separator") for f in fails), report
    assert "fix: main.cf: recipient_delimiter = +" in report
    # and the VERP test report is refused by Postfix, as real VERP bounces would be
    assert any("test report" in f and "5" in f.split("answered", 1)[-1][:3] for f in fails), report


def test_socket_unreachable_by_postfix(e2e: E2E) -> None:
    sock = e2e.milter.sock
    mode = os.stat(sock).st_mode & 0o777
    os.chmod(sock, 0o600)  # root's only: Postfix's user cannot connect
    try:
        code, report = doctor(e2e)
    finally:
        os.chmod(sock, mode)
    assert code == 1
    fails = failed(report)
    assert any(f.startswith("FAIL  Postfix (user postfix) can connect to the socket") for f in fails), report
    assert "fix: bouncemilter.toml: socket_mode = 0o660 and socket_group" in report
    assert any("test report" in f and "answered 4" in f for f in fails), report  # milter_default_action=tempfail


def test_milter_missing_from_non_smtpd_milters(e2e: E2E) -> None:
    with postfix_setting(e2e, "non_smtpd_milters", ""):
        code, report = doctor(e2e)
    assert code == 1
    fails = failed(report)
    assert [f.split(":")[0] for f in fails] == ["FAIL  non_smtpd_milters has the milter (Postfix's own bounces)"]
    assert "fix: main.cf: non_smtpd_milters = $smtpd_milters and internal_mail_filter_classes = bounce" in report


def test_doctor_refuses_an_invalid_config(e2e: E2E, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.toml"
    bad.write_text("[milter]\nsocket_mode = 660\n")
    out = subprocess.run(
        [sys.executable, "-m", "bouncemilter.cli", "doctor", "--config", str(bad), "--no-send"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and out.stdout.startswith("FAIL  configuration: ")


if not os.path.exists("/usr/sbin/postconf"):  # pragma: no cover - the e2e fixture skips with the reason too
    pytestmark = pytest.mark.skip("needs Postfix's postconf")
