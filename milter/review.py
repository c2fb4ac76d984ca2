"""The review loop's milter side: recipients the model cannot place are labelled `other` and kept for review.

What is kept is the failure text with every address redacted, its structured fields and the model's guess,
never the message: enough for an administrator to label it and for `mailwarden train --add` to learn it.
Keeping is best effort: a store that cannot be opened or written costs the review item, never the mail
(it is logged once, and mail goes on).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from .classifier.addresses import redact
from .classifier.taxonomy import FALLBACK_CATEGORY
from .classifier.verdict import RecipientVerdict
from .config import Config
from .log import event
from .sanitise import LIMIT_NAME, clean
from .store import ReviewItem, Store, StoreError

UNPLACED_TYPE = "unknown"


class Review:
    """The review threshold and, when there is one, the store the unplaced recipients are kept in."""

    def __init__(self, below: float, store: Store | None) -> None:
        self.below = below
        self.store = store
        self._failing = False  # a write failed and was logged; the next failure stays quiet

    @classmethod
    def from_config(cls, config: Config) -> Review:
        """The review of a configuration; a store that cannot be opened is logged and reviewing goes without."""
        store = None
        if config.events.store:
            try:
                store = Store(config.events.store)
            except StoreError as exc:
                event("store-unavailable", logging.ERROR, error=str(exc), consequence="nothing is kept for review")
        return cls(config.bounce.review_below, store)

    def needs_review(self, verdict: RecipientVerdict) -> bool:
        """Whether the model could not place the recipient: below our threshold, or below the model's own."""
        return verdict.category == FALLBACK_CATEGORY or verdict.confidence < self.below

    def apply(self, verdicts: Iterable[RecipientVerdict], queue_id: str, model: str) -> list[RecipientVerdict]:
        """The verdicts as they are to be reported (unplaced ones as `other`, type unknown); the unplaced ones
        are kept for review in one transaction, committed before this returns."""
        now = datetime.now(UTC).isoformat(timespec="seconds")
        reported, kept = [], []
        for verdict in verdicts:
            if not self.needs_review(verdict):
                reported.append(verdict)
                continue
            reported.append(dataclasses.replace(verdict, category=FALLBACK_CATEGORY, type=UNPLACED_TYPE))
            kept.append(item_of(verdict, queue_id, model, now))
        if kept and self.store is not None:
            self._keep(kept)
        return reported

    def _keep(self, items: list[ReviewItem]) -> None:
        try:
            self.store.keep_for_review(items)
        except Exception as exc:  # noqa: BLE001 - sqlite3 and OS errors alike: the message must go on
            if not self._failing:
                event("store-write-failed", logging.ERROR, store=self.store.path, error=str(exc),
                      consequence="bounces are not kept for review until it works again")  # fmt: skip
            self._failing = True
        else:
            if self._failing:
                event("store-write-recovered", store=self.store.path)
            self._failing = False


def item_of(verdict: RecipientVerdict, queue_id: str, model: str, time: str) -> ReviewItem:
    """What is kept of a verdict: its text and remote MTA with addresses redacted, never the recipient."""
    remote_mta = redact(verdict.remote_mta) if verdict.remote_mta else None
    return ReviewItem(
        time=time, queue_id=clean(queue_id, LIMIT_NAME), text=redact(verdict.diagnostic), status=verdict.status,
        reply_code=verdict.reply_code, stage=verdict.stage, remote_mta=remote_mta, guess=verdict.category,
        confidence=verdict.confidence, model=model,
    )  # fmt: skip
