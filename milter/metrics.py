"""Prometheus metrics: what mailwarden decided and what it cost. Served only when [metrics] address is set."""

from __future__ import annotations

import functools

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics import MetricWrapperBase

CHECK_RESULTS = Counter("mailwarden_check_results", "Check results", ["check", "result"])
CHECKS_SKIPPED = Counter("mailwarden_checks_skipped", "Transactions whose checks were skipped", ["reason"])
ACTIONS = Counter("mailwarden_actions", "Policy actions per recipient", ["action", "key"])
FORGED_AR_REMOVED = Counter("mailwarden_forged_ar_removed", "Incoming Authentication-Results claiming our id")
BOUNCES = Counter("mailwarden_bounces", "Failed recipients labelled in bounces", ["category", "type"])
DNS_QUERIES = Counter("mailwarden_dns_queries", "DNS queries sent on the wire")
DNS_CACHE_HITS = Counter("mailwarden_dns_cache_hits", "DNS lookups answered from the cache")
VERDICT_CACHE_HITS = Counter("mailwarden_verdict_cache_hits", "Check results reused while their DNS answers were valid")
DNS_TIMEOUTS = Counter("mailwarden_dns_timeouts", "DNS queries that timed out or ran out of budget")
DNS_ERRORS = Counter("mailwarden_dns_errors", "DNS answers that were errors (SERVFAIL, REFUSED, garbage, loops)")
DNS_TLS_CONNECTIONS = Counter("mailwarden_dns_tls_connections", "DNS-over-TLS connections opened (a handshake each)")
RELOADS = Counter("mailwarden_reloads", "SIGHUP reloads", ["outcome"])
EVENTS_STORED = Counter("mailwarden_events_stored", "Bounce events committed to the store")
EVENTS_PUBLISHED = Counter("mailwarden_events_published", "Bounce events a sink took (broker confirmed, webhook 2xx)",
                           ["sink"])  # fmt: skip
EVENTS_FAILED = Counter("mailwarden_events_failed", "Bounce events lost: not stored, or refused for good by a sink",
                        ["stage"])  # fmt: skip
SUPPRESSED = Counter("mailwarden_suppressed", "Addresses put on the suppression list", ["reason"])
STORE_UP = Gauge("mailwarden_store_up", "1 while the event store can be written, 0 after a failure")
OUTBOX_DEPTH = Gauge("mailwarden_outbox_depth", "Stored events a sink has not taken yet", ["sink"])
OUTBOX_OLDEST = Gauge("mailwarden_outbox_oldest_seconds", "Age of the oldest event a sink has not taken", ["sink"])
SINK_UP = Gauge("mailwarden_sink_up", "1 while a sink (amqp, webhook) takes events, 0 while it is down", ["sink"])
SESSIONS_OPEN = Gauge("mailwarden_sessions_open", "SMTP sessions the milter is serving now")
STAGE_SECONDS = Histogram(
    "mailwarden_stage_seconds",
    "Time spent in each milter callback",
    ["stage"],
    buckets=(0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


@functools.lru_cache(maxsize=1024)
def child(metric: MetricWrapperBase, *labels: str) -> MetricWrapperBase:
    """A metric's labelled child, looked up once: labels() takes a lock and validates on every call, and the
    checks' results and actions are a handful of values seen on every message."""
    return metric.labels(*labels)


def serve(address: str) -> None:
    """Expose /metrics on host:port (a background thread of prometheus-client)."""
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host.strip("[]"))
