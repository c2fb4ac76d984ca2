"""Labelled examples: the vendored DSN corpus (labels.jsonl + eml/) and user JSONL files for custom training."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from .codes import REPLY_CODE_RE, STATUS_RE
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
    family: str = ""  # "<source>/<MTA family>" that wrote it: the unit held out together in cross-validation
    weight: float = 1.0  # how much it counts in training against the others


# An administrator's own label counts this many times a shipped example: a handful of them must be able to teach
# a category, or overrule the shipped reading of a wording, against thousands of shipped texts.
USER_WEIGHT = 10.0


CORRECTIONS = "corrections.jsonl"


def jsonl_records(path: Path) -> Iterator[dict]:
    """The JSON objects of a JSONL file, one per non-empty line."""
    return (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def recipient_keys(examples: Iterable[Example]) -> list[tuple[str, int]]:
    """(e-mail, place among its examples) of each example: how rewordings and readers' labels name a corpus
    recipient (a recipient with no example, such as a delayed one, takes no place)."""
    seen: dict[str, int] = {}
    keys = []
    for example in examples:
        seen[example.group] = seen.get(example.group, -1) + 1
        keys.append((example.group, seen[example.group]))
    return keys


def corpus_labels(root: Path, corrected: bool = True) -> list[dict]:
    """labels.jsonl of a corpus, with the recorded label corrections (corrections.jsonl) applied.

    A correction names the message, the recipient's index and the old label, so a correction that no longer
    matches its label is an error rather than a silent change.
    """
    labels = list(jsonl_records(root / "labels.jsonl"))
    path = root / CORRECTIONS
    if corrected and path.exists():
        by_id = {label["id"]: label for label in labels}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            fix = json.loads(line)
            recipient = by_id[fix["id"]]["recipients"][fix["index"]]
            if recipient["category"] != fix["old"]:
                raise ValueError(f"{path}:{number}: {fix['id']}[{fix['index']}] is {recipient['category']!r}, "
                                 f"not {fix['old']!r}")
            recipient["category"] = fix["new"]
    return labels


def family_of(root: Path, label: dict) -> str:
    """The cross-validation group: the source and the MTA family (or provider) that wrote the report."""
    return f"{label.get('source') or root.name}/{label.get('family') or label['module']}"


def corpus_examples(root: Path, part: str | None = None, corrected: bool = True) -> Iterator[Example]:
    """Failed-recipient examples (of one part, or all), aligned with labels.jsonl in order of appearance.

    A corpus that is not split into parts belongs to every part.
    """
    for label in corpus_labels(root, corrected):
        if (part is not None and label.get("part", part) != part) or not label["is_bounce"]:
            continue
        findings = reported_findings((root / label["file"]).read_bytes())[1]
        family = family_of(root, label)
        for finding, recipient in zip(align(findings, label["recipients"]), label["recipients"], strict=True):
            if recipient["category"] != NOT_A_BOUNCE:
                yield Example(finding, recipient["category"], label["id"], family=family)


def align(findings: list[Finding], recipients: list[dict]) -> list[Finding]:
    """One finding per labelled recipient: the one with its address where the label states it, else by position
    (extra findings dropped, missing ones padded with the last, or an empty, one)."""
    padding = findings[-1:] or [Finding(recipient="")]
    by_position = (findings + padding * len(recipients))[:len(recipients)]
    by_address = {f.recipient.lower(): f for f in findings}
    return [by_address.get((labelled_address(r) or "").lower(), positional)
            for r, positional in zip(recipients, by_position, strict=True)]


def labelled_address(recipient: dict) -> str | None:
    """The address the sender wrote ("original", when the report states one) else the failed one ("address").

    The product reports the first (extract.recipients_of): it is the address a sender can stop using.
    """
    original = recipient.get("original") or ""
    return original if "@" in original else recipient.get("address") or None  # "": the message states none


def delivered(recipient: dict) -> bool:
    """A recipient the report says was delivered (not-a-bounce with a 2.x.x status): a failure report lists it
    beside the failed ones, and the product reports only those that failed or wait."""
    return recipient.get("category") == NOT_A_BOUNCE and (recipient.get("status") or "").startswith("2")


# Fields of a finding that a text example may state (as `mailwarden bounces review --json` lists them), with the
# pattern a stated value must match; what a line does not state is read from its text.
STATED_FIELDS = {"status": STATUS_RE, "reply_code": REPLY_CODE_RE, "stage": re.compile(r"[a-z]+"),
                 "remote_mta": re.compile(r".*")}


def jsonl_examples(path: Path) -> Iterator[Example]:
    """User examples: {"text": ...} or {"eml": path relative to the file}, plus "category" and optional "type".

    A text line may state the finding's fields (STATED_FIELDS); each it states, null included, is taken as
    given, so a reviewed bounce is learnt as the milter read it. A line with an empty category (not labelled
    yet) is skipped.
    """
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        if "category" not in record or not ("text" in record or "eml" in record):
            raise ValueError(f"{path}:{number}: needs \"category\" and \"text\" or \"eml\"")
        if not record["category"]:
            continue
        group = f"{path.name}:{number}"
        if "eml" in record:
            findings = reported_findings((path.parent / record["eml"]).read_bytes())[1]
        else:
            stated = {name: record[name] for name in STATED_FIELDS if name in record}
            for name, value in stated.items():
                if value is not None and not (isinstance(value, str) and STATED_FIELDS[name].fullmatch(value)):
                    raise ValueError(f"{path}:{number}: {name} {value!r} is not valid")
            findings = [replace(finding_from_text("", record["text"]), **stated)]
        for finding in findings[:1] if "text" in record else findings:
            yield Example(finding, record["category"], group, record.get("type"), weight=USER_WEIGHT)
