"""Reading a big message by its MIME structure (classify/structure.py): report parts after big attachments are
found, streaming in any chunking gives the same copy, memory and output stay bounded; and a DSN with more
recipient groups than are read is marked truncated."""

from __future__ import annotations

import os

import Milter
from hypothesis import given, settings
from hypothesis import strategies as st

from bouncemilter.classify import classify
from bouncemilter.classify.mime import MAX_SCAN, parse_message
from bouncemilter.classify.structure import MAX_LINE, Skimmer, skim
from bouncemilter.suppressions import open_store

from . import test_milter
from .e2e import messages as M
from .e2e import signed_messages as S
from .test_milter import feed

setup = test_milter.setup
BIG = S.dsn_after_attachment("big", "henry@example.org", size=5 * 1024 * 1024)


def test_report_after_a_big_attachment_is_found() -> None:
    assert len(BIG) > 5 * MAX_SCAN
    result = classify(BIG)
    assert result.kind == "bounce" and [r.recipient for r in result.recipients] == ["henry@example.org"]
    assert result.recipients[0].status == "5.1.1" and result.recipients[0].hard
    assert result.original is not None and result.original.message_id == "<orig-big@test.example>"
    kept = skim(BIG)
    assert len(kept) < 4096  # the attachment's body is gone, its headers and every boundary stay
    assert b"Content-Type: application/pdf" in kept and kept.rstrip().endswith(b"--dsn-big--")


def test_streaming_in_chunks_gives_the_same_copy() -> None:
    whole = skim(BIG)
    for size in (1, 7, 4096, 65535):
        s = Skimmer()
        data = BIG[:200_000] + BIG[-3000:] if size < 100 else BIG  # 1-byte chunks over 50 MB would be slow
        for i in range(0, len(data), size):
            s.feed(data[i : i + size])
        assert s.result() == skim(data)
    assert whole == skim(BIG)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 3000), min_size=1, max_size=40), st.binary(max_size=3000))
def test_any_chunking_any_noise_same_copy_and_bounded(cuts: list[int], noise: bytes) -> None:
    data = M.hard_bounce("h").replace(b"Hello, this is the newsletter.", noise) + noise
    s = Skimmer(budget=4096)
    pos = 0
    for c in cuts:
        s.feed(data[pos : pos + c])
        pos += c
    s.feed(data[pos:])
    one = Skimmer(budget=4096)
    one.feed(data)
    assert s.result() == one.result()
    assert len(s.result()) <= 4096 + MAX_LINE


def test_done_after_the_report_and_the_next_part_headers() -> None:
    s = Skimmer()
    raw = M.big_bounce("d", size=3 * 1024 * 1024)  # report first, then the original, then 3 MB
    fed = 0
    while not s.done:
        s.feed(raw[fed : fed + 8192])
        fed += 8192
    assert fed < 64 * 1024 and s.report_done and not s.cut_report
    assert [r.recipient for r in classify(s.result()).recipients] == ["henry@example.org"]
    # with the report after the attachment, done comes only after the report
    s = Skimmer()
    s.feed(BIG[: len(BIG) - 2000])
    assert not s.done


def test_a_huge_line_without_newline_is_skipped_in_bounded_memory() -> None:
    raw = BIG.replace(b"base64\r\n\r\n", b"base64\r\n\r\n" + b"A" * 3_000_000, 1)
    s = Skimmer()
    for i in range(0, len(raw), 65536):
        s.feed(raw[i : i + 65536])
        assert len(s._partial) <= MAX_LINE
    assert [r.recipient for r in classify(s.result()).recipients] == ["henry@example.org"]


def test_gateway_wrapped_report_inside_an_attached_message_is_kept() -> None:
    inner = S.dsn_after_attachment("inner", "iris@example.org", size=2 * 1024 * 1024)
    raw = (
        b"From: postmaster@gateway.example\r\nTo: bounces@test.example\r\nSubject: Undeliverable: mail\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="outer"\r\n\r\n'
        b"--outer\r\nContent-Type: text/plain\r\n\r\nDelivery has failed.\r\n"
        b"--outer\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--outer--\r\n"
    )
    kept = skim(raw)
    assert b"Final-Recipient: rfc822; iris@example.org" in kept
    assert len(kept) < 8192


def test_a_report_longer_than_the_budget_is_cut_and_says_so() -> None:
    s = Skimmer(budget=8192)
    s.feed(S.dsn_many("c", 500))
    assert s.cut_report and len(s.result()) <= 8192


def test_small_messages_are_parsed_as_they_are() -> None:
    raw = M.hard_bounce("small")
    assert parse_message(raw).parts[1].body.replace(b"\n", b"") in raw.replace(b"\r\n", b"")


def test_dsn_with_more_recipient_groups_than_read_is_marked_truncated() -> None:
    result = classify(S.dsn_many("t", 3000))
    assert result.truncated and 2000 < len(result.recipients) < 3000
    # the first ones, in order, and none half-read
    assert [r.recipient for r in result.recipients[:3]] == [
        "user0@example.org",
        "user1@example.org",
        "user2@example.org",
    ]
    assert all(r.status == "5.1.1" and r.recipient.endswith("@example.org") for r in result.recipients)
    last = int(result.recipients[-1].recipient[4:].split("@")[0])
    assert last == len(result.recipients) - 1
    assert not classify(S.dsn_many("u", 100)).truncated
    assert classify(S.dsn_many("v", 3000)).as_dict()["truncated"] is True


def test_milter_finds_the_report_after_an_attachment_and_skips_after_a_report(setup) -> None:  # type: ignore[no-untyped-def]
    store, cap = setup()
    rc, ctx = feed(BIG)
    assert rc == Milter.ACCEPT
    ((meta, result, _),) = store.records
    assert [r.recipient for r in result.recipients] == ["henry@example.org"]
    assert meta.size >= len(BIG) - 10  # all of it was read (the report is at the end)
    assert cap.events("message")[0]["truncated"] is True
    assert ctx._priv._skim is None and ctx._priv._buf == bytearray()
    # the usual big bounce (report first) is still cut short: the MTA is told to skip the rest
    store, _ = setup()
    feed(M.big_bounce("sk", size=3 * 1024 * 1024))
    ((meta, result, _),) = store.records
    assert result.recipients[0].recipient == "henry@example.org"
    assert meta.size < 2 * MAX_SCAN


def test_a_skimmed_message_is_charged_what_it_holds_and_gives_it_back(setup) -> None:  # type: ignore[no-untyped-def]
    # the memory budget (issue #15) counts what a message holds: the buffer up to body_cap, then the skimmer's
    # kept copy (attachment bodies are not held), never the 5 MiB that went through
    from bouncemilter.classify.mime import MAX_HEADER_BYTES
    from bouncemilter.milter import BounceMilter, MemoryBudget

    class Peak(MemoryBudget):
        peak = 0

        def take(self, n: int, force: bool = False) -> bool:
            ok = super().take(n, force)
            self.peak = max(self.peak, self.used)
            return ok

    store, _ = setup()
    rt = BounceMilter.runtime
    rt.budget = Peak(limit=64 << 20, connection_cost=0)
    rc, _ = feed(BIG)
    assert rc == Milter.ACCEPT and [r.recipient for r in store.records[0][1].recipients] == ["henry@example.org"]
    assert rt.settings.body_cap // 2 < rt.budget.peak <= rt.settings.body_cap + MAX_LINE + MAX_HEADER_BYTES
    assert rt.budget.used == 0  # all of it given back at the end of the message
    # a budget that cannot hold body_cap defers the message (4.3.1) and keeps nothing
    store, cap = setup()
    rt = BounceMilter.runtime
    rt.budget = MemoryBudget(limit=rt.settings.body_cap // 2, connection_cost=0)
    rc, ctx = feed(BIG)
    assert rc == Milter.TEMPFAIL and ctx._reply[1] == "4.3.1" and store.records == []
    assert rt.budget.used == 0 and cap.events("memory_budget")


def test_milter_logs_and_stores_a_truncated_report(setup, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store, cap = setup()
    rc, _ = feed(S.dsn_many("lt", 3000))
    assert rc == Milter.ACCEPT
    ((_, result, _),) = store.records
    assert result.truncated
    (warn,) = cap.events("report_truncated")
    assert warn["level"] == "warning" and warn["recipients"] == len(result.recipients)
    assert cap.events("message")[0]["report_truncated"] is True


def test_store_keeps_the_truncated_flag(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bouncemilter.config import load_settings
    from bouncemilter.ingest import Envelope, ingest

    from .conftest import query_rows

    with open_store(str(tmp_path / "t.db")) as store:
        out = ingest(S.dsn_many("st", 3000), Envelope(), load_settings(None), store)
        (row,) = query_rows(store.path, "SELECT truncated, recipient_count FROM messages WHERE id = ?", (out.row_id,))
        assert row["truncated"] == 1 and row["recipient_count"] == len(out.classification.recipients)
    assert os.path.exists(tmp_path / "t.db")
