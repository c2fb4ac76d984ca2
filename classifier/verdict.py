"""The classification results handed to the milter, and their one rendering as a header value."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..headers import clean

KINDS = ("failure", "delay", "success", "auto-reply", "feedback", "none")
# Control characters, angle brackets and the field separator would let a hostile bounce forge header fields.
_UNSAFE_RE = re.compile(r"[\x00-\x1f\x7f<>;\s]+")
MAX_ADDRESS = 254


@dataclass(frozen=True)
class RecipientVerdict:
    """What one failed (or delayed / delivered) recipient got, and why."""

    recipient: str
    status: str | None
    action: str | None
    diagnostic: str
    remote_mta: str | None
    reply_code: str | None
    category: str
    type: str
    confidence: float
    evidence: str  # the text the model read, for the decision log


@dataclass(frozen=True)
class BounceReport:
    """The analysis of one message: whether it is a bounce, its kind, and its recipients in order."""

    bounce: bool
    kind: str
    recipients: tuple[RecipientVerdict, ...]


def sanitise(value: str, limit: int = MAX_ADDRESS) -> str:
    """A single safe token of printable ASCII (other characters become %XX, as in every field we write):
    no CR/LF/control characters, brackets, separators or blanks; bounded length."""
    return _UNSAFE_RE.sub("", clean(value, limit))


def header_value(v: RecipientVerdict, model_id: str) -> str:
    """The X-Mailwarden-Bounce value: 'addr; category=..; type=..; status=..; confidence=0.97; model=..'."""
    status = sanitise(v.status or "") or "none"
    return (
        f"{sanitise(v.recipient) or 'unknown'}; category={sanitise(v.category)}; type={sanitise(v.type)}; "
        f"status={status}; confidence={v.confidence:.2f}; model={sanitise(model_id)}"
    )
