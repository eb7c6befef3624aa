"""A fleet: two private Postfix instances (two MX hosts), each with its own milter, one PostgreSQL.

- 200 bounces split across them, 30 of them also sent to the other MX (a retry reaching another MX): every
  bounce is stored once, the suppression list is exactly the addresses that bounced hard, nothing is lost.
- PostgreSQL stopped mid-run: the SMTP clients get 4xx (the milters answer TEMPFAIL within [store] timeout);
  started again, the clients retry and the queues are flushed: the counts are exactly right.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bouncemilter.cli import main
from tests.pg_rig import PgServer, bin_dir

from ..conftest import query_rows
from . import messages as M
from .conftest import BOUNCES, E2E, MilterProc
from .postfix_rig import Rig, postfix_available


class Fleet:
    def __init__(self, base: Path, pg: PgServer, url: str, mxs: list[E2E]) -> None:
        self.base, self.pg, self.url, self.mxs = base, pg, url, mxs

    def count(self, sql: str) -> int:
        return int(query_rows(self.url, sql)[0][0])


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    reason = postfix_available()
    if reason:
        pytest.skip(f"end-to-end tests need a local Postfix: {reason}")
    if bin_dir() is None:
        pytest.skip("PostgreSQL is not installed (tests/run.sh installs it)")
    base = Path(tempfile.mkdtemp(prefix="bm-fleet-", dir="/tmp"))
    base.chmod(0o755)
    pg = PgServer()
    url = pg.new_schema()
    mxs: list[E2E] = []
    try:
        for name in ("mx1", "mx2"):
            root = base / name
            (root / "milter").mkdir(parents=True, mode=0o755)
            root.chmod(0o755)
            milter = MilterProc(root)
            milter.db = url  # type: ignore[assignment]  # every milter writes to the one PostgreSQL
            milter.start()
            rig = Rig(root / "pf", milter=f"unix:{milter.sock}")
            rig.start()
            mxs.append(E2E(root, rig, milter))
        yield Fleet(base, pg, url, mxs)
    finally:
        for mx in mxs:
            mx.rig.stop()
            mx.milter.stop()
        pg.close()
        shutil.rmtree(base, ignore_errors=True)


def _send_all(jobs: list[tuple[E2E, bytes]]) -> list[tuple[int, str]]:
    """Send every (mx, message) with one SMTP client per MX at the same time; the replies in job order."""
    replies: list[tuple[int, str]] = [(0, "")] * len(jobs)
    errors: list[BaseException] = []

    def client(mx: E2E) -> None:
        try:
            for i, (target, raw) in enumerate(jobs):
                if target is mx:
                    code, text, _ = mx.send("", [BOUNCES], raw)
                    replies[i] = (code, text)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(mx,)) for mx in {id(j[0]): j[0] for j in jobs}.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    return replies


def _suppressed(url: str) -> set[str]:
    res = CliRunner().invoke(main, ["suppressed", "--db", url, "--format", "json"])
    assert res.exit_code == 0, res.output
    return {r["address"] for r in json.loads(res.output)}


def test_two_mx_hosts_one_postgresql_store_each_bounce_once(fleet: Fleet) -> None:
    mx1, mx2 = fleet.mxs
    run = int(time.time() * 1000) % 10**8
    bounces = [(n, M.hard_bounce(f"fleet-{run}-{n}", recipient=f"user{n % 150}@example.org")) for n in range(200)]
    jobs = [(mx1 if n % 2 else mx2, raw) for n, raw in bounces]
    # a retry of the same bounce reaching the other MX: the identical message to both
    jobs += [(mx2 if n % 2 else mx1, raw) for n, raw in bounces[:30]]
    replies = _send_all(jobs)
    assert all(code == 250 for code, _ in replies), [r for r in replies if r[0] != 250][:3]
    for mx in fleet.mxs:
        mx.wait_queue(60)
    assert fleet.count(f"SELECT COUNT(*) FROM messages WHERE message_id LIKE '%fleet-{run}-%'") == 200
    assert fleet.count("SELECT COUNT(DISTINCT message_id) FROM messages") == fleet.count(
        "SELECT COUNT(*) FROM messages"
    )
    assert _suppressed(fleet.url) == {f"user{n}@example.org" for n in range(150)}
    # every bounce counted as evidence: nothing lost between the two hosts' concurrent updates
    evidence = query_rows(fleet.url, "SELECT evidence FROM suppressions WHERE state = 'suppressed'")
    assert sum(len(json.loads(r[0])) for r in evidence) == 200


def test_postgresql_down_mid_run_tempfails_then_the_retries_are_stored_exactly_once(fleet: Fleet) -> None:
    mx1, mx2 = fleet.mxs
    run = int(time.time() * 1000) % 10**8
    before = fleet.count("SELECT COUNT(*) FROM messages")
    first = [M.hard_bounce(f"down-{run}-{n}", recipient=f"down{n}@example.org") for n in range(20)]
    second = [M.hard_bounce(f"down-{run}-{n}", recipient=f"down{n}@example.org") for n in range(20, 60)]
    assert all(code == 250 for code, _ in _send_all([(mx1 if n % 2 else mx2, r) for n, r in enumerate(first)]))
    fleet.pg.stop("fast")
    try:
        replies = _send_all([(mx1 if n % 2 else mx2, r) for n, r in enumerate(second)])
        # nothing acknowledged while the store is down: every client got 4xx and keeps its message
        assert all(400 <= code < 500 for code, _ in replies), replies[:3]
        # the milter's own TEMPFAIL (not pymilter's answer to a callback that failed)
        assert all("4.3.0" in text and "untrapped" not in text for _, text in replies), replies[:3]
    finally:
        fleet.pg.start()
    # the clients retry, Postfix flushes its queues; the milters reconnect by themselves
    deadline = time.monotonic() + 60
    pending = [(mx1 if n % 2 else mx2, r) for n, r in enumerate(second)]
    while pending:
        replies = _send_all(pending)
        pending = [job for job, (code, _) in zip(pending, replies, strict=True) if code != 250]
        assert time.monotonic() < deadline, replies[:3]
        if pending:
            time.sleep(0.5)
    # a retry that was in flight when the server stopped, resent: still once
    assert all(code == 250 for code, _ in _send_all([(mx2, second[0]), (mx1, second[1])]))
    for mx in fleet.mxs:
        mx.rig.flush()
        mx.wait_queue(60)
    assert fleet.count(f"SELECT COUNT(*) FROM messages WHERE message_id LIKE '%down-{run}-%'") == 60
    assert fleet.count("SELECT COUNT(*) FROM messages") - before == 60
    assert {f"down{n}@example.org" for n in range(60)} <= _suppressed(fleet.url)
