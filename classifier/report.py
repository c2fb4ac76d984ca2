"""From raw bytes to the report kind and the recipients it is about (no classification yet)."""

from __future__ import annotations

from .detect import detect_kind
from .envelope import EnvelopeFacts
from .extract import Finding, extract
from .parts import parse

# Which delivery-status Action values belong in the report of each kind.
ACTIONS_BY_KIND = {
    "failure": {"failed", "delayed"},
    "delay": {"delayed"},
    "success": {"delivered", "relayed", "expanded", "deliverable"},
}


def reported_findings(raw: bytes, envelope: EnvelopeFacts | None = None) -> tuple[str, list[Finding]]:
    """The kind of report and its recipients in order; look-alikes without recipients get an empty list.
    ``envelope``: what the MTA said about the message (None for a bare file)."""
    parsed = parse(raw)
    findings = extract(parsed)
    kind = detect_kind(parsed, findings, envelope)
    wanted = ACTIONS_BY_KIND.get(kind)
    if wanted is None:
        return kind, []
    selected = [f for f in findings if f.action is None or f.action.lower() in wanted]
    return kind, selected or findings
