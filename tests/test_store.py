"""The embedded store: created 0640 in WAL mode, migrated in order, refused when newer, bounded and id-stable."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
from pathlib import Path

import pytest

from mailwarden import store as store_module
from mailwarden.config import EventsConfig
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
