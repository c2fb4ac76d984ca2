"""The review loop's milter side: recipients the model cannot place are labelled `other` and kept for review.

What is kept is the failure text with every address redacted, its structured fields and the model's guess,
never the message: enough for an administrator to label it and for `mailwarden train --add` to learn it.
The items are stored by the recorder (recorder.py), in the same transaction as the bounce's events.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from .classifier.addresses import redact
from .classifier.taxonomy import FALLBACK_CATEGORY
from .classifier.verdict import RecipientVerdict
from .sanitise import LIMIT_NAME, clean
from .store import ReviewItem

UNPLACED_TYPE = "unknown"


class Review:
    """The review threshold: below it (or at the model's own `other`) a recipient is reported as `other`."""

    def __init__(self, below: float) -> None:
        self.below = below

    def needs_review(self, verdict: RecipientVerdict) -> bool:
        """Whether the model could not place the recipient: below our threshold, or below the model's own."""
        return verdict.category == FALLBACK_CATEGORY or verdict.confidence < self.below

    def split(self, verdicts: Iterable[RecipientVerdict], queue_id: str, model: str,
              now: str) -> tuple[list[RecipientVerdict], list[ReviewItem]]:  # fmt: skip
        """The verdicts as they are to be reported (unplaced ones as `other`, type unknown), and the review items
        of the unplaced ones."""
        reported, kept = [], []
        for verdict in verdicts:
            if not self.needs_review(verdict):
                reported.append(verdict)
                continue
            reported.append(dataclasses.replace(verdict, category=FALLBACK_CATEGORY, type=UNPLACED_TYPE))
            kept.append(item_of(verdict, queue_id, model, now))
        return reported, kept


def item_of(verdict: RecipientVerdict, queue_id: str, model: str, time: str) -> ReviewItem:
    """What is kept of a verdict: its text and remote MTA with addresses redacted, never the recipient."""
    remote_mta = redact(verdict.remote_mta) if verdict.remote_mta else None
    return ReviewItem(
        time=time, queue_id=clean(queue_id, LIMIT_NAME), text=redact(verdict.diagnostic), status=verdict.status,
        reply_code=verdict.reply_code, stage=verdict.stage, remote_mta=remote_mta, guess=verdict.category,
        confidence=verdict.confidence, model=model,
    )  # fmt: skip
