"""Sending the stored events to their sinks (RabbitMQ, a webhook), each from a thread of its own.

The milter only commits events to the store and wakes these threads; it never waits for a sink, so a broker
that is down or slow costs mail nothing. Each sink has a cursor in the store (the outbox): its thread takes
the events after the cursor in commit order, sends them, and moves the cursor only once the sink has taken
them (broker confirm, webhook 2xx). Events therefore go out in order (per recipient too), at least once: a
crash between the sink taking an event and the cursor moving sends it again, and consumers dedupe by id.
While a sink is down its thread retries with backoff; the outage is logged once when it starts and once when
it ends. The same service deletes events past their retention once every sink has taken them.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from datetime import UTC, datetime, timedelta

from . import metrics
from .amqp import AmqpSink
from .config import Config
from .log import event
from .sinks import Sink, SinkDown, scrub
from .store import Store, StoreError
from .webhook import WebhookSink

POLL = 1.0  # seconds: a look at the store even when nothing woke the thread (and AMQP heartbeats served)
BATCH = 100  # events read from the store at a time
BACKOFF = (0.5, 1, 2, 4, 8, 15, 30)  # seconds between tries while a sink is down
GAUGES_EVERY = 5.0  # seconds between outbox depth/age readings
EXPIRE_EVERY = 3600.0  # seconds between retention passes
STOP_TIMEOUT = 10.0

_wakers: set[threading.Event] = set()


def notify() -> None:
    """New events are committed: wake the sink threads (a flag set per thread; no lock, no wait)."""
    for waker in tuple(_wakers):
        waker.set()


class SinkWorker:
    """One sink's thread: takes the events after its cursor, in order, until stopped."""

    def __init__(self, store_path: str, sink: Sink) -> None:
        self.store_path = store_path
        self.sink = sink
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"events-{sink.name}", daemon=True)
        self._down = ""  # why the sink is down, "" while it is up
        self._tries = 0
        self._gauges_at = 0.0

    def start(self) -> None:
        """Open the sink's cursor now, before the milter serves, so that no event stored meanwhile is skipped by
        a sink configured for the first time (the thread opens it itself if the store fails here)."""
        with contextlib.suppress(StoreError, sqlite3.Error):
            store = Store(self.store_path)
            try:
                store.open_outbox(self.sink.name)
            finally:
                store.close()
        _wakers.add(self._wake)
        self._thread.start()

    def halt(self) -> None:
        self._stopping.set()
        self._wake.set()

    def join(self) -> None:
        self._thread.join(STOP_TIMEOUT)
        _wakers.discard(self._wake)

    def _run(self) -> None:
        store = None
        while not self._stopping.is_set():
            try:
                if store is None:
                    store = Store(self.store_path)
                    store.open_outbox(self.sink.name)
                delay = self._step(store)
            except Exception as exc:  # noqa: BLE001 - a store or sink bug must not end the thread
                self._went_down(f"{type(exc).__name__}: {exc}")
                delay = self._backoff()
            if delay:
                self._wake.wait(delay)
        self.sink.close()
        if store is not None:
            store.close()

    def _step(self, store: Store) -> float:
        """Send one batch; how long to wait before the next (0: go on at once)."""
        self._wake.clear()
        self._gauges(store)
        batch = store.unpublished(self.sink.name, BATCH)
        if not batch:
            self.sink.idle()
            return POLL
        events = [e for _, e in batch]
        try:
            sent, reason = self.sink.send(events), ""
        except SinkDown as exc:
            sent, reason = exc.sent, str(exc)
        if sent.taken:
            store.taken(self.sink.name, batch[sent.taken - 1][0])
            metrics.EVENTS_PUBLISHED.labels(self.sink.name).inc(sent.taken - sent.refused)
            metrics.EVENTS_FAILED.labels(self.sink.name).inc(sent.refused)
            self._gauges_at = 0.0
        if reason:
            self._went_down(reason)
            return self._backoff()
        self._came_back()
        return 0.0 if len(batch) == BATCH else POLL

    def _went_down(self, reason: str) -> None:
        metrics.SINK_UP.labels(self.sink.name).set(0)
        if not self._down:
            event("sink-down", logging.ERROR, sink=self.sink.name, target=self.sink.target,
                  error=scrub(reason, self.sink.secrets), consequence="events wait in the store")  # fmt: skip
        self._down = reason or "down"

    def _came_back(self) -> None:
        metrics.SINK_UP.labels(self.sink.name).set(1)
        if self._down:
            event("sink-up", sink=self.sink.name, target=self.sink.target, tries=self._tries)
        self._down, self._tries = "", 0

    def _backoff(self) -> float:
        delay = BACKOFF[min(self._tries, len(BACKOFF) - 1)]
        self._tries += 1
        return delay

    def _gauges(self, store: Store) -> None:
        now = datetime.now(UTC)
        if now.timestamp() - self._gauges_at < GAUGES_EVERY:
            return
        self._gauges_at = now.timestamp()
        depth, oldest = store.backlog(self.sink.name)
        metrics.OUTBOX_DEPTH.labels(self.sink.name).set(depth)
        age = (now - datetime.fromisoformat(oldest)).total_seconds() if oldest else 0.0
        metrics.OUTBOX_OLDEST.labels(self.sink.name).set(max(age, 0.0))


class Expiry:
    """Deletes events older than the retention once every configured sink has taken them, hourly."""

    def __init__(self, store_path: str, days: int, sinks: tuple[str, ...]) -> None:
        self.store_path, self.days, self.sinks = store_path, days, sinks
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="events-expiry", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def halt(self) -> None:
        self._stopping.set()

    def join(self) -> None:
        self._thread.join(STOP_TIMEOUT)

    def _run(self) -> None:
        while True:
            try:
                store = Store(self.store_path)
                try:
                    before = (datetime.now(UTC) - timedelta(days=self.days)).isoformat(timespec="seconds")
                    if deleted := store.expire(before, self.sinks):
                        event("events-expired", deleted=deleted, before=before)
                finally:
                    store.close()
            except Exception as exc:  # noqa: BLE001 - the recorder reports a store that fails; try again later
                event("events-expiry-failed", logging.WARNING, error=str(exc))
            if self._stopping.wait(EXPIRE_EVERY):
                return


class EventService:
    """The daemon's event threads for one [events] configuration: a worker per sink, and the expiry."""

    def __init__(self, threads: list[SinkWorker | Expiry]) -> None:
        self.threads = threads

    @classmethod
    def from_config(cls, config: Config) -> EventService:
        events = config.events
        if not events.store:
            return cls([])
        sinks: list[Sink] = []
        if events.amqp_url:
            sinks.append(AmqpSink(events.amqp_url, events.amqp_exchange))
        if events.webhook_url:
            sinks.append(WebhookSink(events.webhook_url, events.webhook_secret, events.webhook_ca_file))
        workers: list[SinkWorker | Expiry] = [SinkWorker(events.store, sink) for sink in sinks]
        return cls([*workers, Expiry(events.store, events.retention_days, tuple(s.name for s in sinks))])

    def start(self) -> EventService:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop every thread, together: a sink in the middle of a timeout holds up only its own."""
        for thread in self.threads:
            thread.halt()
        for thread in self.threads:
            thread.join()
