"""The record of each bounce: its events, its review items and the suppression standings they change, committed
in one transaction before the milter answers end of message.

Recording is best effort for the mail: a store that cannot be opened or written costs the record, never the
message. The failure is loud all the same: logged at error level once when it starts and once when it ends,
counted (mailwarden_events_failed, mailwarden_store_up), and `mailwarden config check` names it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from . import metrics, outbox
from .classifier.verdict import RecipientVerdict
from .config import Config
from .events import Event, events_of
from .log import event
from .review import Review, ReviewItem
from .store import Store, StoreError, StoreFull, full_message, problems
from .suppression import SuppressionRules


class Recorder:
    """The review threshold, the suppression rules and, when there is one, the store."""

    def __init__(self, review: Review, store: Store | None, config: Config | None = None) -> None:
        self.review = review
        self.store = store
        self.rules_for = config.suppression_for if config is not None else lambda _: SuppressionRules()
        self._failing = False  # a write failed and was logged; the next failure stays quiet

    @classmethod
    def from_config(cls, config: Config) -> Recorder:
        """The recorder of a configuration; a store that cannot be opened is logged and recording goes without."""
        store = None
        if config.events.store:
            found = []
            try:
                store = Store(config.events.store)
            except StoreError as exc:
                event("store-unavailable", logging.ERROR, error=str(exc),
                      consequence="no bounce event, suppression or review item is kept")  # fmt: skip
            else:  # kept open all the same: a disk may get room again, SQLite may read around damage
                found = problems(config.events.store)
                for problem in found:
                    event("store-problem", logging.ERROR, error=problem, consequence="bounce events may not be kept")
            metrics.STORE_UP.set(store is not None and not found)
        return cls(Review(config.bounce.review_below), store, config)

    def apply(self, verdicts: Iterable[RecipientVerdict], queue_id: str, model: str,
              reporting_mta: str = "") -> list[RecipientVerdict]:  # fmt: skip
        """The verdicts as they are to be reported (unplaced ones as `other`); their events and review items are
        committed before this returns."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        reported, items = self.review.split(verdicts, queue_id, model, now)
        events = events_of(reported, time=now, model=model, queue_id=queue_id, reporting_mta=reporting_mta)
        if events or items:
            self._record(events, items)
        return reported

    def _record(self, events: list[Event], items: list[ReviewItem]) -> None:
        if self.store is None:
            metrics.EVENTS_FAILED.labels("store").inc(len(events))
            return
        try:
            recorded = self.store.record(events, items, self.rules_for)
        except Exception as exc:  # noqa: BLE001 - sqlite3 and OS errors alike: the message must go on
            metrics.EVENTS_FAILED.labels("store").inc(len(events))
            self._failed(exc, store_down=True)
            return
        metrics.EVENTS_STORED.inc(recorded.events)
        for standing in recorded.suppressed:
            metrics.SUPPRESSED.labels(standing.reason).inc()
            event("suppressed", address=standing.address, reason=standing.reason, events=standing.events)
        if events:
            outbox.notify()
        if recorded.kept_for_review < len(items):
            self._failed(StoreFull(full_message(self.store.path)), store_down=False)
        elif self._failing:
            event("store-write-recovered", store=self.store.path)
            metrics.STORE_UP.set(1)
            self._failing = False

    def _failed(self, exc: Exception, store_down: bool) -> None:
        if not self._failing:
            consequence = ("bounce events, suppressions and review items are lost until it works again" if store_down
                           else "bounce events are stored, review items are not")  # fmt: skip
            event("store-write-failed", logging.ERROR, store=self.store.path, error=str(exc), consequence=consequence)
        if store_down:
            metrics.STORE_UP.set(0)
        self._failing = True
