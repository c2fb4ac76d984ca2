"""Results of checks already run, reused while every DNS answer they were computed from is still valid.

With its DNS answers cached, SPF still costs pyspf a fresh query object, a record parse and address parsing
per message; a sender that writes again within the TTLs gets the stored result instead. Keyed by check and
subject (the whole of what a check may read), held until the earliest expiry of the answers the check read,
bounded in size, never holding a temperror (a DNS fault is not an answer). One cache per engine, so a reload
starts empty.
"""

from __future__ import annotations

import threading

from . import metrics
from .checks.base import CheckResult, Subject
from .expiring import ExpiringLru


class Verdicts:
    def __init__(self, size: int) -> None:
        self._entries: ExpiringLru[tuple[str, Subject], CheckResult] = ExpiringLru(size)
        self._lock = threading.Lock()

    def get(self, check: str, subject: Subject) -> CheckResult | None:
        with self._lock:
            result = self._entries.get((check, subject))
        if result is not None:
            metrics.VERDICT_CACHE_HITS.inc()
        return result

    def put(self, check: str, subject: Subject, result: CheckResult, expires: float) -> None:
        if result.result != "temperror":
            with self._lock:
                self._entries.put((check, subject), result, expires)
