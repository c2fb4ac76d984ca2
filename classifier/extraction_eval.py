"""Recipient-address recall and precision of extraction, per corpus and per source / MTA family.

    python -m mailwarden.classifier.extraction_eval [--dsn-corpus DIR] [--extra DIR] [--misses]

Extraction is measured on its own because a missed or wrong address caps everything after it: a bounce whose
failed recipient is not found labels nobody, and a wrong address labels someone else (the original sender,
if the product mistakes it for the recipient). Ground truth, whichever of it is present:

- the DSN corpus: ``review/*.addresses.jsonl``, ``{"id", "recipients": [address | null, ...]}`` (the failed
  recipients in order; null where the message states no address), grouped by the corpus's ``module``;
- the extra bounces: ``labels.jsonl``, ``recipients[].address`` (or ``original``, the address the sender wrote,
  when the report states one: that is the address the product reports) with ``source`` and ``family``.

A message counts with the addresses the product reports for a failure or delay (none for anything else)
against the failed recipients' addresses (none for a look-alike), compared as sets of mailboxes
(addresses.canonical). Recall is over the expected addresses, precision over the reported ones (less those
reported where the truth says the message states no address); "unstated" counts expected addresses the
message never writes out (an AOL screen name, say), which no extraction finds; "undetect" those in messages
the product does not take for a failure or delay (detection's misses, not extraction's).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .addresses import canonical
from .corpus import delivered, jsonl_records, labelled_address
from .report import reported_findings

DEFAULT_DSN_CORPUS = Path("tests/data/dsn-corpus")
DEFAULT_EXTRA = Path("tests/data/bounce-extra")
DEFAULT_EXTRAS = (DEFAULT_EXTRA, Path("tests/data/mta-formats"))
BOUNCE_KINDS = ("failure", "delay")


@dataclass(frozen=True)
class Truth:
    """The failed recipients' addresses of one message, and where the message comes from."""

    id: str
    path: Path
    corpus: str
    family: str
    addresses: tuple[str | None, ...]  # in order of appearance; None where the message states no address


@dataclass
class Tally:
    """Address counts of a group of messages."""

    messages: int = 0
    expected: int = 0
    reported: int = 0
    matched: int = 0
    unstated: int = 0
    undetected: int = 0
    misses: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.messages += other.messages
        self.expected += other.expected
        self.reported += other.reported
        self.matched += other.matched
        self.unstated += other.unstated
        self.undetected += other.undetected
        self.misses += other.misses

    @property
    def recall(self) -> float:
        return self.matched / self.expected if self.expected else 1.0

    @property
    def precision(self) -> float:
        return self.matched / self.reported if self.reported else 1.0


def dsn_corpus_addresses(root: Path = DEFAULT_DSN_CORPUS) -> dict[str, tuple[str | None, ...]]:
    """Message id -> failed recipients' addresses, from every review/*.addresses.jsonl present."""
    return {entry["id"]: tuple(entry["recipients"])
            for path in sorted((root / "review").glob("*.addresses.jsonl")) for entry in jsonl_records(path)}


def dsn_corpus_truth(root: Path = DEFAULT_DSN_CORPUS) -> list[Truth]:
    """Ground truth of the DSN corpus messages that have reviewed addresses (look-alikes expect none)."""
    addresses = dsn_corpus_addresses(root)
    if not addresses:
        return []
    return [Truth(label["id"], root / label["file"], "dsn-corpus", label["module"],
                  addresses[label["id"]] if label["is_bounce"] else ())
            for label in jsonl_records(root / "labels.jsonl") if label["id"] in addresses]


def extra_truth(root: Path = DEFAULT_EXTRA) -> list[Truth]:
    """Ground truth of the extra bounces (labels.jsonl), grouped by source project and MTA family."""
    path = root / "labels.jsonl"
    if not path.exists():
        return []
    return [Truth(label["id"], root / label["file"], label["source"], label["family"],
                  tuple(labelled_address(r) for r in label["recipients"] if not delivered(r))
                  if label["is_bounce"] and label.get("kind") != "success" else ())  # nothing failed or waits
            for label in jsonl_records(path)]


def reported_addresses(raw: bytes) -> list[str] | None:
    """The addresses the product labels as failed recipients of a message; None when it is not detected as a
    failure or delay (detection's miss, not extraction's)."""
    kind, findings = reported_findings(raw)
    return [f.recipient for f in findings] if kind in BOUNCE_KINDS else None


def measure(truth: Truth) -> Tally:
    """The counts of one message, with a line saying what went wrong when it is not exactly right."""
    raw = truth.path.read_bytes()
    expected = {canonical(a) for a in truth.addresses if a}
    found = reported_addresses(raw)
    reported = {canonical(a) for a in found or () if a}  # a recipient without address is a miss
    # Where the message states no address (null), whatever the product reports for it can be neither checked
    # nor counted against it.
    wrong = reported - expected
    unverifiable = min(len(wrong), truth.addresses.count(None))
    lowered = raw.lower()
    misses = [] if expected == reported and not unverifiable else [
        f"{truth.id}: missed {sorted(expected - reported)}, wrong {sorted(wrong)}"
        + (f" ({unverifiable} not stated in the message)" if unverifiable else "")]
    return Tally(1, len(expected), len(reported) - unverifiable, len(expected & reported),
                 sum(a.encode() not in lowered for a in expected), len(expected) if found is None else 0, misses)


def grouped(measured: Iterable[tuple[Truth, Tally]], key: Callable[[Truth], str]) -> dict[str, Tally]:
    """The counts added up per group (``key`` names a message's group)."""
    groups: dict[str, Tally] = {}
    for truth, counts in measured:
        groups.setdefault(key(truth), Tally()).add(counts)
    return groups


def total(groups: dict[str, Tally]) -> Tally:
    """All groups added up."""
    whole = Tally()
    for group in groups.values():
        whole.add(group)
    return whole


def format_table(title: str, groups: dict[str, Tally], misses: bool = False) -> str:
    """One line per group and one for all of them (and, asked for, the messages that are not exactly right)."""
    heads = ("msgs", "expect", "report", "match", "recall", "prec", "unstated", "undetect")
    lines = [f"{title:<40}" + "".join(f"{head:>9}" for head in heads)]
    for name, group in [*sorted(groups.items()), ("all", total(groups))]:
        counts = (group.messages, group.expected, group.reported, group.matched)
        lines.append(f"  {name[:38]:<38}" + "".join(f"{n:>9}" for n in counts)
                     + f"{group.recall:>9.3f}{group.precision:>9.3f}{group.unstated:>9}{group.undetected:>9}")
        if misses and name != "all":
            lines += [f"      {miss}" for miss in group.misses]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Recipient-address recall and precision of extraction.")
    parser.add_argument("--dsn-corpus", type=Path, default=DEFAULT_DSN_CORPUS)
    parser.add_argument("--extra", type=Path, action="append",
                        help="a corpus with addresses in labels.jsonl (repeat; default: bounce-extra, mta-formats)")
    parser.add_argument("--misses", action="store_true", help="list every message that is not exactly right")
    args = parser.parse_args(argv)
    truths = dsn_corpus_truth(args.dsn_corpus) + [t for root in args.extra or DEFAULT_EXTRAS for t in extra_truth(root)]
    if not truths:
        parser.error("no ground truth found (review/*.addresses.jsonl, labels.jsonl)")
    measured = [(truth, measure(truth)) for truth in truths]
    print(format_table("per corpus", grouped(measured, lambda t: t.corpus)))
    print()
    print(format_table("per corpus / MTA family", grouped(measured, lambda t: f"{t.corpus}/{t.family}"), args.misses))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
