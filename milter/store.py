"""The embedded store: one SQLite file (stdlib sqlite3, WAL) for what mailwarden keeps between messages.

It holds the bounce recipients kept for review (migration 1) and, from migration 2, the bounce events, the
suppression list and the outbox cursors of the event sinks (issue 13). A bounce's events, its review items
and the suppression standings they change are written in one transaction, committed before the milter
answers end of message, so a crash right after loses nothing. The schema version is SQLite's
`user_version`: opening a file applies the MIGRATIONS it has not had yet, in order and each in its own
transaction, so an older file is upgraded in place and a file from a newer mailwarden is refused rather than
misread.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import NamedTuple

from .events import FIELDS as EVENT_FIELDS
from .events import Event
from .suppression import Standing, SuppressionRules, address_key, scored

MIN_FREE_BYTES = 1 << 20  # less room than this beside the store is a full disk: its next writes would fail
FILE_MODE = 0o640  # the service and its group (administrators reviewing) read it; nobody else
BUSY_TIMEOUT_MS = 200  # a reviewing administrator's short write may hold the lock; mail never waits longer
MAX_REVIEW_ITEMS = 10_000  # distinct texts kept for review: a flood of made-up bounces cannot fill the disk

MIGRATIONS: tuple[str, ...] = (
    # 1: failed recipients the model could not place. No address is stored (the text is redacted, the
    # recipient is left out); "" stands for a missing status/code/stage/MTA so that the UNIQUE key counts
    # a repeated failure once (NULLs are all distinct in SQLite).
    """
    CREATE TABLE review (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a labelled file's ids stay unambiguous
        time TEXT NOT NULL,                    -- RFC 3339, UTC, when it was first seen
        queue_id TEXT NOT NULL,
        text TEXT NOT NULL,
        status TEXT NOT NULL,
        reply_code TEXT NOT NULL,
        stage TEXT NOT NULL,
        remote_mta TEXT NOT NULL,
        guess TEXT NOT NULL,                   -- the model's category before the review threshold
        confidence REAL NOT NULL,
        model TEXT NOT NULL,
        seen INTEGER NOT NULL DEFAULT 1,       -- how often the same failure came while it waited for review
        UNIQUE (text, status, reply_code, stage, model)
    );
    """,
    # 2: bounce events, the suppression list, and how far each sink (amqp, webhook) has taken the events.
    """
    CREATE TABLE event (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, -- commit order, never reused: the order events are published in
        id TEXT NOT NULL UNIQUE,               -- the event's UUID, what consumers dedupe on
        time TEXT NOT NULL,                    -- RFC 3339, UTC
        recipient TEXT NOT NULL,
        address TEXT NOT NULL,                 -- the recipient as the suppression list keys it (lower case)
        category TEXT NOT NULL,
        type TEXT NOT NULL,
        status TEXT,                           -- NULL when the bounce stated none
        confidence REAL NOT NULL,
        model TEXT NOT NULL,
        queue_id TEXT NOT NULL,
        reporting_mta TEXT NOT NULL,
        diagnostic TEXT NOT NULL
    );
    CREATE INDEX event_time ON event (time);
    CREATE INDEX event_address ON event (address, seq);
    CREATE TABLE suppression (
        address TEXT PRIMARY KEY,
        score REAL NOT NULL,
        day TEXT NOT NULL,
        day_weight REAL NOT NULL,
        inactive INTEGER NOT NULL,
        events INTEGER NOT NULL,
        reason TEXT,                           -- NULL while the address is not suppressed
        since TEXT
    );
    CREATE TABLE outbox (
        sink TEXT PRIMARY KEY,                 -- "amqp", "webhook"
        published INTEGER NOT NULL             -- seq of the last event the sink has taken (confirmed or given up)
    );
    """,
)


class StoreError(Exception):
    """The store file cannot be used: unreadable, not SQLite, or written by a newer mailwarden."""


class Recorded(NamedTuple):
    """What one bounce's transaction wrote."""

    events: int
    kept_for_review: int  # review items stored or counted as seen again
    suppressed: list[Standing]  # addresses this bounce suppressed


class StoreFull(StoreError):
    """The review table holds MAX_REVIEW_ITEMS: what came in beyond them was not kept."""


@dataclass(frozen=True)
class ReviewItem:
    """One failed recipient kept for review, as stored (None where the bounce stated nothing)."""

    time: str
    queue_id: str
    text: str
    status: str | None
    reply_code: str | None
    stage: str | None
    remote_mta: str | None
    guess: str
    confidence: float
    model: str
    id: int = 0  # assigned by the store
    seen: int = 1


_COLUMNS = tuple(f.name for f in fields(ReviewItem))
_INSERTED = _COLUMNS[:-2]  # all but id and seen
_OPTIONAL = ("status", "reply_code", "stage", "remote_mta")  # stored as "" when None
_STANDING = tuple(f.name for f in fields(Standing))
_INSERT_EVENT = (f"INSERT INTO event ({', '.join(EVENT_FIELDS)}, address) "
                 f"VALUES ({', '.join('?' * (len(EVENT_FIELDS) + 1))})")  # fmt: skip
_UPSERT_STANDING = (f"INSERT OR REPLACE INTO suppression ({', '.join(_STANDING)}) "
                    f"VALUES ({', '.join('?' * len(_STANDING))})")  # fmt: skip
_SELECT_EVENTS = f"SELECT seq, {', '.join(EVENT_FIELDS)} FROM event"
_INSERT_REVIEW = (
    f"INSERT INTO review ({', '.join(_INSERTED)}) SELECT {', '.join('?' * len(_INSERTED))} "
    "WHERE (SELECT count(*) FROM review) < ? "
    "ON CONFLICT (text, status, reply_code, stage, model) DO UPDATE SET seen = seen + 1"
)


class Store:
    """An open store; safe to share between threads (one connection, one lock, short transactions)."""

    def __init__(self, path: str | os.PathLike[str], create: bool = True) -> None:
        """Open (creating it 0640 when `create`) and migrate; raises StoreError."""
        self.path = str(path)
        try:
            if create and not Path(self.path).exists():
                _create(self.path)
            elif not Path(self.path).exists():
                raise StoreError(f"{self.path}: no such store (the daemon creates it when it starts)")
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), one per call.
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                       check_same_thread=False)  # fmt: skip
            self._db.execute("PRAGMA journal_mode = WAL")
            # WAL with synchronous NORMAL: a commit survives the process dying at once (what matters before
            # answering end of message) without an fsync per message; only a power cut may lose the last ones.
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._lock = threading.Lock()
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    @property
    def version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        with self._lock:
            version = self.version
            if version > len(MIGRATIONS):
                raise StoreError(f"{self.path}: schema version {version} is newer than this mailwarden "
                                 f"({len(MIGRATIONS)})")
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                try:
                    self._db.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise

    def _write(self, sql: str, rows: Iterable[tuple]) -> int:
        """Run one statement per row in one transaction; the number of rows changed."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                changed = sum(self._db.execute(sql, row).rowcount for row in rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return changed

    def record(self, events: list[Event], review: list[ReviewItem],
               rules_for: Callable[[str], SuppressionRules] = lambda _: SuppressionRules()) -> Recorded:  # fmt: skip
        """One bounce in one transaction: its events, the suppression standing of each recipient (by the rules
        of its domain), its review items (while fewer than MAX_REVIEW_ITEMS wait)."""
        suppressed = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                kept = sum(self._db.execute(_INSERT_REVIEW, _row(item) + (MAX_REVIEW_ITEMS,)).rowcount
                           for item in review)  # fmt: skip
                for event in events:
                    address = address_key(event.recipient)
                    self._db.execute(_INSERT_EVENT, (*astuple(event), address))
                    before = self._standing(address)
                    after = scored(before, event, rules_for(address.rpartition("@")[2]))
                    self._db.execute(_UPSERT_STANDING, astuple(after))
                    if after.reason is not None and before.reason is None:
                        suppressed.append(after)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return Recorded(len(events), kept, suppressed)

    def _standing(self, address: str) -> Standing:
        row = self._db.execute(f"SELECT {', '.join(_STANDING)} FROM suppression WHERE address = ?",
                               (address,)).fetchone()  # fmt: skip
        return Standing(*row) if row else Standing(address)

    def keep_for_review(self, items: list[ReviewItem]) -> int:
        """Store items in one transaction (a repeat of a waiting one only counts as seen again); the number
        stored or counted. Raises StoreFull, after keeping what fits, when MAX_REVIEW_ITEMS are waiting."""
        kept = self.record([], items).kept_for_review
        if kept < len(items):
            raise StoreFull(full_message(self.path))
        return kept

    def events(self, since: str = "", recipient: str = "", category: str = "") -> list[Event]:
        """Stored events, oldest first: those at or after `since` (an RFC 3339 prefix), of one recipient
        (any case), of one category."""
        where, params = ["time >= ?"], [since]
        if recipient:
            where.append("address = ?")
            params.append(address_key(recipient))
        if category:
            where.append("category = ?")
            params.append(category)
        with self._lock:
            rows = self._db.execute(f"{_SELECT_EVENTS} WHERE {' AND '.join(where)} ORDER BY seq", params).fetchall()
        return [Event(*row[1:]) for row in rows]

    def known(self, event_id: str) -> bool:
        """Whether an event with this id is stored (a consumer's dedupe)."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM event WHERE id = ?", (event_id,)).fetchone() is not None

    def suppressed(self) -> list[Standing]:
        """The suppressed addresses, first suppressed first."""
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_STANDING)} FROM suppression WHERE reason IS NOT NULL "
                                    "ORDER BY since, address").fetchall()  # fmt: skip
        return [Standing(*row) for row in rows]

    def forget(self, address: str) -> bool:
        """Take an address off the suppression list and forget its score; whether it was there."""
        return self._write("DELETE FROM suppression WHERE address = ?", [(address_key(address),)]) > 0

    # -- the outbox: each sink takes the events in commit order and moves its cursor once they are taken --

    def open_outbox(self, sink: str) -> None:
        """Start a sink's cursor at the newest event, the first time the sink is configured (what was stored
        before it existed is not sent); a sink that had one goes on from where it stopped."""
        self._write("INSERT OR IGNORE INTO outbox SELECT ?, coalesce(max(seq), 0) FROM event", [(sink,)])

    def unpublished(self, sink: str, limit: int) -> list[tuple[int, Event]]:
        """The next events a sink has not taken, in commit order, with their sequence numbers."""
        with self._lock:
            rows = self._db.execute(f"{_SELECT_EVENTS} WHERE seq > (SELECT published FROM outbox WHERE sink = ?) "
                                    "ORDER BY seq LIMIT ?", (sink, limit)).fetchall()  # fmt: skip
        return [(row[0], Event(*row[1:])) for row in rows]

    def taken(self, sink: str, seq: int) -> None:
        """The sink has taken every event up to `seq`."""
        self._write("UPDATE outbox SET published = max(published, ?) WHERE sink = ?", [(seq, sink)])

    def backlog(self, sink: str) -> tuple[int, str | None]:
        """How many events a sink has not taken yet, and the time of the oldest of them."""
        with self._lock:
            return self._db.execute("SELECT count(*), min(time) FROM event WHERE seq > "
                                    "(SELECT published FROM outbox WHERE sink = ?)", (sink,)).fetchone()  # fmt: skip

    def expire(self, before: str, sinks: Iterable[str]) -> int:
        """Delete events older than `before` that every given sink has taken; the number deleted. Standings that
        suppress nothing and last counted before then go too: they would be reset at their next bounce."""
        sinks = list(sinks)
        taken = ("AND seq <= (SELECT min(published) FROM outbox WHERE sink IN "
                 f"({', '.join('?' * len(sinks))}))") if sinks else ""  # fmt: skip
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                deleted = self._db.execute(f"DELETE FROM event WHERE time < ? {taken}", (before, *sinks)).rowcount
                self._db.execute("DELETE FROM suppression WHERE reason IS NULL AND day < ?", (before[:10],))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return deleted

    def review_items(self) -> list[ReviewItem]:
        """Every item waiting for review, oldest first."""
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM review ORDER BY id").fetchall()
        return [ReviewItem(**{name: None if name in _OPTIONAL and value == "" else value
                              for name, value in zip(_COLUMNS, row, strict=True)}) for row in rows]

    def forget_review(self, reviewed: Iterable[tuple[int, str]]) -> int:
        """Remove reviewed items, each named by its id and text (so a file from another store removes nothing);
        the number removed."""
        return self._write("DELETE FROM review WHERE id = ? AND text = ?", reviewed)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _create(path: str) -> None:
    """Create the file 0640 (SQLite would make it 0644). Only a file that is not there yet is opened here: closing a
    descriptor drops every POSIX lock the process holds on the file, those of its open SQLite connections too, and
    another process may then reset the write-ahead log under them (seen: the daemon's events vanished for the CLI)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, FILE_MODE))


def problems(path: str) -> list[str]:
    """What keeps a store file from working, without changing it (`config check`, the daemon's start): a
    directory that is not there or not writable, a file that is not SQLite, damaged or from a newer mailwarden,
    a full disk."""
    file = Path(path)
    if not file.exists():
        parent = file.parent
        if not parent.is_dir():
            return [f"{path}: directory {parent} does not exist"]
        return [] if os.access(parent, os.W_OK) else [f"{path}: directory {parent} is not writable"]
    found = []
    try:
        db = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                found.append(f"{path}: schema version {version} is newer than this mailwarden ({len(MIGRATIONS)})")
            check = "; ".join(row[0] for row in db.execute("PRAGMA quick_check").fetchall())
            if check != "ok":
                found.append(f"{path}: damaged: {check[:300]}")
        finally:
            db.close()
    except sqlite3.Error as exc:
        found.append(f"{path}: {exc}")
    free = os.statvfs(file.parent)
    if free.f_bavail * free.f_frsize < MIN_FREE_BYTES:
        found.append(f"{path}: the disk is full ({free.f_bavail * free.f_frsize} bytes free)")
    return found


def full_message(path: str) -> str:
    return (f"{path}: {MAX_REVIEW_ITEMS} bounces wait for review; no more are kept until some are labelled and "
            "forgotten")


def _row(item: ReviewItem) -> tuple:
    """The stored values of an item's inserted columns (None stored as "")."""
    return tuple("" if value is None else value for value in astuple(item)[: len(_INSERTED)])
