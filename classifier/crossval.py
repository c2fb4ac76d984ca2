"""Grouped cross-validation: the honest estimate of how the model does on mail servers it has never seen.

Every MTA family of every corpus ("<source>/<family>", see corpus.family_of) is held out as a whole, trained on
the rest with the product's own training (train.fit: augmentation and seed phrasings included) and scored as
is, paraphrased and with the codes removed. Settings are decided on these figures, never on one corpus part.

    python -m mailwarden.classifier.crossval --corpus tests/data/dsn-corpus --corpus tests/data/bounce-extra \
        --corpus tests/data/mta-formats
    (add --folds 8 for a quicker grouped k-fold while trying settings; the default holds out one family at a time)

Training-time only: needs the ``train`` extra.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .augment import reply_bank, without_codes
from .corpus import Example, corpus_examples, jsonl_records, recipient_keys
from .evaluate import (
    PERTURBATIONS,
    Scores,
    format_scores,
    load_rewordings,
    perturbed,
    reworded,
    score,
    write_confusion_png,
)
from .extract import finding_from_text
from .model import DEFAULT_THRESHOLD, calibrate, top_category
from .taxonomy import FALLBACK_CATEGORY
from .train import TEMPERATURE, Trained, fit

FOLD_SEED = 0
RELIABILITY_BINS = 10

Fit = Callable[[list[Example]], Trained]


@dataclass(frozen=True)
class OutOfFold:
    """Class probabilities of every example, each from a model that never saw the example's MTA family."""

    examples: list[Example]
    labels: list[str]
    probabilities: dict[str, np.ndarray]  # per condition: rows in ``examples`` order, columns in ``labels``


def family_folds(examples: Sequence[Example], folds: int | None) -> list[set[str]]:
    """The held-out family sets: one family each (leave-one-group-out), or ``folds`` shuffled groups of them."""
    families = sorted({e.family for e in examples})
    if folds is None or folds >= len(families):
        return [{family} for family in families]
    random.Random(FOLD_SEED).shuffle(families)
    return [set(families[k::folds]) for k in range(folds)]


def out_of_fold(examples: list[Example], folds: int | None = None, fit_model: Fit | None = None,
                progress: Callable[[str], None] = print,
                rewordings: dict[tuple[str, int], str] | None = None) -> OutOfFold:
    """Probabilities for every example from the fold that held its family out: as is, with each perturbation,
    and hand-reworded when ``rewordings`` are given."""
    conditions: dict[str, Callable[[list[Example]], list[Example]]] = {
        name: lambda tested, name=name: perturbed(tested, name) for name in PERTURBATIONS}
    if rewordings:
        conditions["reworded"] = lambda tested: reworded(tested, rewordings)
    fit_model = fit_model or (lambda train_examples: fit(train_examples, with_seeds=True, progress=lambda _: None))
    labels = sorted({e.category for e in examples} | {FALLBACK_CATEGORY})  # the reply bank teaches 'other' too
    index = {e: i for i, e in enumerate(labels)}
    position = {id(e): i for i, e in enumerate(examples)}
    probabilities = {name: np.zeros((len(examples), len(labels))) for name in conditions}
    held_out_sets = family_folds(examples, folds)
    for k, held_out in enumerate(held_out_sets, start=1):
        tested = [e for e in examples if e.family in held_out]
        model = fit_model([e for e in examples if e.family not in held_out])
        columns = [index[c] for c in model.classes_]  # a fold may lack a category: its column stays 0
        for name, condition in conditions.items():
            rows = model.predict_proba([e.finding for e in condition(tested)])
            for example, row in zip(tested, rows, strict=True):
                probabilities[name][position[id(example)], columns] = row
        progress(f"fold {k}/{len(held_out_sets)}: held out {', '.join(sorted(held_out))} ({len(tested)} recipients)")
    return OutOfFold(examples, labels, probabilities)


def decisions(oof: OutOfFold, name: str, temperature: float = 1.0,
              threshold: float = DEFAULT_THRESHOLD) -> tuple[list[str], list[float]]:
    """Categories and confidences as the product decides them (calibrated, 'other' below the threshold)."""
    categories, confidences = [], []
    for row in oof.probabilities[name].tolist():
        prediction = top_category(calibrate(row, temperature), oof.labels, threshold)
        categories.append(prediction.category)
        confidences.append(prediction.confidence)
    return categories, confidences


def fit_temperature(oof: OutOfFold) -> float:
    """The softmax temperature that minimises the out-of-fold log loss (as is): calibrated confidence."""
    truth = [oof.labels.index(e.category) for e in oof.examples]
    rows = oof.probabilities["as-is"]

    def log_loss(temperature: float) -> float:
        calibrated = np.array([calibrate(row, temperature) for row in rows.tolist()])
        return float(-np.mean(np.log(np.maximum(calibrated[np.arange(len(truth)), truth], 1e-12))))

    return min((t / 20 for t in range(6, 61)), key=log_loss)


def reliability(correct: Sequence[bool], confidences: Sequence[float]) -> list[tuple[float, float, int]]:
    """(mean confidence, accuracy, count) per confidence bin: what a reliability diagram draws."""
    bins: dict[int, list[tuple[bool, float]]] = defaultdict(list)
    for ok, confidence in zip(correct, confidences, strict=True):
        bins[min(int(confidence * RELIABILITY_BINS), RELIABILITY_BINS - 1)].append((ok, confidence))
    return [(float(np.mean([c for _, c in b])), float(np.mean([ok for ok, _ in b])), len(b))
            for _, b in sorted(bins.items())]


def expected_calibration_error(points: list[tuple[float, float, int]]) -> float:
    total = sum(n for _, _, n in points)
    return sum(n * abs(confidence - accuracy) for confidence, accuracy, n in points) / max(total, 1)


def write_reliability_png(curves: dict[str, list[tuple[float, float, int]]], path: Path) -> None:
    """Accuracy against confidence per bin, one line per curve, the diagonal for perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for name, points in curves.items():
        ax.plot([c for c, _, _ in points], [a for _, a, _ in points], marker="o", label=name)
    ax.set_xlabel("confidence (top category)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title("Reliability, grouped cross-validation")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def per_group(oof: OutOfFold, predicted: list[str], key: Callable[[Example], str]) -> list[tuple[str, Scores]]:
    """Scores of one condition per group of examples (per source, per MTA family)."""
    groups: dict[str, list[tuple[Example, str]]] = defaultdict(list)
    for example, guess in zip(oof.examples, predicted, strict=True):
        groups[key(example)].append((example, guess))
    return [(name, score([e for e, _ in members], [p for _, p in members])) for name, members in sorted(groups.items())]


def source_of(example: Example) -> str:
    return example.family.split("/", 1)[0]


def leave_providers_out(examples: list[Example], folds: int, temperature: float,
                        progress: Callable[[str], None] = print) -> dict[str, float]:
    """Accuracy on the reply bank's replies of providers held out of training (their paraphrases too), each as
    Postfix relays it ("host ... said: <reply> (in reply to RCPT TO command)"), as is and without codes: how
    the model reads a provider whose wording it has never seen."""
    bank = reply_bank()
    providers = sorted({reply.who for reply in bank})
    random.Random(FOLD_SEED).shuffle(providers)
    right = {"as-is": 0, "codes-removed": 0}
    total = 0
    for k in range(folds):
        held_out = set(providers[k::folds])
        model = fit(examples, with_seeds=True, progress=lambda _: None,
                    bank=[r for r in bank if r.who not in held_out])
        tested = [r for r in bank if r.who in held_out and not r.paraphrase and r.category != FALLBACK_CATEGORY]
        relayed = [finding_from_text("user@example.org", f"host mx.example.net[192.0.2.1] said: {r.text} "
                                     "(in reply to RCPT TO command)") for r in tested]
        for name, findings in (("as-is", relayed), ("codes-removed", [without_codes(f) for f in relayed])):
            for reply, row in zip(tested, model.predict_proba(findings), strict=True):
                prediction = top_category(calibrate(row, temperature), model.classes_, DEFAULT_THRESHOLD)
                right[name] += prediction.category == reply.category
        total += len(tested)
        progress(f"providers fold {k + 1}/{folds}: {len(held_out)} providers, {len(tested)} replies")
    return {name: count / max(total, 1) for name, count in right.items()}


AGREED = "(agreed)"  # the row of recipients on which all of an item's readers agree


def load_readers(path: Path) -> list[dict]:
    """Independent readers' labels of corpus recipients: one JSON line each, ``id`` (the e-mail), ``index`` (the
    recipient's place among the e-mail's examples, corpus.recipient_keys), ``recipient`` (the address extraction
    reports for it) and ``readers`` (reader -> category)."""
    return list(jsonl_records(path))


def reader_agreement(examples: Sequence[Example], predicted: Sequence[str],
                     readers: list[dict]) -> dict[str, tuple[int, float, float]]:
    """Per reader, and for the recipients on which an item's readers all agree (AGREED): how many recipients,
    how often the corpus label and how often the model's decision is the reader's category.

    Readers label from CATEGORIES.md alone, without the corpus labels: how often they agree with the corpus says
    how reproducible the labels are, and how often the model agrees with them says what a reader would score it.
    Items of e-mails not among the examples are skipped; an item whose recipient is not the example's is an
    error (labels read another way, e.g. --original-labels, place recipients differently).
    """
    position = {key: i for i, key in enumerate(recipient_keys(examples))}
    tallies: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for item in readers:
        i = position.get((item["id"], item["index"]))
        if i is None:
            continue
        if examples[i].finding.recipient != item["recipient"]:
            raise ValueError(f"readers' recipient {item['index']} of {item['id']} is {item['recipient']!r}, "
                             f"the corpora's {examples[i].finding.recipient!r}")
        votes = dict(item["readers"])
        if len(votes) > 1 and len(set(votes.values())) == 1:
            votes[AGREED] = next(iter(votes.values()))
        for name, category in votes.items():
            tally = tallies[name]
            tally[0] += 1
            tally[1] += examples[i].category == category
            tally[2] += predicted[i] == category
    return {name: (n, corpus / n, model / n) for name, (n, corpus, model) in sorted(tallies.items())}


def load(roots: list[Path], corrected: bool) -> list[Example]:
    return [e for root in roots for e in corpus_examples(root, corrected=corrected)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Leave-one-MTA-family-out cross-validation over the corpora.")
    parser.add_argument("--corpus", type=Path, action="append", required=True, help="repeat for more corpora")
    parser.add_argument("--folds", type=int, help="grouped k-fold instead of leave-one-family-out")
    parser.add_argument("--original-labels", action="store_true", help="ignore the corpora's corrections.jsonl")
    parser.add_argument("--reworded", type=Path, help="directory of hand-reworded diagnostics (another condition)")
    parser.add_argument("--families", action="store_true", help="also print the per-family table (as is)")
    parser.add_argument("--png", type=Path, help="confusion matrix (as is) of the calibrated decisions")
    parser.add_argument("--reliability-png", type=Path, help="reliability diagram before and after calibration")
    parser.add_argument("--readers", type=Path,
                        help="independent readers' labels (JSONL): their agreement with the labels and the model")
    parser.add_argument("--providers", type=int, metavar="FOLDS",
                        help="only leave-providers-out over the reply bank (FOLDS groups of providers)")
    args = parser.parse_args(argv)
    if args.readers and args.original_labels:
        parser.error("--readers: the readers' file places recipients as the corrected labels do")
    examples = load(args.corpus, corrected=not args.original_labels)
    if args.providers:
        scores = leave_providers_out(examples, args.providers, TEMPERATURE,
                                     progress=lambda line: print(line, file=sys.stderr, flush=True))
        print("  ".join(f"{name} {value:.3f}" for name, value in scores.items()))
        return 0
    print(f"{len(examples)} recipients, {len({e.group for e in examples})} e-mails, "
          f"{len({e.family for e in examples})} families", file=sys.stderr)
    oof = out_of_fold(examples, args.folds, progress=lambda line: print(line, file=sys.stderr, flush=True),
                      rewordings=load_rewordings(args.reworded) if args.reworded else None)
    temperature = fit_temperature(oof)
    print(f"fitted temperature {temperature:.2f}")
    results: dict[str, Scores] = {}
    for name in oof.probabilities:
        predicted, _ = decisions(oof, name, temperature)
        results[name] = score(oof.examples, predicted)
        print(format_scores(results[name], f"grouped CV, {name}"))
    predicted, _ = decisions(oof, "as-is", temperature)
    tables = [("source", source_of)] + ([("family", lambda e: e.family)] if args.families else [])
    for title, key in tables:
        print(f"{title:<40} {'e-mails':>7} {'e-mail':>7} {'recip.':>7} {'n':>4}")
        for name, s in per_group(oof, predicted, key):
            print(f"{name:<40} {s.emails:>7} {s.email_accuracy:>7.3f} {s.recipient_accuracy:>7.3f} {s.recipients:>4}")
    if args.readers:
        print(f"{'reader':<10} {'recip.':>6} {'labels':>7} {'model':>7}")
        for name, (n, labels, model) in reader_agreement(oof.examples, predicted, load_readers(args.readers)).items():
            print(f"{name:<10} {n:>6} {labels:>7.3f} {model:>7.3f}")
    curves = {}
    for name, t in (("uncalibrated", 1.0), (f"temperature {temperature:.2f}", temperature)):
        predicted, confidences = decisions(oof, "as-is", t, threshold=0.0)
        curves[name] = reliability([p == e.category for p, e in zip(predicted, oof.examples, strict=True)],
                                   confidences)
        print(f"expected calibration error, {name}: {expected_calibration_error(curves[name]):.3f}")
    if args.reliability_png:
        write_reliability_png(curves, args.reliability_png)
    if args.png:
        write_confusion_png(results["as-is"], args.png, "grouped cross-validation, as is")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
