"""Prometheus metrics: observed results, scraped over loopback; the [metrics] settings."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bouncemilter import classify
from bouncemilter.config import ConfigError, Settings, load_settings
from bouncemilter.metrics import Metrics, is_loopback, parse_listen
from tests.report_db import EVENTS


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def metrics():
    m = Metrics()
    yield m
    m.stop()


def test_endpoint_scraped_over_loopback(metrics: Metrics) -> None:
    for _, raw in EVENTS:  # 10 bounces (7 hard), 2 complaints, a delay, an auto-reply, an ordinary message
        metrics.observe(classify(raw), "accept", 0.002)
    metrics.observe(classify(EVENTS[0][1]), "accept", 0.2, stored=False)  # the store failed: TEMPFAIL
    host, port = metrics.start("127.0.0.1:0")  # an ephemeral port
    assert host == "127.0.0.1" and port > 0
    got = scrape(port)
    m = "bouncemilter_messages_total"
    assert got[(m, (("action", "accept"), ("kind", "bounce")))] == 10
    assert got[(m, (("action", "tempfail"), ("kind", "bounce")))] == 1
    assert got[(m, (("action", "accept"), ("kind", "complaint")))] == 2
    assert got[(m, (("action", "accept"), ("kind", "not_bounce")))] == 1
    r = "bouncemilter_recipients_total"
    assert got[(r, (("hard", "true"), ("kind", "bounce"), ("reason", "userunknown")))] == 7
    assert got[(r, (("hard", "false"), ("kind", "bounce"), ("reason", "blocked")))] == 2
    assert got[(r, (("hard", "false"), ("kind", "complaint"), ("reason", "feedback")))] == 2
    assert got[("bouncemilter_store_errors_total", ())] == 1
    assert got[("bouncemilter_classifier_errors_total", ())] == 0
    assert got[("bouncemilter_processing_seconds_count", ())] == 16
    assert got[("bouncemilter_processing_seconds_bucket", (("le", "0.0025"),))] == 15
    assert got[("bouncemilter_processing_seconds_sum", ())] == pytest.approx(15 * 0.002 + 0.2)
    assert any(name.startswith("process_") for name, _ in got)  # the process collector is registered


def test_counters_move_between_scrapes(metrics: Metrics) -> None:
    _, port = metrics.start("127.0.0.1:0")
    key = ("bouncemilter_messages_total", (("action", "discard"), ("kind", "auto_reply")))
    assert key not in scrape(port)
    metrics.observe(classify(EVENTS[8][1]), "discard", 0.001)
    assert scrape(port)[key] == 1


def test_two_instances_do_not_collide() -> None:
    a, b = Metrics(process=False), Metrics(process=False)  # private registries: no "Duplicated timeseries"
    a.observe(classify(EVENTS[0][1]), "accept", 0.001)
    assert a.messages.labels("bounce", "accept")._value.get() == 1
    assert b.messages.labels("bounce", "accept")._value.get() == 0


def test_observe_never_raises(metrics: Metrics) -> None:
    metrics.observe(None, "accept", 0.1)  # type: ignore[arg-type]  # a bug elsewhere must not cost a message


def test_listen_parsing() -> None:
    assert parse_listen("127.0.0.1:9125") == ("127.0.0.1", 9125)
    assert parse_listen("[::1]:9125") == ("::1", 9125)
    assert parse_listen("localhost:0") == ("localhost", 0)
    for bad in ("9125", "127.0.0.1:", ":9125", "127.0.0.1:99999", "127.0.0.1:http"):
        with pytest.raises(ValueError):
            parse_listen(bad)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.1.2.3") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1") and not is_loopback("metrics.example.com")


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "b.toml"
    path.write_text(text)
    return str(path)


def test_settings(tmp_path: Path) -> None:
    assert (Settings().metrics_enabled, Settings().metrics_listen) == (False, "127.0.0.1:9125")
    s = load_settings(write(tmp_path, '[metrics]\nenabled = true\nlisten = "[::1]:9300"\n'))
    assert s.metrics_enabled and s.metrics_listen == "[::1]:9300"
    with pytest.raises(ConfigError, match=r"metrics\.listen: '0\.0\.0\.0:9125' is not a loopback address"):
        load_settings(write(tmp_path, '[metrics]\nenabled = true\nlisten = "0.0.0.0:9125"\n'))
    s = load_settings(write(tmp_path, '[metrics]\nenabled = true\nlisten = "0.0.0.0:9125"\nallow_remote = true\n'))
    assert s.metrics_allow_remote
    with pytest.raises(ConfigError, match=r"metrics\.listen: .*HOST:PORT"):
        load_settings(write(tmp_path, '[metrics]\nlisten = "9125"\n'))
    with pytest.raises(ConfigError, match=r"metrics\.port: unknown key"):
        load_settings(write(tmp_path, "[metrics]\nport = 9125\n"))


def test_milter_observes_each_message(metrics: Metrics) -> None:
    """The milter's end of message counts the result, and a store failure (TEMPFAIL) as a store error."""
    import logging

    import Milter
    from Milter import testctx

    from bouncemilter.milter import BounceMilter, Runtime
    from bouncemilter.store import StoreError
    from bouncemilter.verp import BounceMatcher
    from tests.test_milter import FakeStore, feed

    settings = load_settings(None, {"bounce_addresses": ["bounces@test.example"]})
    logger = logging.getLogger("bouncemilter.test.metrics")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False

    def install(store: FakeStore) -> None:
        BounceMilter.runtime = Runtime(
            settings=settings, matcher=BounceMatcher(settings.bounce_addresses), store=store, logger=logger,
            metrics=metrics,
        )  # fmt: skip
        Milter.factory = BounceMilter
        testctx.TestCtx.default_opts = [Milter.CURR_ACTS, 0x1FFFFF, 0, 0]

    try:
        install(FakeStore())
        assert feed(EVENTS[0][1])[0] == Milter.ACCEPT  # a hard bounce
        assert feed(EVENTS[6][1])[0] == Milter.ACCEPT  # a complaint
        install(FakeStore(fail=StoreError("disk full")))
        assert feed(EVENTS[1][1])[0] == Milter.TEMPFAIL
    finally:
        BounceMilter.runtime = None
    _, port = metrics.start("127.0.0.1:0")
    got = scrape(port)
    m = "bouncemilter_messages_total"
    assert got[(m, (("action", "accept"), ("kind", "bounce")))] == 1
    assert got[(m, (("action", "accept"), ("kind", "complaint")))] == 1
    assert got[(m, (("action", "tempfail"), ("kind", "bounce")))] == 1
    assert got[("bouncemilter_store_errors_total", ())] == 1
    assert got[("bouncemilter_processing_seconds_count", ())] == 3
    assert (
        got[("bouncemilter_recipients_total", (("hard", "true"), ("kind", "bounce"), ("reason", "userunknown")))] == 2
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_running_milter_serves_metrics(tmp_path: Path) -> None:
    """`bouncemilter run` with [metrics] enabled: one bounce over the milter protocol, then a scrape."""
    import signal
    import subprocess
    import sys

    from tests.test_milter import _session_to_data, _step, _unfold

    mt = pytest.importorskip("miltertest")
    C = mt.constants
    sock_path = tmp_path / "milter.sock"
    port = _free_port()
    conf = write(tmp_path, f'[metrics]\nenabled = true\nlisten = "127.0.0.1:{port}"\n')
    log = open(tmp_path / "log", "wb")  # noqa: SIM115 - the child writes it until the end of the test
    proc = subprocess.Popen(
        [sys.executable, "-m", "bouncemilter.cli", "run", "--config", conf, "--socket", f"unix:{sock_path}",
         "--db", str(tmp_path / "b.db"), "--bounce-address", "bounces@test.example"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    try:
        conn, proto, s = _session_to_data(sock_path, "QMET1")
        head, _, body = EVENTS[0][1].partition(b"\r\n\r\n")
        for line in _unfold(head):
            name, _, value = line.decode().partition(":")
            _step(conn, proto, C.SMFIC_HEADER, name=name, value=value.strip())
        _step(conn, proto, C.SMFIC_EOH)
        _step(conn, proto, C.SMFIC_BODY, buf=body.decode())
        assert conn.send_eom()[-1][0] == C.SMFIR_ACCEPT
        s.close()
        got = scrape(port)
        assert got[("bouncemilter_messages_total", (("action", "accept"), ("kind", "bounce")))] == 1
        assert got[("bouncemilter_processing_seconds_count", ())] == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_metrics_port_in_use_stops_the_start(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        conf = write(tmp_path, f'[metrics]\nenabled = true\nlisten = "127.0.0.1:{port}"\n')
        out = subprocess.run(
            [sys.executable, "-m", "bouncemilter.cli", "run", "--config", conf, "--socket",
             f"unix:{tmp_path / 'm.sock'}", "--db", str(tmp_path / "b.db")],
            capture_output=True, text=True, timeout=30, cwd=tmp_path,
        )  # fmt: skip
    assert out.returncode == 1
    assert "start_failed" in out.stderr and f"127.0.0.1:{port}" in out.stderr
