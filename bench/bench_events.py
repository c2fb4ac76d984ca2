"""What the bounce-event path costs per bounce (not a test): the recorder with a store against one without.

    .venv/bin/python -m bench.bench_events [--bounces 2000] [--rounds 5] [--amqp-url private]

The bounces are D's of bench/run.py (four real DSNs from four MTAs), classified once. Each round times
Recorder.apply on them in turn, the way the engine calls it at end of message: without a store (the review split
only, what mailwarden did before issue 13), and with a store on disk (events, suppression standings and review
items committed in one WAL transaction, SQLite's checkpoints included), then with an AMQP outbox thread
draining the store to a broker too when --amqp-url is given. The difference is the event path's cost.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.run import DSN_SESSIONS, dsn_files
from mailwarden.amqp import AmqpSink
from mailwarden.classifier import BounceClassifier, EnvelopeFacts
from mailwarden.events import reporting_mta_of
from mailwarden.outbox import SinkWorker
from mailwarden.recorder import Recorder
from mailwarden.review import Review
from mailwarden.store import Store
from tests.rabbitmq import RabbitMQ


def per_bounce_us(recorder: Recorder, bounces: list[tuple[bytes, tuple]], count: int, model: str) -> float:
    """Mean microseconds of one bounce's recording (reporting MTA found, verdicts recorded)."""
    start = time.perf_counter()
    for n in range(count):
        raw, verdicts = bounces[n % len(bounces)]
        recorder.apply(verdicts, f"Q{n}", model, reporting_mta_of(raw, "relay.example", "192.0.2.1"))
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bounces", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--amqp-url", default="", help="also time it with an outbox thread publishing to this broker "
                        '("private": a RabbitMQ of its own on loopback, as the tests start one)')  # fmt: skip
    args = parser.parse_args()
    broker = None
    if args.amqp_url == "private":
        broker = RabbitMQ(Path(tempfile.mkdtemp(prefix="mailwarden-bench-rabbitmq-", dir="/var/tmp"))).start()
        args.amqp_url = broker.url
    try:
        measure(args)
    finally:
        if broker is not None:
            broker.destroy()


def measure(args: argparse.Namespace) -> None:
    classifier = BounceClassifier.load()
    bounces = []
    for path in dsn_files(DSN_SESSIONS):
        raw = path.read_bytes()
        report = classifier.analyse(raw, envelope=EnvelopeFacts(sender="", client_ip="192.0.2.1"))
        bounces.append((raw, report.recipients))
    recipients = sum(len(v) for _, v in bounces) / len(bounces)
    print(f"{len(bounces)} DSNs, {recipients:.2f} failed recipients per bounce on average")
    results: dict[str, list[float]] = {"no store": [], "store": [], "store + amqp outbox": []}
    with tempfile.TemporaryDirectory() as directory:
        store = Store(Path(directory) / "events.sqlite")
        worker = None
        if args.amqp_url:
            worker = SinkWorker(store.path, AmqpSink(args.amqp_url, "mailwarden-bench"))
        review = Review(0.3)
        for _ in range(args.rounds):
            results["no store"].append(per_bounce_us(Recorder(review, None), bounces, args.bounces, "m"))
            results["store"].append(per_bounce_us(Recorder(review, store), bounces, args.bounces, "m"))
        if worker is not None:  # publishing while bounces come in: its thread competes for the GIL and the store
            worker.start()
            for _ in range(args.rounds):
                results["store + amqp outbox"].append(per_bounce_us(Recorder(review, store), bounces, args.bounces,
                                                                    "m"))  # fmt: skip
        if worker is not None:
            worker.halt()
            worker.join()
        size = sum(p.stat().st_size for p in Path(directory).iterdir()) / 1e6
    base = statistics.median(results["no store"])
    for name, values in results.items():
        if values:
            median = statistics.median(values)
            print(f"{name:22} {median:8.1f} us per bounce (rounds {min(values):.1f}-{max(values):.1f}); "
                  f"event path {median - base:+.1f} us")  # fmt: skip
    print(f"store after {args.rounds * args.bounces * (2 + bool(args.amqp_url))} bounces: {size:.1f} MB")


if __name__ == "__main__":
    main()
