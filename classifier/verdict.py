"""The classification results handed to the milter, and their one rendering as a header value."""

from __future__ import annotations

from dataclasses import dataclass

from ..sanitise import token

KINDS = ("failure", "delay", "success", "auto-reply", "feedback", "none")


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
    stage: str | None = None  # the SMTP stage the failure happened at, when the report says


@dataclass(frozen=True)
class BounceReport:
    """The analysis of one message: whether it is a bounce, its kind, and its recipients in order."""

    bounce: bool
    kind: str
    recipients: tuple[RecipientVerdict, ...]


def header_value(v: RecipientVerdict, model_id: str) -> str:
    """The X-Mailwarden-Bounce value: 'addr; category=..; type=..; status=..; confidence=0.97; model=..'."""
    status = token(v.status or "") or "none"
    return (
        f"{token(v.recipient) or 'unknown'}; category={token(v.category)}; type={token(v.type)}; "
        f"status={status}; confidence={v.confidence:.2f}; model={token(model_id)}"
    )
