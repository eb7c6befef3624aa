"""`bouncemilter classify`: formats, sources, errors, progress bar only on a terminal."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from bouncemilter.cli import main
from bouncemilter.progress import Progress

CLI = Path(__file__).parent / "fixtures" / "cli"
RECIPIENT_FIELDS = {"recipient", "action", "status", "reply_code", "diagnostic", "remote_mta", "reason", "hard"}
RECIPIENT_FIELDS |= {"smtp_command", "diagnostic_type", "reason_rule", "original_recipient"}
TOP_FIELDS = {"source", "kind", "detector", "evidence", "recipients", "original", "feedback", "autoreply_markers"}
TOP_FIELDS |= {"error", "truncated"}


def run(*args: str, stdin: bytes | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["classify", *args], input=stdin)


def jsonl(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_jsonl_fields_and_sources() -> None:
    bounce, mbox = str(CLI / "bounce-dsn.eml"), str(CLI / "three.mbox")
    result = run("--format", "jsonl", bounce, mbox)
    assert result.exit_code == 0, result.output
    records = jsonl(result.stdout)
    assert [r["source"] for r in records] == [bounce, f"{mbox}#1", f"{mbox}#2", f"{mbox}#3"]
    for rec in records:
        assert set(rec) == TOP_FIELDS
        for row in rec["recipients"]:
            assert set(row) == RECIPIENT_FIELDS
    first = records[0]
    assert first["kind"] == "bounce" and first["detector"] and first["evidence"]
    assert first["recipients"][0]["recipient"] == "carol@example.net"
    assert first["recipients"][0]["status"] == "5.1.1"
    assert first["recipients"][0]["hard"] is True
    assert first["original"]["message_id"] == "<digest-42@example.com>"
    assert [r["kind"] for r in records[1:]] == ["bounce", "not_bounce", "not_bounce"]


def test_json_is_one_array_equal_to_jsonl() -> None:
    as_json = json.loads(run("--format", "json", str(CLI)).stdout)
    as_jsonl = jsonl(run("--format", "jsonl", str(CLI)).stdout)
    assert as_json == as_jsonl and len(as_json) == 5
    assert json.loads(run("--format", "json", str(CLI / "missing")).stdout) == []


def test_table_for_people() -> None:
    result = run(str(CLI / "bounce-dsn.eml"), str(CLI / "plain.eml"))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SOURCE", "KIND", "RECIPIENT", "REASON", "HARD", "STATUS", "DETECTOR"]
    assert "carol@example.net" in lines[1] and "userunknown" in lines[1] and "yes" in lines[1]
    assert "not_bounce" in lines[2]
    assert lines[-1] == "2 message(s): 1 bounce, 1 not_bounce"


def test_stdin() -> None:
    result = run("--format", "jsonl", "-", stdin=(CLI / "bounce-dsn.eml").read_bytes())
    (record,) = jsonl(result.stdout)
    assert record["source"] == "-" and record["kind"] == "bounce"


def test_unreadable_paths_reported_after_the_rest(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.eml")
    result = run("--format", "jsonl", missing, str(CLI / "plain.eml"))
    assert result.exit_code == 1
    assert [r["source"] for r in jsonl(result.stdout)] == [str(CLI / "plain.eml")]
    assert f"bouncemilter: cannot read {missing}: No such file or directory" in result.stderr


def test_no_progress_bar_when_stderr_is_not_a_terminal() -> None:
    result = run("--format", "jsonl", str(CLI))
    assert result.stderr == ""


def test_progress_bar_draws_on_a_terminal_only_after_the_delay() -> None:
    stream = io.StringIO()
    quick = Progress(10, stream=stream, delay=3600, enabled=True)
    for _ in range(10):
        quick.message_done()
        quick.file_done()
    quick.close()
    assert stream.getvalue() == ""  # a short run shows nothing

    slow = Progress(4, stream=stream, delay=0, enabled=True)
    slow.messages = 64
    slow.file_done()
    assert "classifying [" in stream.getvalue() and "1/4 files" in stream.getvalue()
    slow.close()
    assert stream.getvalue().endswith("\r\x1b[K")  # erased at the end

    off = Progress(4, stream=io.StringIO(), delay=0)  # StringIO is not a terminal
    off.file_done()
    assert off.stream.getvalue() == ""


def test_console_script_end_to_end_and_closed_pipe() -> None:
    cmd = [sys.executable, "-m", "bouncemilter.cli", "classify", "--format", "jsonl", str(CLI), str(CLI)]
    done = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 10
    # A reader that stops early (more output than a pipe buffer holds): no traceback.
    proc = subprocess.Popen([*cmd, *[str(CLI)] * 100], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err


def test_table_shows_the_address_the_sender_used_for_an_alias() -> None:
    raw = (CLI / "bounce-dsn.eml").read_bytes()
    final = raw.replace(
        b"Final-Recipient: rfc822; carol@example.net", b"Final-Recipient: rfc822; carol@mailstore.example.net"
    )
    assert final != raw, "the fixture's Final-Recipient line changed: update this test"
    final = final.replace(b"Final-Recipient:", b"Original-Recipient: rfc822; carol@example.net\nFinal-Recipient:", 1)
    result = run("-", stdin=final)
    assert "carol@example.net -> carol@mailstore.example.net" in result.stdout
    (record,) = jsonl(run("--format", "jsonl", "-", stdin=final).stdout)
    row = record["recipients"][0]
    assert (row["recipient"], row["original_recipient"]) == ("carol@mailstore.example.net", "carol@example.net")
