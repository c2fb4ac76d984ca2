"""The suppression list as the store keeps it: a hard bounce suppresses at once, soft and transient ones add up
Mailman's way (once a day, 1.0 / 0.5, reset when stale), an inactive mailbox after its repeats, per-domain rules;
`forget` starts an address over."""

from __future__ import annotations

import uuid

import pytest

from mailwarden.config import parse
from mailwarden.events import Event
from mailwarden.store import Store
from mailwarden.suppression import SuppressionRules


def bounce(recipient: str, category: str, type_: str, day: str, hour: int = 10) -> Event:
    return Event(id=str(uuid.uuid4()), time=f"{day}T{hour:02d}:00:00+00:00", recipient=recipient, category=category,
                 type=type_, status="5.0.0", confidence=0.9, model="0123456789ab", queue_id="4ABC",
                 reporting_mta="mx.far.example", diagnostic="550 no")  # fmt: skip


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "events.sqlite")
    yield store
    store.close()


def suppressed(store: Store) -> dict[str, tuple[str, str, int]]:
    return {s.address: (s.reason, s.since, s.events) for s in store.suppressed()}


def test_a_hard_bounce_suppresses_its_address_at_once_whatever_its_case(store):
    recorded = store.record([bounce("Gone@Far.Example", "bad-mailbox", "hard", "2026-03-01")], [])
    assert [s.address for s in recorded.suppressed] == ["gone@far.example"]
    assert suppressed(store) == {"gone@far.example": ("hard-bounce", "2026-03-01T10:00:00+00:00", 1)}
    store.record([bounce("gone@far.example", "bad-mailbox", "hard", "2026-03-02")], [])
    assert suppressed(store)["gone@far.example"] == ("hard-bounce", "2026-03-01T10:00:00+00:00", 2)  # since kept


def test_soft_bounces_count_once_a_day_and_suppress_at_the_threshold(store):
    rules = SuppressionRules(threshold=2.0)
    for day in ("2026-03-01", "2026-03-02", "2026-03-03"):
        for hour in (1, 2, 3):  # three the same day count as one
            store.record([bounce("full@far.example", "quota-issues", "transient", day, hour)], [], lambda _: rules)
        assert suppressed(store) == {}
    store.record([bounce("full@far.example", "spam-related", "soft", "2026-03-04")], [], lambda _: rules)
    assert suppressed(store) == {"full@far.example": ("bounce-score", "2026-03-04T10:00:00+00:00", 10)}


def test_a_worse_bounce_the_same_day_adds_only_the_difference(store):
    rules = SuppressionRules(threshold=1.5, inactive_repeats=9)
    store.record([bounce("a@far.example", "quota-issues", "transient", "2026-03-01", 1)], [], lambda _: rules)
    store.record([bounce("a@far.example", "inactive-mailbox", "hard", "2026-03-01", 2)], [], lambda _: rules)
    assert suppressed(store) == {}  # 0.5, then up to 1.0 the same day: not 1.5
    store.record([bounce("a@far.example", "quota-issues", "transient", "2026-03-02")], [], lambda _: rules)
    assert suppressed(store)["a@far.example"][0] == "bounce-score"


def test_a_score_left_alone_past_the_reset_period_starts_again(store):
    rules = SuppressionRules(threshold=1.0, reset_days=7)
    store.record([bounce("b@far.example", "rate-limited", "transient", "2026-03-01")], [], lambda _: rules)
    store.record([bounce("b@far.example", "rate-limited", "transient", "2026-03-10")], [], lambda _: rules)
    assert suppressed(store) == {}  # 9 days apart: the first 0.5 was forgotten
    store.record([bounce("b@far.example", "rate-limited", "transient", "2026-03-17")], [], lambda _: rules)
    assert suppressed(store)["b@far.example"][0] == "bounce-score"  # 7 days apart: still counts


def test_an_inactive_mailbox_is_suppressed_after_its_repeats_not_at_once(store):
    rules = SuppressionRules(threshold=100, inactive_repeats=3)
    for day in ("2026-03-01", "2026-03-02"):
        store.record([bounce("asleep@far.example", "inactive-mailbox", "hard", day)], [], lambda _: rules)
    assert suppressed(store) == {}
    store.record([bounce("asleep@far.example", "inactive-mailbox", "hard", "2026-03-03")], [], lambda _: rules)
    assert suppressed(store)["asleep@far.example"][:1] == ("inactive-mailbox",)


def test_an_unplaced_bounce_is_an_event_but_adds_nothing(store):
    for day in range(1, 12):
        store.record([bounce("c@far.example", "other", "unknown", f"2026-03-{day:02d}")], [])
    assert suppressed(store) == {}
    assert len(store.events(recipient="c@far.example")) == 11


def test_per_domain_rules_override_the_defaults(store):
    config = parse('[suppression]\nthreshold = 5.0\n[domains."big.example".suppression]\nthreshold = 0.5\n')
    assert config.suppression_for("BIG.example.").threshold == 0.5
    store.record([bounce("x@big.example", "quota-issues", "transient", "2026-03-01"),
                  bounce("x@small.example", "quota-issues", "transient", "2026-03-01")], [],
                 config.suppression_for)  # fmt: skip
    assert list(suppressed(store)) == ["x@big.example"]


def test_forget_takes_an_address_off_and_its_score_starts_over(store):
    rules = SuppressionRules(threshold=1.0)
    store.record([bounce("d@far.example", "bad-mailbox", "hard", "2026-03-01")], [])
    assert store.forget("D@far.example") is True
    assert suppressed(store) == {} and store.forget("d@far.example") is False
    store.record([bounce("d@far.example", "quota-issues", "transient", "2026-03-02")], [], lambda _: rules)
    assert suppressed(store) == {}  # 0.5 on a fresh score, not on top of the hard bounce's 1.0
    assert len(store.events(recipient="d@far.example")) == 2  # the history stays
