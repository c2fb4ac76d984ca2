"""Results of checks already run, reused while every DNS answer they were computed from is still valid.

With its DNS answers cached, SPF still costs pyspf a fresh query object, a record parse and address parsing
per message; a sender that writes again within the TTLs gets the stored result instead. Keyed by check and
subject (the whole of what a check may read), held until the earliest expiry of the answers the check read,
bounded in size, never holding a temperror (a DNS fault is not an answer). One cache per engine, so a reload
starts empty.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from . import metrics
from .checks.base import CheckResult, Subject


class Verdicts:
    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, Subject], tuple[float, CheckResult]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, check: str, subject: Subject) -> CheckResult | None:
        key = (check, subject)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
        metrics.VERDICT_CACHE_HITS.inc()
        return entry[1]

    def put(self, check: str, subject: Subject, result: CheckResult, expires: float) -> None:
        if result.result == "temperror" or self.size <= 0:
            return
        with self._lock:
            self._entries[(check, subject)] = (expires, result)
            self._entries.move_to_end((check, subject))
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
