"""The per-message path's counter and histogram shortcuts (metrics.counter, metrics.timer) leave exactly the
samples prometheus-client's own inc() and observe() leave."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Histogram

from mailwarden import metrics

BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
AMOUNTS = [0.0, 0.00005, 0.0001, 0.00010001, 0.0003, 0.0005, 0.001, 0.004, 0.01, 0.2, 1.0, 3.0, 10.0, 10.5, 1e9,
           math.inf, -1.0, math.nan]  # fmt: skip


def _samples(registry: CollectorRegistry) -> dict:
    out = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            key = (sample.name.split("_", 1)[1], tuple(sorted(sample.labels.items())))
            out[key] = "nan" if math.isnan(sample.value) else sample.value
    return out


def _pair() -> tuple[CollectorRegistry, CollectorRegistry]:
    return CollectorRegistry(), CollectorRegistry()


def test_counter_shortcut_counts_as_inc_does():
    public, fast = _pair()
    counters = [Counter(f"{name}_c", "c", ["check", "result"], registry=r) for name, r in (("p", public), ("f", fast))]
    plain = [Counter(f"{name}_plain", "c", registry=r) for name, r in (("p", public), ("f", fast))]
    for labels in [("dkim", "pass"), ("dkim", "pass"), ("spf", "fail"), ("dkim", "pass")]:
        counters[0].labels(*labels).inc()
        metrics.counter(counters[1], *labels)()
        plain[0].inc()
        metrics.counter(plain[1])()
    assert _samples(public) == _samples(fast)
    assert _samples(fast)[("c_total", (("check", "dkim"), ("result", "pass")))] == 3


def test_histogram_shortcut_observes_as_observe_does():
    public, fast = _pair()
    histograms = [Histogram(f"{name}_h", "h", ["stage"], buckets=BUCKETS, registry=r).labels("eom")
                  for name, r in (("p", public), ("f", fast))]  # fmt: skip
    observe = metrics.timer(histograms[1])
    for amount in AMOUNTS:
        histograms[0].observe(amount)
        observe(amount)
        assert _samples(public) == _samples(fast), amount


def test_shortcuts_fall_back_to_the_public_methods():
    class Opaque:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def inc(self, amount: float = 1) -> None:
            self.seen.append(amount)

        def observe(self, amount: float) -> None:
            self.seen.append(amount)

    target = Opaque()
    metrics.counter(target)()  # type: ignore[arg-type]
    metrics.timer(target)(0.5)  # type: ignore[arg-type]
    assert target.seen == [1, 0.5]
