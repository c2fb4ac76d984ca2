"""SMTP reply codes and RFC 3463 enhanced status codes as bounce text writes them: one pattern for each.

Both are scanned over whole attacker-controlled texts, so each starts with a character class and checks what
precedes that character in a look-behind placed after it ("[245](?<![\\d.][245])" rather than
"(?<![\\d.])[245]"): the same matches, but Python's re can skip to candidate characters instead of trying the
look-behind at every position (2-5x faster). Digits have no case, so they work on lower-cased text as well.
"""

from __future__ import annotations

import re

# "5.1.1", not part of a longer dotted number (a version or an IP address).
STATUS_RE = re.compile(r"([245])(?<![\d.][245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
# "550" standing as a word ("550 5.1.1", "550-", "550:", "ERROR_CODE :550,"), not part of a word, a dotted number
# or a group of an IPv6 address (":220:" in "[2606:2800:220:6d::1]").
REPLY_CODE_RE = re.compile(r"([245](?<![\w.][245])[0-5]\d)(?![\w.]|(?<=:\d{3}):)")


def find_status(text: str) -> str | None:
    """The first failure or delay code (4.x.x/5.x.x) in the text, else the first success code.

    A transcript states the successes before the failure ("250 2.1.5 Ok ... 451 4.3.0 queue file write error").
    """
    first = STATUS_RE.search(text)
    if first is None:
        return None
    failure = first if first.group(1) != "2" else next((m for m in STATUS_RE.finditer(text, first.end())
                                                        if m.group(1) != "2"), first)
    return ".".join(failure.groups())


def find_reply_code(text: str) -> str | None:
    """The first SMTP error reply code (4xx/5xx) in the text, else the first success code."""
    codes = REPLY_CODE_RE.findall(text)
    return next((c for c in codes if c[0] in "45"), codes[0] if codes else None)


def is_generic(status: str) -> bool:
    """Whether an enhanced status code is a class alone (X.0.0): it says permanent or temporary, nothing more."""
    return status.endswith(".0.0")
