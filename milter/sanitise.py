"""The one sanitiser for every value mailwarden writes into a header or a log line.

Values from the SMTP client (HELO, MAIL FROM), from DNS (PTR names) and from a bounce's text are
attacker-controlled. `clean()` turns any of them into printable ASCII of bounded length (other bytes become
%XX, so nothing is dropped silently). It lives apart from headers.py, and imports nothing but the standard
library, so that the bounce classifier can use it without pulling in the milter's checks and their DNS.
"""

from __future__ import annotations

import re

LIMIT_NAME = 255  # a domain name (HELO, PTR name, receiver)
LIMIT_ADDRESS = 320  # local-part (64) + "@" + domain (255)
LIMIT_TEXT = 200  # free text: problems, mechanisms, reasons
_ESCAPES = {b: f"%{b:02X}" for b in (*range(0x20), *range(0x7F, 0x100))}
_NOT_IN_TOKEN_RE = re.compile(r"[<>;\s]+")  # after clean(), so control characters are already %XX


def clean(value: str | bytes | None, limit: int = LIMIT_TEXT) -> str:
    """Printable ASCII only (other characters become %XX of their UTF-8 bytes), at most `limit` chars."""
    if value is None:
        return ""
    raw = value if isinstance(value, bytes) else _utf8(value)
    out = raw.decode("latin-1").translate(_ESCAPES)  # one char per byte, so every byte is seen
    if len(out) > limit:
        out = out[: limit - 3] + "..."
    return out


def _utf8(value: str) -> bytes:
    """The bytes behind a str: pymilter's undecodable bytes come back as they were (surrogateescape), any
    other lone surrogate is kept visible rather than raising."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def token(value: str, limit: int = LIMIT_ADDRESS) -> str:
    """`clean()`, then without blanks, angle brackets or ';': one value inside a 'key=value; ...' field that a
    hostile bounce can neither end early nor extend with key=value pairs of its own."""
    return _NOT_IN_TOKEN_RE.sub("", clean(value, limit))
