"""The suppression list: which addresses a sender should stop mailing, and why, decided as each event is stored.

A hard bounce says the address is gone, so it is suppressed at once. Other failures may pass, so they add to a
score the way Mailman scores list members: at most one bounce counts per address and day, a hard one 1.0 and a
soft or transient one 0.5, the score is forgotten when the address has not bounced for `reset_days`, and the
address is suppressed when the score reaches `threshold`. An inactive (suspended) mailbox is typed hard but often
comes back, so it is suppressed only after `inactive_repeats` such bounces. A category the model could not place
(type unknown) counts as an event but adds nothing. The rules are per recipient domain ([domains."…".suppression]).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

from .events import Event

WEIGHTS = {"hard": 1.0, "soft": 0.5, "transient": 0.5}  # Mailman: a permanent bounce 1.0, a temporary one 0.5
INACTIVE = "inactive-mailbox"
HARD_BOUNCE, INACTIVE_MAILBOX, BOUNCE_SCORE = "hard-bounce", "inactive-mailbox", "bounce-score"  # the reasons


@dataclass(frozen=True)
class SuppressionRules:
    threshold: float = 5.0  # Mailman's default bounce_score_threshold
    reset_days: int = 7  # Mailman's default bounce_info_stale_after
    inactive_repeats: int = 3


@dataclass(frozen=True)
class Standing:
    """What the store keeps per address that has bounced."""

    address: str
    score: float = 0.0
    day: str = ""  # the UTC day (YYYY-MM-DD) of the last bounce that counted
    day_weight: float = 0.0  # what that day added (a worse bounce the same day adds the difference)
    inactive: int = 0  # inactive-mailbox bounces since the last reset
    events: int = 0
    reason: str | None = None  # why it is suppressed; None while it is not
    since: str | None = None  # when it was suppressed (RFC 3339)


def address_key(recipient: str) -> str:
    """The address as the list knows it: mailbox providers do not tell case apart, senders' lists neither."""
    return recipient.lower()


def scored(standing: Standing, event: Event, rules: SuppressionRules) -> Standing:
    """The address's standing after one more event."""
    day = event.time[:10]
    if standing.day and (date.fromisoformat(day) - date.fromisoformat(standing.day)).days > rules.reset_days:
        standing = replace(standing, score=0.0, day_weight=0.0, inactive=0)
    weight = WEIGHTS.get(event.type, 0.0)
    added = weight - standing.day_weight if day == standing.day else weight
    if added > 0:
        standing = replace(standing, score=standing.score + added, day=day, day_weight=weight)
    inactive = standing.inactive + (event.category == INACTIVE)
    standing = replace(standing, inactive=inactive, events=standing.events + 1)
    if standing.reason is None and (reason := _reason(standing, event, rules)):
        standing = replace(standing, reason=reason, since=event.time)
    return standing


def _reason(standing: Standing, event: Event, rules: SuppressionRules) -> str | None:
    if event.type == "hard" and event.category != INACTIVE:
        return HARD_BOUNCE
    if standing.inactive >= rules.inactive_repeats:
        return INACTIVE_MAILBOX
    if standing.score >= rules.threshold:
        return BOUNCE_SCORE
    return None
