"""The embedded store: one SQLite file (stdlib sqlite3, WAL) for what mailwarden keeps between messages.

Today it holds the bounce recipients kept for review; the bounce events, suppression list and outbox of
issue 13 come as further migrations. The schema version is SQLite's `user_version`: opening a file applies
the MIGRATIONS it has not had yet, in order and each in its own transaction, so an older file is upgraded in
place and a file from a newer mailwarden is refused rather than misread.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from pathlib import Path

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
)


class StoreError(Exception):
    """The store file cannot be used: unreadable, not SQLite, or written by a newer mailwarden."""


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
            if create:
                os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, FILE_MODE))  # SQLite would create it 0644
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

    def keep_for_review(self, items: list[ReviewItem]) -> int:
        """Store items in one transaction (a repeat of a waiting one only counts as seen again); the number
        stored or counted. Raises StoreFull, after keeping what fits, when MAX_REVIEW_ITEMS are waiting."""
        kept = self._write(_INSERT_REVIEW, (_row(item) + (MAX_REVIEW_ITEMS,) for item in items))
        if kept < len(items):
            raise StoreFull(f"{self.path}: {MAX_REVIEW_ITEMS} bounces wait for review; no more are kept until "
                            "some are labelled and forgotten")
        return kept

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


def _row(item: ReviewItem) -> tuple:
    """The stored values of an item's inserted columns (None stored as "")."""
    return tuple("" if value is None else value for value in astuple(item)[: len(_INSERTED)])
