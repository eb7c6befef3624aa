"""`bouncemilter fetch` against a real Dovecot (IMAP and POP3) started on loopback by the tests.

One Dovecot for the module (tests/dovecot_rig.py: own ports, base_dir and config, a test CA); every test
takes a mailbox user of its own. Mailboxes are generated (tests/fetch_messages.py).
"""

from __future__ import annotations

import itertools
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter.cli import main
from bouncemilter.fetch_imap import ImapSession
from tests.conftest import db_connect

from .conftest import query_rows
from .dovecot_rig import PASSWORD, Dovecot, Proxy, dovecot_available, free_port
from .fetch_messages import mailbox, message, message_id

pytestmark = pytest.mark.skipif(dovecot_available() is not None, reason=str(dovecot_available()))

BIN = str(Path(sys.executable).parent / "bouncemilter")
FOLDERS = {  # the default actions, as this Dovecot names the folders ('.' separator)
    "hard": "Bounces.Hard",
    "soft": "Bounces.Soft",
    "complaint": "Bounces.Complaints",
    "auto_reply": "Bounces.Unrecognised",
    "unrecognised": "Bounces.Unrecognised",
}
_users = itertools.count(1)


@pytest.fixture(scope="module")
def rig():
    dovecot = Dovecot().start()
    try:
        yield dovecot
    finally:
        dovecot.stop()


@pytest.fixture
def box(rig: Dovecot, tmp_path: Path):
    """A mailbox user of this test's own, a password file and a database."""
    user = f"user{next(_users)}"
    pw = tmp_path / "password"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    return Box(rig, user, pw, tmp_path / "bounces.db")


@pytest.fixture(params=["sqlite", "postgres"])
def any_box(request: pytest.FixtureRequest, box: Box) -> Box:
    """The same, storing into SQLite and then into PostgreSQL (fetch works on both backends)."""
    if request.param == "postgres":
        box.db = request.getfixturevalue("pg_url")
    return box


class Box:
    def __init__(self, rig: Dovecot, user: str, pw: Path, db: Path | str) -> None:
        self.rig, self.user, self.pw, self.db = rig, user, pw, db

    def url(self, scheme: str = "imaps", folder: str = "INBOX", port: int | None = None) -> str:
        port = port or {"imap": self.rig.imap, "imaps": self.rig.imaps, "pop3": self.rig.pop3,
                        "pop3s": self.rig.pop3s}[scheme]  # fmt: skip
        return f"{scheme}://{self.user}@127.0.0.1:{port}" + (f"/{folder}" if scheme.startswith("imap") else "")

    def args(self, *extra: str) -> list[str]:
        return ["fetch", "--db", str(self.db), "--password-file", str(self.pw), "--ca-file", self.rig.ca, *extra]

    def fetch(self, *extra: str, scheme: str = "imaps"):
        """Run `bouncemilter fetch` in-process; (exit code, stdout, stderr)."""
        result = CliRunner().invoke(main, self.args(*extra, self.url(scheme)))
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    def deliver(self, messages: list[bytes]) -> None:
        self.rig.deliver(messages, self.user)

    def stored_ids(self) -> list[str]:
        if isinstance(self.db, Path) and not self.db.exists():
            return []
        return [r[0] for r in query_rows(self.db, "SELECT message_id FROM messages ORDER BY id")]

    def folders(self) -> dict[str, set[str]]:
        """Message-IDs per folder, from the server."""
        out = {}
        for name in self.rig.folder_counts(self.user):
            out[name] = set(self.rig.message_ids(name, self.user))
        return out


def snapshot(db: Path | str) -> list:
    conn = db_connect(db)
    try:
        return [[tuple(r) for r in conn.execute(f"SELECT * FROM {t} ORDER BY id")] for t in ("messages", "recipients")]
    finally:
        conn.close()


def where_expected(messages: list[tuple[str, bytes]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for intent, raw in messages:
        out.setdefault(FOLDERS[intent], set()).add(message_id(raw))
    return out


# ------------------------------------------------------------------------------------------- 200 bounces


def test_imap_mailbox_of_200_stored_once_sorted_into_folders_and_refetch_adds_nothing(any_box: Box) -> None:
    box = any_box
    messages = mailbox(200, tag=box.user)
    box.deliver([raw for _, raw in messages])

    code, out, err = box.fetch("--batch-size", "64")
    assert code == 0, err
    assert out.startswith("200 new, 0 already stored"), out
    ids = box.stored_ids()
    assert sorted(ids) == sorted(message_id(raw) for _, raw in messages)  # every message, once
    hard = {r[0] for r in query_rows(box.db, "SELECT DISTINCT m.message_id FROM messages m JOIN recipients r "
                                               "ON r.message_id = m.id WHERE r.hard = 1")}  # fmt: skip
    folders = box.folders()
    assert folders["INBOX"] == set()
    assert folders["Bounces.Hard"] == hard == where_expected(messages)["Bounces.Hard"]
    for name, expected in where_expected(messages).items():
        assert folders[name] == expected, name
    assert {r[0] for r in query_rows(box.db, "SELECT DISTINCT action FROM messages")} == {"fetched"}

    before = snapshot(box.db)
    box.deliver([raw for _, raw in messages[:10]])  # the same ten messages arrive again
    code, out, _ = box.fetch()
    assert code == 0
    assert out.startswith("0 new, 10 already stored"), out
    assert snapshot(box.db) == before
    assert box.folders()["INBOX"] == set()  # acted on all the same
    code, out, _ = box.fetch()
    assert (code, out.split(";")[0].strip()) == (0, "0 new, 0 already stored")


def test_pop3_mailbox_of_200_stored_once_and_refetch_adds_nothing(any_box: Box) -> None:
    box = any_box
    messages = mailbox(200, tag=box.user)
    box.deliver([raw for _, raw in messages])

    code, out, err = box.fetch(scheme="pop3s")  # default actions: POP3 can only leave
    assert code == 0, err
    assert out.startswith("200 new, 0 already stored"), out
    assert sorted(box.stored_ids()) == sorted(message_id(raw) for _, raw in messages)
    assert "warning" not in err  # the defaults (move) quietly mean "leave" over POP3
    before = snapshot(box.db)
    code, out, _ = box.fetch(scheme="pop3s")
    assert out.startswith("0 new, 200 already stored"), out
    assert snapshot(box.db) == before
    assert len(box.folders()["INBOX"]) == 200

    # delete what is hard, leave the rest: deleted only at QUIT, only after the rows are committed
    code, out, _ = box.fetch("--after", "hard=delete", scheme="pop3s")
    hard = sum(intent == "hard" for intent, _ in messages)
    assert code == 0 and f"deleted {hard}, left {200 - hard}" in out, out
    left = box.folders()["INBOX"]
    assert left == {message_id(raw) for intent, raw in messages if intent != "hard"}
    assert snapshot(box.db) == before


def test_starttls_urls_and_explicit_actions(box: Box) -> None:
    messages = mailbox(12, tag=box.user)
    box.deliver([raw for _, raw in messages])
    code, out, err = box.fetch(
        "--after", "hard=delete", "--after", "unrecognised=leave", "--after", "complaint=seen",
        "--after", "soft=move:Bounces/Über Soft", scheme="imap",
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith("12 new"), out
    folders = box.folders()
    by_intent = {i: {message_id(r) for k, r in messages if k == i} for i in FOLDERS}
    assert folders["Bounces.&ANw-ber Soft"] == by_intent["soft"]  # Ü in modified UTF-7 (RFC 3501 5.1.3)
    assert folders["INBOX"] == by_intent["unrecognised"] | by_intent["complaint"]
    assert not any(by_intent["hard"] & ids for ids in folders.values())  # deleted
    imap = box.rig.client(box.user)
    imap.select("INBOX", readonly=True)
    _, seen = imap.uid("SEARCH", "SEEN")
    _, unseen = imap.uid("SEARCH", "UNSEEN")
    imap.logout()
    assert len(seen[0].split()) == len(by_intent["complaint"])
    assert len(unseen[0].split()) == len(by_intent["unrecognised"])

    box.deliver([message(99, "hard", tag=box.user)])
    code, out, err = box.fetch("--after", "hard=delete", scheme="pop3")  # STLS on the plain port
    assert code == 0, err
    assert out.startswith("1 new"), out


def test_xoauth2_with_a_token_file(box: Box, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(f"tok-{box.user}\n")
    token.chmod(0o600)
    box.rig.tokens[f"tok-{box.user}"] = box.user
    box.deliver([message(1, "hard", tag=box.user), message(2, "soft", tag=box.user)])
    for scheme in ("imaps", "pop3s"):
        args = ["fetch", "--db", str(box.db), "--oauth2-token-file", str(token), "--ca-file", box.rig.ca]
        result = CliRunner().invoke(main, [*args, box.url(scheme)])
        assert result.exit_code == 0, result.stderr
    assert len(box.stored_ids()) == 2
    token.write_text("expired\n")  # re-read at every login
    result = CliRunner().invoke(main, [*args, box.url("imaps")])
    assert result.exit_code == 1
    assert "login as" in result.stderr and "failed" in result.stderr


def test_a_message_over_max_size_is_read_up_to_it_and_recorded_with_its_size(box: Box) -> None:
    big = message(1, "hard", pad_to=300_000, tag=box.user)
    box.deliver([big])
    for scheme, already in (("pop3s", 0), ("imaps", 1)):  # POP3 leaves it; IMAP then finds it stored
        code, out, _ = box.fetch("--max-size", "4096", "--format", "json", scheme=scheme)
        assert code == 0
        summary = json.loads(out)
        assert (summary["new"], summary["already_stored"], summary["truncated"]) == (1 - already, already, 1)
    (row,) = query_rows(box.db, "SELECT size, kind FROM messages")
    assert row["size"] >= 300_000  # the full size, as the server reported it
    assert row["kind"] == "bounce"  # classified from its first 4 KB


# ------------------------------------------------------------------------------------------------- errors


def test_each_failure_is_one_line_and_a_nonzero_exit(box: Box, tmp_path: Path) -> None:
    box.deliver([message(1, "hard", tag=box.user)])
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    cases = {
        "bad password imap": (["--password-file", str(wrong)], box.url("imaps"), "failed: [AUTHENTICATIONFAILED]"),
        "bad password pop3": (["--password-file", str(wrong)], box.url("pop3s"), "failed: [AUTH]"),
        "untrusted certificate": (
            ["--ca-file", "/etc/ssl/certs/ca-certificates.crt"],
            box.url("imaps"),
            "TLS certificate of 127.0.0.1",
        ),
        "missing folder": ([], box.url("imaps", folder="No/Such"), "folder 'No/Such' not found"),
        "connection refused": ([], box.url("imaps", port=free_port()), "connection refused"),
    }
    for name, (extra, url, expected) in cases.items():
        result = CliRunner().invoke(main, [*box.args(), *extra, url])
        assert result.exit_code == 1, name
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (name, result.stderr)
        assert lines[0].startswith(f"bouncemilter: fetch {url.rpartition('/')[0]}"), lines[0]
        assert "Traceback" not in result.output
    assert box.stored_ids() == []
    assert len(box.folders()["INBOX"]) == 1  # nothing moved

    wrong.chmod(0o644)
    result = CliRunner().invoke(main, [*box.args(), "--password-file", str(wrong), box.url()])
    assert "readable by every user of this machine (chmod 600)" in result.stderr

    result = CliRunner().invoke(main, [*box.args(), "--password-env", "X", box.url()])
    assert result.exit_code == 1 and "exactly one of" in result.stderr
    result = CliRunner().invoke(main, ["fetch", "--db", str(box.db), f"imaps://{box.user}:pw@127.0.0.1/INBOX"])
    assert result.exit_code == 2 and "a password in the URL is not accepted" in result.output
    assert "pw@" not in result.output


def test_insecure_says_it_is_for_tests_and_skips_verification(box: Box) -> None:
    box.deliver([message(1, "soft", tag=box.user)])
    args = ["fetch", "--db", str(box.db), "--password-file", str(box.pw), "--insecure", box.url()]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0
    assert "tests only" in result.stderr
    assert len(box.stored_ids()) == 1


def test_server_going_away_mid_fetch_moves_nothing_unstored_and_a_rerun_completes(box: Box) -> None:
    messages = mailbox(200, pad_to=2000, tag=box.user)
    box.deliver([raw for _, raw in messages])
    proxy = Proxy(box.rig.imaps, after=250_000, mode="cut")  # about half the bodies, through TLS
    try:
        result = CliRunner().invoke(main, [*box.args("--batch-size", "25"), box.url(port=proxy.port)])
    finally:
        proxy.close()
    assert proxy.tripped.is_set()
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert "connection lost after" in line, line
    stored = set(box.stored_ids())
    assert 0 < len(stored) < 200
    folders = box.folders()
    moved = set().union(*(ids for name, ids in folders.items() if name != "INBOX"))
    assert moved <= stored  # nothing was moved that was not stored
    assert moved | folders["INBOX"] == {message_id(raw) for _, raw in messages}  # nothing lost

    code, _, err = box.fetch()
    assert code == 0, err
    assert sorted(box.stored_ids()) == sorted(message_id(raw) for _, raw in messages)
    assert box.folders()["INBOX"] == set()


def test_killed_mid_run_then_rerun_loses_and_duplicates_nothing(box: Box) -> None:
    messages = mailbox(200, pad_to=2000, tag=box.user)
    box.deliver([raw for _, raw in messages])
    proxy = Proxy(box.rig.imaps, after=250_000, mode="freeze")
    proc = subprocess.Popen(
        [BIN, *box.args("--batch-size", "20"), box.url(port=proxy.port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proxy.tripped.wait(30), "the fetch never got that far"
        deadline = time.monotonic() + 30
        while not box.stored_ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proxy.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    partial = box.stored_ids()
    assert 0 < len(partial) < 200

    code, _, err = box.fetch()
    assert code == 0, err
    assert sorted(box.stored_ids()) == sorted(message_id(raw) for _, raw in messages)
    folders = box.folders()
    assert folders["INBOX"] == set()
    for name, expected in where_expected(messages).items():
        assert folders[name] == expected


def test_a_crash_between_commit_and_move_refetches_harmlessly(box: Box, monkeypatch: pytest.MonkeyPatch) -> None:
    messages = mailbox(60, tag=box.user)
    box.deliver([raw for _, raw in messages])

    class Crash(BaseException):
        pass

    real_act = ImapSession._act
    calls = []

    def act_then_crash(self: ImapSession, categories, stats) -> None:
        calls.append(len(categories))
        if len(calls) == 2:
            raise Crash  # the second batch is committed; the process dies before touching the server
        real_act(self, categories, stats)

    monkeypatch.setattr(ImapSession, "_act", act_then_crash)
    with pytest.raises(Crash):
        CliRunner().invoke(main, box.args("--batch-size", "20", box.url()), catch_exceptions=False)
    assert len(box.stored_ids()) == 40  # two batches committed
    assert len(box.folders()["INBOX"]) == 40  # only the first was moved
    monkeypatch.setattr(ImapSession, "_act", real_act)

    code, out, _ = box.fetch("--batch-size", "20")
    assert code == 0
    assert out.startswith("20 new, 20 already stored"), out
    assert sorted(box.stored_ids()) == sorted(message_id(raw) for _, raw in messages)
    folders = box.folders()
    assert folders["INBOX"] == set()
    for name, expected in where_expected(messages).items():
        assert folders[name] == expected


# -------------------------------------------------------------------------------------------------- watch


class Events:
    """The JSON log lines of a child process's stderr, read on a thread (a test never blocks on a pipe)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[dict] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, args=(proc.stderr,), daemon=True).start()

    def _read(self, stream) -> None:
        for raw in stream:
            try:
                self._queue.put(json.loads(raw))
            except ValueError:
                self._queue.put({"event": "text", "msg": raw})
        self._queue.put(None)

    def wait(self, name: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                record = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if record is None:
                break
            self.lines.append(record)
            if record.get("event") == name:
                return record
        raise AssertionError(f"no {name} event within {timeout} s; got {self.lines}")


def test_watch_picks_up_an_appended_message_within_two_seconds_over_idle(box: Box) -> None:
    box.deliver([message(1, "hard", tag=box.user)])
    proc = subprocess.Popen(
        [BIN, *box.args("--watch", "--interval", "3600"), box.url()],  # no polling: only IDLE can wake it
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    events = Events(proc)
    try:
        first = events.wait("fetch", 30)
        assert first["new"] == 1
        events.wait("fetch_watching", 30)
        imap = box.rig.client(box.user)
        raw = message(2, "hard", tag=box.user)
        t0 = time.monotonic()
        imap.append("INBOX", None, None, raw)
        imap.logout()
        while message_id(raw) not in box.stored_ids() and time.monotonic() - t0 < 10:
            time.sleep(0.02)
        waited = time.monotonic() - t0
        print(f"IDLE pick-up: {waited * 1000:.0f} ms")
        assert message_id(raw) in box.stored_ids()
        assert waited < 2.0, f"stored {waited:.2f} s after the append"
        events.wait("fetch", 10)
        proc.send_signal(signal.SIGTERM)
        events.wait("fetch_stop", 10)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert box.folders()["Bounces.Hard"] == {message_id(message(n, "hard", tag=box.user)) for n in (1, 2)}


def test_watch_reconnects_with_backoff_after_the_server_goes_away(box: Box) -> None:
    proxy = Proxy(box.rig.imaps, after=-1)  # relays everything until closed
    proc = subprocess.Popen(
        [BIN, *box.args("--watch", "--interval", "3600"), box.url(port=proxy.port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    events = Events(proc)
    try:
        events.wait("fetch_watching", 30)
        proxy.cut_all()  # the server "goes away" under the idling connection
        error = events.wait("fetch_error", 30)
        assert error["retry_in_s"] == 1.0 and "connection lost" in error["msg"]
        box.deliver([message(1, "soft", tag=box.user)])
        events.wait("fetch", 30)  # reconnected through the same proxy, first pass
        assert len(box.stored_ids()) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proxy.close()
        if proc.poll() is None:
            proc.kill()


# ------------------------------------------------------------------------------------- [fetch] and `run`


def _config(box: Box, tmp_path: Path, **extra: str) -> Path:
    cfg = tmp_path / "bouncemilter.toml"
    lines = [
        "[store]", f'db = "{box.db}"',
        "[fetch]", f'url = "{box.url()}"', f'password_file = "{box.pw}"', f'ca_file = "{box.rig.ca}"',
        *(f"{k} = {v}" for k, v in extra.items()),
        "[fetch.after]", 'unrecognised = "leave"',
    ]  # fmt: skip
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def test_config_section_drives_fetch(box: Box, tmp_path: Path) -> None:
    messages = mailbox(6, tag=box.user)
    box.deliver([raw for _, raw in messages])
    result = CliRunner().invoke(main, ["fetch", "--config", str(_config(box, tmp_path))])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("6 new")
    folders = box.folders()
    assert folders["INBOX"] == {message_id(r) for i, r in messages if i == "unrecognised"}  # [fetch.after]


def test_run_fetches_beside_the_milter(box: Box, tmp_path: Path) -> None:
    cfg = _config(box, tmp_path, enabled="true", interval="3600")
    with cfg.open("a") as fh:
        fh.write(f'[milter]\nsocket = "inet:{free_port()}@127.0.0.1"\n')
    box.deliver([message(1, "hard", tag=box.user)])
    proc = subprocess.Popen([BIN, "run", "--config", str(cfg)], stderr=subprocess.PIPE, text=True)
    events = Events(proc)
    try:
        assert events.wait("fetch", 30)["new"] == 1
        imap = box.rig.client(box.user)
        imap.append("INBOX", None, None, message(2, "complaint", tag=box.user))
        imap.logout()
        assert events.wait("fetch", 30)["new"] == 1  # IDLE, beside the milter
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(box.stored_ids()) == 2
    assert {e["event"] for e in events.lines} >= {"start", "fetch_start", "fetch"}
