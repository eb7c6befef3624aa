"""The suppression commands against a real database: hand-written reports -> classify() -> Store.record()."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter import classify
from bouncemilter.cli import main
from bouncemilter.store import MessageMeta
from bouncemilter.suppressions import fmt_time, open_store
from tests import report_db

NOW = datetime.now(UTC).replace(microsecond=0)
# The two bounces of the first soft day must fall on one UTC day whatever the time of day the test runs:
# "4.9 days ago" crossed midnight when the suite ran after 21:36 UTC.
FIRST_DAY = (NOW - timedelta(days=5)).replace(hour=1)


def dsn(n: int, rcpt: str, status: str, diagnostic: str, action: str = "failed") -> bytes:
    return report_db.dsn(n, rcpt, status, diagnostic, "mail.example.org", action)


arf = report_db.complaint
auto_reply = report_db.vacation


# (days ago, message)
HISTORY: list[tuple[float, bytes]] = [
    (40, dsn(1, "dead@example.org", "5.1.1", "550 5.1.1 <dead@example.org>: Recipient address rejected: User unknown")),
    (
        (NOW - FIRST_DAY).total_seconds() / 86400,
        dsn(2, "full@example.org", "4.2.2", "452 4.2.2 <full@example.org>: Mailbox full, quota exceeded"),
    ),
    (
        (NOW - FIRST_DAY).total_seconds() / 86400 - 2 / 24,
        dsn(3, "full@example.org", "4.2.2", "452 4.2.2 <full@example.org>: Mailbox full, quota exceeded"),
    ),
    (3, dsn(4, "full@example.org", "5.2.2", "552 5.2.2 Mailbox full")),
    (1, dsn(5, "full@example.org", "5.2.2", "552 5.2.2 Mailbox full")),
    *[
        (d, dsn(10 + d, "ok@example.org", "5.7.1", "554 5.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org"))
        for d in range(1, 6)
    ],
    (
        2,
        dsn(
            20,
            "ok@example.org",
            "5.7.1",
            "550 5.7.1 Unauthenticated email is not accepted due to domain's DMARC policy",
        ),
    ),
    (2, dsn(21, "late@example.org", "4.4.1", "421 4.4.1 Connection timed out", action="delayed")),
    (2, arf(22, "angry@example.org")),
    (2, auto_reply(23, "gina@example.org")),
]


def build_db(path: Path | str) -> Path | str:
    with open_store(str(path)) as store:
        for n, (days_ago, raw) in enumerate(HISTORY):
            result = classify(raw)
            assert result.kind in ("bounce", "delay", "complaint", "auto_reply"), result
            sender = "gina@example.org" if result.kind == "auto_reply" else ""
            meta = MessageMeta(
                queue_id=f"Q{n}",
                client_addr="192.0.2.20",
                client_name="mx.example.net",
                helo="mx.example.net",
                envelope_from=sender,
                bounce_addresses=["bounces@example.com"],
                verp_recipients=[""],
                message_id=f"<m{n}@mx.example.net>",
                size=len(raw),
                processing_ms=0.1,
                received_at=fmt_time(NOW - timedelta(days=days_ago)),
            )
            store.record(meta, result, "accept")
    return path


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_db(tmp_path_factory.mktemp("db") / "template.db")


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The history in a SQLite file (a copy of the module's template), then in PostgreSQL (built afresh)."""
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        build_db(url)
        return url
    template_db = request.getfixturevalue("template_db")
    path = tmp_path / "bounces.db"
    path.write_bytes(template_db.read_bytes())  # the store checkpoints on close: one file is the whole database
    return str(path)


def run(*args: str, ok: bool = True) -> str:
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    return res.output if ok else f"{res.exit_code}\n{res.output}"


def suppressed_json(db: str, *extra: str) -> dict[str, dict]:
    return {r["address"]: r for r in json.loads(run("suppressed", "--db", db, "--format", "json", *extra))}


def test_suppressed_applies_every_rule(db: str) -> None:
    rows = suppressed_json(db)
    assert set(rows) == {"dead@example.org", "full@example.org", "angry@example.org"}
    assert rows["dead@example.org"]["category"] == "hard" and rows["dead@example.org"]["reason"] == "userunknown"
    assert rows["full@example.org"]["category"] == "soft" and rows["full@example.org"]["soft_score"] == 3
    assert len(rows["full@example.org"]["evidence"]) == 4  # two on the first day: evidence, one count
    assert rows["angry@example.org"]["category"] == "complaint"


def test_since(db: str) -> None:
    assert set(suppressed_json(db, "--since", "7d")) == {"full@example.org", "angry@example.org"}
    assert set(suppressed_json(db, "--since", "36h")) == {"full@example.org"}
    day = (NOW - timedelta(days=60)).date().isoformat()
    assert len(suppressed_json(db, "--since", day)) == 3
    assert "use 24h" in run("suppressed", "--db", db, "--since", "yesterday", ok=False)


def test_table_and_csv(db: str) -> None:
    table = run("suppressed", "--db", db)
    assert "hard bounce (userunknown 5.1.1)" in table and "3 suppressed address(es)" in table
    rows = list(csv.DictReader(io.StringIO(run("suppressed", "--db", db, "--format", "csv"))))
    assert {r["address"] for r in rows} == {"dead@example.org", "full@example.org", "angry@example.org"}
    assert {r["evidence_count"] for r in rows if r["address"] == "full@example.org"} == {"4"}


def test_postfix_format(db: str) -> None:
    lines = [x for x in run("suppressed", "--db", db, "--format", "postfix").splitlines() if not x.startswith("#")]
    assert lines[0].split("\t")[0] == "angry@example.org"
    assert lines[1].startswith("dead@example.org\tREJECT 5.1.1 Recipient suppressed: hard bounce (userunknown 5.1.1)")
    assert len(lines) == 3


def test_history_shows_evidence_and_verdicts(db: str) -> None:
    data = json.loads(run("history", "--db", db, "--format", "json", "full@example.org"))
    assert data["suppression"]["state"] == "suppressed"
    counted = [e["counted"] for e in data["events"]]
    assert counted == [True, False, True, True]  # the second bounce of the first day does not count
    assert all(e["evidence"] for e in data["events"][:3])
    assert data["events"][0]["remote_mta"] == "mail.example.org" and data["events"][0]["status"] == "4.2.2"
    assert "Mailbox full" in data["events"][0]["diagnostic"]

    ok = json.loads(run("history", "--db", db, "--format", "json", "ok@example.org"))
    assert ok["suppression"] is None and len(ok["events"]) == 6
    assert {e["reason"] for e in ok["events"]} == {"blocked", "authfailure"}
    assert not any(e["counted"] for e in ok["events"])
    assert all("sender's problem" in e["verdict"] for e in ok["events"])

    table = run("history", "--db", db, "ok@example.org")
    assert "ok@example.org: not suppressed" in table and "sender's problem (blocked)" in table
    late = json.loads(run("history", "--db", db, "--format", "json", "late@example.org"))
    assert late["events"][0]["kind"] == "delay" and late["events"][0]["verdict"] == "delay: never counts"


def test_manual_changes_survive_rebuild(db: str, tmp_path: Path) -> None:
    out = run("unsuppress", "--db", db, "dead@example.org", "--reason", "mailbox restored", "--by", "ann")
    assert "dead@example.org: unsuppressed" in out
    run("suppress", "--db", db, "<VIP@Example.org>", "--reason", "asked to stop", "--by", "bob")
    assert json.loads(run("rebuild-suppressions", "--db", db, "--format", "json"))["manual"] == 1
    rows = suppressed_json(db)
    assert set(rows) == {"full@example.org", "angry@example.org", "vip@example.org"}
    assert rows["vip@example.org"]["manual_by"] == "bob"
    hist = run("history", "--db", db, "dead@example.org")
    assert "unsuppressed by ann" in hist and "before the manual unsuppression" in hist
    assert "unsuppress (manual by ann) mailbox restored" in hist

    # a policy change in the config, applied to the history
    conf = tmp_path / "strict.toml"
    conf.write_text(f'[store]\ndb = "{db}"\n\n[policy]\nsoft_threshold = 5\ncomplaints = false\n')
    counts = json.loads(run("rebuild-suppressions", "--config", str(conf), "--format", "json"))
    assert counts["removed"] == 2
    assert set(suppressed_json(db)) == {"vip@example.org"}


def test_errors(db: str, tmp_path: Path) -> None:
    assert "no such database" in run("suppressed", "--db", str(tmp_path / "nope.db"), ok=False)
    assert "not an email address" in run("suppress", "--db", db, "not an address", ok=False)
    bad = tmp_path / "bad.toml"
    bad.write_text("[policy]\nsoft_threshold = 0\n")
    assert "policy.soft_threshold" in run("suppressed", "--config", str(bad), ok=False)
    bad.write_text('[policy]\nsender_reasons = ["spam"]\n')
    assert "unknown reason" in run("suppressed", "--config", str(bad), ok=False)


def test_null_sender_mail_to_another_address_never_suppresses(db: str) -> None:
    # A DSN about an employee's own mail (MAIL FROM:<> to staff@, no bounce address): observed at most.
    raw = dsn(30, "friend@example.net", "5.1.1", "550 5.1.1 <friend@example.net>: User unknown")
    meta = MessageMeta("Q30", "192.0.2.20", "mx", "mx", "", [], [""], "<m30@mx>", len(raw), 0.1)
    with open_store(db) as store:
        store.record(meta, classify(raw), "accept")
    assert "friend@example.net" not in suppressed_json(db)
    data = json.loads(run("history", "--db", db, "--format", "json", "friend@example.net"))
    assert data["events"][0]["reason"] == "userunknown" and data["events"][0]["counted"] is False
    assert "not sent to a bounce address" in data["events"][0]["verdict"]
    assert data["policy_would_suppress"] is False
    # nor after a rebuild, which also lifts what an older version suppressed from such mail
    run("suppress", "--db", db, "friend@example.net")
    run("unsuppress", "--db", db, "friend@example.net")
    counts = json.loads(run("rebuild-suppressions", "--db", db, "--format", "json"))
    assert "friend@example.net" not in suppressed_json(db) and counts["added"] == 0


def test_recorded_since_filters_by_when_we_listed_the_address(db: str) -> None:
    # The store was built just now from evidence up to 40 days old (like an import): by the evidence's date
    # only two are recent, but all three were put on the list in the last hour.
    assert set(suppressed_json(db, "--since", "7d")) == {"full@example.org", "angry@example.org"}
    assert len(suppressed_json(db, "--recorded-since", "1h")) == 3
    assert suppressed_json(db, "--recorded-since", "2099-01-01") == {}
    assert set(suppressed_json(db, "--recorded-since", "1h", "--since", "36h")) == {"full@example.org"}
    assert len(suppressed_json(db, "--since", "all")) == 3
    out = run("suppressed", "--db", db, "--recorded-since", "yesterday", ok=False)
    assert out.startswith("2\n") and "all" in out and "2w" in out


def test_bulk_suppress_from_stdin_in_one_transaction(db: str) -> None:
    addresses = [f"user{n}@list.example.com" for n in range(5000)]
    text = "# unsubscribed at the old ESP\n" + "\n".join(addresses) + "\n\nUSER1@list.example.com\n"
    res = CliRunner().invoke(main, ["suppress", "--db", db, "-", "--reason", "old ESP", "--by", "ann"], input=text)
    assert res.exit_code == 0, res.output
    assert res.output.strip() == "5000 suppressed, 0 already suppressed by hand (reason updated)"
    rows = suppressed_json(db)
    assert len(rows) == 5003 and rows["user4999@list.example.com"]["manual_by"] == "ann"
    assert rows["user0@list.example.com"]["reason"] == "old ESP"
    # one bad line: nothing is saved, unless asked to skip it
    bad = "new1@list.example.com\nnot an address\nnew2@list.example.com\n"
    res = CliRunner().invoke(main, ["suppress", "--db", db, "-"], input=bad)
    assert res.exit_code == 1 and "line 2" in res.output and "nothing saved" in res.output
    assert "new1@list.example.com" not in suppressed_json(db)
    res = CliRunner().invoke(main, ["suppress", "--db", db, "-", "--skip-invalid"], input=bad)
    assert res.exit_code == 0 and res.output.strip().endswith("1 invalid line(s) left out")
    assert {"new1@list.example.com", "new2@list.example.com"} <= set(suppressed_json(db))
