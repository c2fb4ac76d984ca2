"""The embedded store: created 0640 in WAL mode, migrated in order, refused when newer, bounded and id-stable."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import uuid
from pathlib import Path

import pytest

from mailwarden import store as store_module
from mailwarden.config import EventsConfig
from mailwarden.events import Event
from mailwarden.store import MIGRATIONS, ReviewItem, Store, StoreError, StoreFull

UNIT = Path(__file__).parent.parent / "systemd" / "mailwarden.service"


def item(text: str = "mailbox is hibernating", **fields) -> ReviewItem:
    values = dict(time="2026-01-02T03:04:05+00:00", queue_id="4ABC", text=text, status=None, reply_code="550",
                  stage=None, remote_mta="mx.far.example", guess="quota-issues", confidence=0.26, model="0123456789ab")
    return ReviewItem(**{**values, **fields})


def version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


def test_new_store_is_created_0640_in_wal_mode_at_the_latest_schema(tmp_path):
    path = tmp_path / "events.sqlite"
    old = os.umask(0o022)  # what would make SQLite's own files 0644
    try:
        store = Store(path)
        store.keep_for_review([item()])
    finally:
        os.umask(old)
    for name in (path, Path(f"{path}-wal")):
        assert stat.S_IMODE(name.stat().st_mode) == 0o640, name
    assert store.version == len(MIGRATIONS)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_an_older_store_is_migrated_in_place_and_keeps_what_it_held(tmp_path, monkeypatch):
    path = tmp_path / "events.sqlite"
    Store(path).keep_for_review([item()])
    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, "CREATE TABLE later (id INTEGER PRIMARY KEY)"))
    store = Store(path)
    assert store.version == len(MIGRATIONS) + 1
    assert [i.text for i in store.review_items()] == ["mailbox is hibernating"]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM later").fetchone() == (0,)


def test_a_failing_migration_leaves_the_store_at_its_last_version(tmp_path, monkeypatch):
    path = tmp_path / "events.sqlite"
    Store(path).close()
    broken = "CREATE TABLE half (id INTEGER); INSERT INTO nowhere VALUES (1)"
    monkeypatch.setattr(store_module, "MIGRATIONS", (*MIGRATIONS, broken))
    with pytest.raises(StoreError, match="nowhere"):
        Store(path)
    assert version(path) == len(MIGRATIONS)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchall() == []


def test_a_store_written_by_a_newer_mailwarden_is_refused(tmp_path):
    path = tmp_path / "events.sqlite"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        Store(path)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    path = tmp_path / "events.sqlite"
    path.write_bytes(b"this is not a database, " * 100)
    with pytest.raises(StoreError, match="events.sqlite"):
        Store(path)


def test_opening_without_create_never_makes_a_file(tmp_path):
    with pytest.raises(StoreError, match="no such store"):
        Store(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()


def test_review_items_come_back_oldest_first_and_a_repeat_counts_as_seen(tmp_path):
    store = Store(tmp_path / "events.sqlite")
    store.keep_for_review([item("first"), item("second", status="5.0.0", stage="rcpt")])
    store.keep_for_review([item("first", queue_id="LATER")])
    first, second = store.review_items()
    assert (first.text, first.seen, first.queue_id, first.id) == ("first", 2, "4ABC", 1)
    assert (second.text, second.seen, second.status, second.stage, second.id) == ("second", 1, "5.0.0", "rcpt", 2)
    assert first.status is None and first.stage is None  # stored as "", read back as None


def test_an_item_is_forgotten_by_id_and_text_and_its_id_is_never_given_again(tmp_path):
    store = Store(tmp_path / "events.sqlite")
    store.keep_for_review([item("a"), item("b"), item("c")])
    assert store.forget_review([(3, "c"), (2, "b"), (42, "b"), (1, "not a")]) == 2
    store.keep_for_review([item("d")])
    assert [(i.id, i.text) for i in store.review_items()] == [(1, "a"), (4, "d")]


def test_the_review_table_stops_growing_at_its_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "MAX_REVIEW_ITEMS", 3)
    store = Store(tmp_path / "events.sqlite")
    with pytest.raises(StoreFull, match="3 bounces wait for review"):
        store.keep_for_review([item(f"text {n}") for n in range(5)])
    assert [i.text for i in store.review_items()] == ["text 0", "text 1", "text 2"]
    store.forget_review([(1, "text 0")])
    assert store.keep_for_review([item("text 5")]) == 1


def test_default_store_lies_in_the_units_state_directory():
    state = re.search(r"^StateDirectory=(\S+)$", UNIT.read_text(), re.M)[1]
    assert Path(EventsConfig.store).parent == Path("/var/lib") / state


# -- migration 2: bounce events, suppression, outbox --


def event(recipient: str = "gone@far.example", time: str = "2026-03-01T10:00:00+00:00", **fields) -> Event:
    values = dict(id=str(uuid.uuid4()), time=time, recipient=recipient, category="bad-mailbox", type="hard",
                  status="5.1.1", confidence=0.97, model="0123456789ab", queue_id="4ABC",
                  reporting_mta="mx.far.example", diagnostic="550 5.1.1 no such user")  # fmt: skip
    return Event(**{**values, **fields})


def test_a_version_1_store_is_upgraded_to_events_and_keeps_its_review_items(tmp_path, monkeypatch):
    path = tmp_path / "events.sqlite"
    monkeypatch.setattr(store_module, "MIGRATIONS", MIGRATIONS[:1])
    Store(path).keep_for_review([item()])
    assert version(path) == 1
    monkeypatch.undo()
    store = Store(path)
    assert store.version == len(MIGRATIONS) >= 2
    assert [i.text for i in store.review_items()] == ["mailbox is hibernating"]
    store.record([event()], [])
    assert [e.recipient for e in store.events()] == ["gone@far.example"]


def test_a_bounce_is_one_transaction_its_review_items_go_with_its_events(tmp_path):
    store = Store(tmp_path / "events.sqlite")
    first = event()
    store.record([first], [])
    with pytest.raises(sqlite3.IntegrityError):  # the same id twice: the second event cannot be stored
        store.record([event("other@far.example"), first], [item("kept only with its events")])
    assert store.review_items() == [] and [e.id for e in store.events()] == [first.id]
    assert [s.address for s in store.suppressed()] == ["gone@far.example"]


def test_events_are_listed_oldest_first_by_time_recipient_and_category(tmp_path):
    store = Store(tmp_path / "events.sqlite")
    store.record([event("a@x.example", "2026-03-01T10:00:00+00:00"),
                  event("B@x.example", "2026-03-02T10:00:00+00:00", category="quota-issues", type="transient"),
                  event("a@x.example", "2026-03-03T10:00:00+00:00", category="quota-issues", type="transient")], [])
    assert [e.time[:10] for e in store.events()] == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert [e.time[:10] for e in store.events(since="2026-03-02")] == ["2026-03-02", "2026-03-03"]
    assert [e.recipient for e in store.events(recipient="b@X.example")] == ["B@x.example"]
    assert [e.time[:10] for e in store.events(recipient="a@x.example", category="quota-issues")] == ["2026-03-03"]


def test_a_new_sink_starts_at_the_newest_event_and_keeps_its_place_across_restarts(tmp_path):
    path = tmp_path / "events.sqlite"
    store = Store(path)
    store.record([event("before@x.example")], [])
    store.open_outbox("amqp")
    assert store.unpublished("amqp", 10) == []  # what was stored before the sink existed is not sent
    store.record([event(f"r{n}@x.example") for n in range(3)], [])
    pending = store.unpublished("amqp", 2)
    assert [e.recipient for _, e in pending] == ["r0@x.example", "r1@x.example"]
    store.taken("amqp", pending[-1][0])
    store.close()
    again = Store(path)
    again.open_outbox("amqp")  # a restart: the cursor stays
    assert [e.recipient for _, e in again.unpublished("amqp", 10)] == ["r2@x.example"]
    assert again.backlog("amqp") == (1, "2026-03-01T10:00:00+00:00")


def test_expiry_deletes_old_events_only_once_every_sink_has_taken_them(tmp_path):
    store = Store(tmp_path / "events.sqlite")
    store.open_outbox("amqp")
    store.record([event("old@x.example", "2026-01-01T00:00:00+00:00", type="transient", category="quota-issues"),
                  event("new@x.example", "2026-03-01T00:00:00+00:00")], [])  # fmt: skip
    assert store.expire("2026-02-01T00:00:00+00:00", ["amqp"]) == 0  # not published yet: kept
    store.taken("amqp", store.unpublished("amqp", 10)[0][0])
    assert store.expire("2026-02-01T00:00:00+00:00", ["amqp"]) == 1
    assert [e.recipient for e in store.events()] == ["new@x.example"]
    assert [s.address for s in store.suppressed()] == ["new@x.example"]  # suppressions are not events: kept


def test_problems_name_a_damaged_or_foreign_or_newer_store_without_changing_it(tmp_path):
    good = tmp_path / "good.sqlite"
    Store(good).close()
    assert store_module.problems(str(good)) == []
    assert store_module.problems(str(tmp_path / "not-yet.sqlite")) == []  # the daemon creates it
    assert "does not exist" in store_module.problems(str(tmp_path / "no" / "events.sqlite"))[0]
    foreign = tmp_path / "foreign.sqlite"
    foreign.write_bytes(b"not a database " * 100)
    assert "file is not a database" in store_module.problems(str(foreign))[0]
    with sqlite3.connect(good) as db:
        db.execute("PRAGMA user_version = 99")
    assert "schema version 99 is newer" in store_module.problems(str(good))[0]
    assert version(good) == 99
