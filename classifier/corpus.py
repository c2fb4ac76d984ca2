"""Labelled examples: the vendored DSN corpus (labels.jsonl + eml/) and user JSONL files for custom training."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .extract import Finding, finding_from_text
from .report import reported_findings
from .taxonomy import NOT_A_BOUNCE


@dataclass(frozen=True)
class Example:
    """One recipient-level training/evaluation example."""

    finding: Finding
    category: str
    group: str  # the e-mail (or example) it belongs to, for per-e-mail scoring
    type: str | None = None  # bounce type for a category the taxonomy does not know


def corpus_examples(root: Path, part: str) -> Iterator[Example]:
    """Failed-recipient examples of one corpus part, aligned with labels.jsonl in order of appearance."""
    for line in (root / "labels.jsonl").read_text(encoding="utf-8").splitlines():
        label = json.loads(line)
        if label["part"] != part or not label["is_bounce"]:
            continue
        findings = reported_findings((root / label["file"]).read_bytes())[1]
        for finding, recipient in zip(align(findings, len(label["recipients"])), label["recipients"], strict=True):
            if recipient["category"] != NOT_A_BOUNCE:
                yield Example(finding, recipient["category"], label["id"])


def align(findings: list[Finding], wanted: int) -> list[Finding]:
    """Exactly ``wanted`` findings: extra ones dropped, missing ones padded with the last (or an empty) one."""
    padding = findings[-1:] or [Finding(recipient="")]
    return (findings + padding * wanted)[:wanted]


def jsonl_examples(path: Path) -> Iterator[Example]:
    """User examples: {"text": ...} or {"eml": path relative to the file}, plus "category" and optional "type"."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        if "category" not in record or not ("text" in record or "eml" in record):
            raise ValueError(f"{path}:{number}: needs \"category\" and \"text\" or \"eml\"")
        group = f"{path.name}:{number}"
        if "eml" in record:
            findings = reported_findings((path.parent / record["eml"]).read_bytes())[1]
        else:
            findings = [finding_from_text("", record["text"])]
        for finding in findings[:1] if "text" in record else findings:
            yield Example(finding, record["category"], group, record.get("type"))
