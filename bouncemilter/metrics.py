"""Prometheus metrics of the milter process ([metrics] in the configuration; off by default).

Exposed series (all prefixed ``bouncemilter_``):
- ``messages_total{kind, action}``: handled messages by classification and what the milter did
  (accept, discard, tempfail when the store failed).
- ``recipients_total{kind, reason, hard}``: affected addresses by kind and reason (hard: "true"/"false").
  The label values are bounded: kinds and the classifier's fixed reason list.
- ``processing_seconds``: histogram of classify + store time per message (the delay the milter adds at end
  of message).
- ``store_errors_total``: records that could not be committed (the MTA was told to retry).
- ``classifier_errors_total``: messages the classifier failed on (recorded as not_bounce with an error).
- ``signed_total``: outgoing messages whose return path was replaced by a signed one; ``verified_total`` and
  ``unverified_total``: recorded messages whose return path (or quoted original) did or did not prove that they
  answer mail we sent (signing on and verify not "off"); ``rejected_total``: recipients refused at RCPT with
  550 5.7.1 (verify = "reject"); ``dns_failures_total``: DNS checks of a hostunknown/notaccept claim that got no
  answer within [dns] timeout_ms or whose resolver failed (the bounce then counts as classified);
  ``sent_log_dropped_total``: sent-log rows not stored.
- ``memory_refused_total``: matched messages deferred (4xx) because the memory budget was exhausted;
  ``memory_budget_bytes``, ``memory_used_bytes`` (buffered messages plus connections) and ``connections``:
  the budget's state at the scrape.
plus the client library's process_* and python_* series.

The endpoint has no authentication, so it listens on loopback by default; `config` refuses other addresses
unless ``allow_remote = true`` (put a reverse proxy or a firewall in front then).
"""

from __future__ import annotations

import contextlib
import ipaddress
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .classify.model import Classification

# milliseconds to seconds: classify is ~0.1 ms, a store commit with fsync a few ms, a lock wait up to store.timeout
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def parse_listen(value: str) -> tuple[str, int]:
    """'127.0.0.1:9125', '[::1]:9125' or 'localhost:9125' -> (host, port); ValueError otherwise."""
    if not isinstance(value, str) or ":" not in value:
        raise ValueError(f"{value!r}: must be HOST:PORT, e.g. 127.0.0.1:9125 or [::1]:9125")
    host, _, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r}: must be HOST:PORT with a port between 0 and 65535")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: we cannot know where it resolves tomorrow


class Metrics:
    """The milter's counters on a private registry (so tests and embedders can make several)."""

    def __init__(self, registry: CollectorRegistry | None = None, process: bool = True) -> None:
        # local: config validation imports this module for parse_listen, and should not load the client library
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            GCCollector,
            Histogram,
            PlatformCollector,
            ProcessCollector,
        )

        self.registry = registry or CollectorRegistry()
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        r = self.registry
        self.messages = Counter(
            "bouncemilter_messages", "Messages handled, by kind and action", ["kind", "action"], registry=r
        )
        self.recipients = Counter(
            "bouncemilter_recipients", "Affected recipients, by kind, reason and hard", ["kind", "reason", "hard"],
            registry=r,
        )  # fmt: skip
        self.processing = Histogram(
            "bouncemilter_processing_seconds", "Classify and store time per message", buckets=BUCKETS, registry=r
        )
        self.store_errors = Counter("bouncemilter_store_errors", "Messages that could not be stored", registry=r)
        self.classifier_errors = Counter(
            "bouncemilter_classifier_errors", "Messages the classifier failed on", registry=r
        )
        self.signed = Counter("bouncemilter_signed", "Outgoing messages sent with a signed return path", registry=r)
        self.verified = Counter("bouncemilter_verified", "Recorded messages proven to answer our mail", registry=r)
        self.unverified = Counter(
            "bouncemilter_unverified", "Recorded messages not proven to answer our mail", registry=r
        )
        self.rejected = Counter(
            "bouncemilter_rejected", "Bounce recipients refused at RCPT (unsigned or bad token)", registry=r
        )
        self.dns_failures = Counter(
            "bouncemilter_dns_failures", "DNS checks that got no answer in time or failed (fail open)", registry=r
        )
        self.sent_log_dropped = Counter(
            "bouncemilter_sent_log_dropped", "Sent-log rows not stored (queue full or store error)", registry=r
        )
        self.memory_refusals = Counter(
            "bouncemilter_memory_refused", "Matched messages deferred (4xx) because of the memory budget", registry=r
        )
        self.server: Any = None

    def count(self, name: str, amount: float = 1) -> None:
        """Increment one of the plain counters by attribute name (signed, verified, ...). Never raises."""
        with contextlib.suppress(Exception):
            getattr(self, name).inc(amount)

    def track_budget(self, budget: Any) -> None:
        """Gauges read from the milter's MemoryBudget at each scrape (nothing to update on the message path)."""
        from prometheus_client import Gauge

        r = self.registry
        Gauge("bouncemilter_memory_budget_bytes", "The memory budget ([limits] memory)", registry=r).set_function(
            lambda: budget.limit
        )
        Gauge(
            "bouncemilter_memory_used_bytes", "Budgeted memory in use: buffered messages and connections", registry=r
        ).set_function(lambda: budget.used)
        Gauge("bouncemilter_connections", "MTA connections open", registry=r).set_function(lambda: budget.connections)

    def memory_refused(self) -> None:
        with contextlib.suppress(Exception):
            self.memory_refusals.inc()

    def observe(self, result: Classification, action: str, seconds: float, stored: bool = True) -> None:
        """One handled message. Never raises: a broken metric is not worth a TEMPFAIL."""
        with contextlib.suppress(Exception):
            self.processing.observe(max(seconds, 0.0))
            if not stored:
                self.store_errors.inc()
                action = "tempfail"
            if result.error:
                self.classifier_errors.inc()
            self.messages.labels(result.kind, action).inc()
            for r in result.recipients:
                self.recipients.labels(result.kind, r.reason or "none", "true" if r.hard else "false").inc()

    def start(self, listen: str) -> tuple[str, int]:
        """Serve /metrics on `listen` in a daemon thread; returns the bound (host, port) (port 0 = any free)."""
        from prometheus_client import start_http_server

        host, port = parse_listen(listen)
        started = start_http_server(port, addr=host, registry=self.registry)
        server = started[0] if isinstance(started, tuple) else started
        self.server = server
        bound = server.server_address if server is not None else (host, port)
        return host, int(bound[1])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
