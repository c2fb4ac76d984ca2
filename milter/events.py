"""Bounce events: one per labelled failed recipient, the record that senders act on.

An event is what the X-Mailwarden-Bounce field says, plus where it came from (queue id, reporting MTA) and the
failure text, so that a consumer that never sees the message can act: suppress the address, pause a campaign.
Every value is sanitised and bounded here, once, because events leave the machine (broker, webhook, CLI).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields

from .classifier.verdict import RecipientVerdict
from .sanitise import LIMIT_NAME, clean, token

DIAGNOSTIC_LIMIT = 500  # characters: enough for a provider's whole reply, short enough for a broker message
NOT_A_FAILURE = "none"  # the type of a delivered or delayed recipient listed in a failure report: no event
_REPORTING_MTA = re.compile(rb"(?im)^Reporting-MTA:[ \t]*(?:dns[ \t]*;)?[ \t]*([^\s;]{1,255})")
REPORTING_MTA_WINDOW = 64 * 1024  # the delivery-status part comes early; the attached original is not searched


@dataclass(frozen=True)
class Event:
    """One failed recipient of one bounce, as stored and published (the JSON keys are the field names)."""

    id: str  # a UUID: consumers dedupe on it (delivery is at least once)
    time: str  # RFC 3339, UTC, when mailwarden labelled it
    recipient: str
    category: str
    type: str  # hard / soft / transient / unknown
    status: str | None  # the RFC 3463 status, None when the bounce stated none
    confidence: float
    model: str
    queue_id: str
    reporting_mta: str
    diagnostic: str

    def json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))


FIELDS = tuple(f.name for f in fields(Event))


def reporting_mta_of(message: bytes, client_name: str, client_ip: str) -> str:
    """The MTA that wrote the report: its Reporting-MTA field (RFC 3464), else the client that handed it to us
    (by name when the MTA had one for it)."""
    found = _REPORTING_MTA.search(message, 0, REPORTING_MTA_WINDOW)
    if found:
        return clean(found[1], LIMIT_NAME)
    return clean(client_name if client_name not in ("", "unknown") else client_ip, LIMIT_NAME)


def events_of(verdicts: Iterable[RecipientVerdict], *, time: str, model: str, queue_id: str,
              reporting_mta: str) -> list[Event]:  # fmt: skip
    """The events of a bounce's reported verdicts: every one but the recipients it says were not failures."""
    return [
        Event(
            id=str(uuid.uuid4()), time=time, recipient=token(v.recipient) or "unknown", category=v.category,
            type=v.type, status=clean(v.status, 32) or None, confidence=v.confidence, model=model,
            queue_id=clean(queue_id, LIMIT_NAME), reporting_mta=reporting_mta,
            diagnostic=clean(" ".join(v.diagnostic.split()), DIAGNOSTIC_LIMIT),
        )  # fmt: skip
        for v in verdicts
        if v.type != NOT_A_FAILURE
    ]
