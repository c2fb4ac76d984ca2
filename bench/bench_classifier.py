"""Benchmark of the bounce classifier (not a test): throughput, latency, model size, memory.

    .venv/bin/python bench/bench_classifier.py [--rounds 5]

Parse+classify runs BounceClassifier.analyse over every corpus message; "classifier alone" runs the ONNX
model on one prepared model text at a time (the per-recipient cost inside analyse).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from pathlib import Path

from mailwarden.classifier import BounceClassifier, default_model_path
from mailwarden.classifier.report import reported_findings

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "dsn-corpus" / "eml"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(fn, items, rounds: int) -> list[list[float]]:
    """Durations per round, each a list in item order."""
    durations = []
    for _ in range(rounds):
        this_round = []
        for item in items:
            start = time.perf_counter()
            fn(item)
            this_round.append(time.perf_counter() - start)
        durations.append(this_round)
    return durations


def line(name: str, rounds: list[list[float]]) -> str:
    """All calls, and the per-item best of the rounds: on a shared machine the first shows the tail that other
    processes cause, the second the cost of the item itself."""
    durations = [d for r in rounds for d in r]
    best = [min(per_item) for per_item in zip(*rounds, strict=True)]
    return (f"{name:<28} n={len(durations):>6}  {len(durations) / sum(durations):>9.0f}/s  "
            f"p50 {percentile(durations, 0.5) * 1e6:>7.1f} µs  p99 {percentile(durations, 0.99) * 1e6:>7.1f} µs  "
            f"mean {statistics.fmean(durations) * 1e6:>7.1f} µs | best of {len(rounds)}: "
            f"p50 {percentile(best, 0.5) * 1e6:>7.1f} µs  p99 {percentile(best, 0.99) * 1e6:>7.1f} µs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    messages = [path.read_bytes() for path in sorted(CORPUS.glob("*.eml"))]
    started = time.perf_counter()
    classifier = BounceClassifier.load()
    load_ms = (time.perf_counter() - started) * 1e3
    findings = [f for raw in messages for f in reported_findings(raw)[1]]
    model = classifier._model
    for raw in messages[:20]:  # warm-up
        classifier.analyse(raw)
    print(f"corpus: {len(messages)} messages, {len(findings)} recipients; model {classifier.model_id}, "
          f"{default_model_path().stat().st_size / 1024:.0f} KiB, loaded in {load_ms:.0f} ms")
    bounces = [raw for raw in messages if classifier.analyse(raw).bounce]
    print(line("parse+classify (all)", timed(classifier.analyse, messages, args.rounds)))
    print(line("parse+classify (DSNs only)", timed(classifier.analyse, bounces, args.rounds)))
    print(line("parse+extract only", timed(reported_findings, messages, args.rounds)))
    print(line("classifier alone, per recipient", timed(lambda f: model.predict([f]), findings, args.rounds)))
    batch = timed(lambda _: model.predict(findings), range(20), 1)[0]
    print(f"classifier batched: {len(findings) * len(batch) / sum(batch):.0f} recipients/s "
          f"({sum(batch) / len(batch) / len(findings) * 1e6:.1f} µs per recipient)")
    print(f"load average during the run: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
