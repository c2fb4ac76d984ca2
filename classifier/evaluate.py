"""Scoring: per-e-mail and per-recipient accuracy, macro-F1, per-category P/R/F1, confusion-matrix PNG.

Figures for docs/classifier.md:
    python -m mailwarden.classifier.evaluate --corpus tests/data/dsn-corpus --part dev
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .analyse import BounceClassifier
from .corpus import Example, corpus_examples, jsonl_examples, jsonl_records, recipient_keys
from .extract import Finding
from .perturb import codes_removed, paraphrased

PERTURBATION_SEED = 3464


@dataclass(frozen=True)
class CategoryScore:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Scores:
    email_accuracy: float
    recipient_accuracy: float
    macro_f1: float
    emails: int
    recipients: int
    per_category: dict[str, CategoryScore]
    labels: list[str]
    confusion: np.ndarray  # rows: truth, columns: prediction, in ``labels`` order


def score(examples: list[Example], predicted: list[str]) -> Scores:
    """Scores of predictions against the examples' categories; an e-mail counts when all its recipients do."""
    truth = [e.category for e in examples]
    right_by_email: dict[str, bool] = {}
    for example, guess in zip(examples, predicted, strict=True):
        right_by_email[example.group] = right_by_email.get(example.group, True) and guess == example.category
    labels = sorted(set(truth) | set(predicted))
    index = {label: i for i, label in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), dtype=int)
    for t, p in zip(truth, predicted, strict=True):
        confusion[index[t], index[p]] += 1
    per_category = {}
    for label in sorted(set(truth)):
        i = index[label]
        tp, predicted_n, support = confusion[i, i], confusion[:, i].sum(), confusion[i, :].sum()
        precision = tp / predicted_n if predicted_n else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_category[label] = CategoryScore(float(precision), float(recall), float(f1), int(support))
    n = max(len(truth), 1)
    return Scores(
        email_accuracy=sum(right_by_email.values()) / max(len(right_by_email), 1),
        recipient_accuracy=sum(t == p for t, p in zip(truth, predicted, strict=True)) / n,
        macro_f1=float(np.mean([s.f1 for s in per_category.values()])) if per_category else 0.0,
        emails=len(right_by_email), recipients=len(truth), per_category=per_category, labels=labels,
        confusion=confusion,
    )


def predict(classifier: BounceClassifier, examples: list[Example]) -> list[str]:
    return [p.category for p in classifier.classify_findings([e.finding for e in examples])]


PERTURBATIONS: dict[str, Callable[[Finding, random.Random], Finding]] = {
    "as-is": lambda f, _rng: f,
    "paraphrased": paraphrased,
    "codes-removed": lambda f, _rng: codes_removed(f),
}


def perturbed(examples: Iterable[Example], name: str) -> list[Example]:
    """The examples with one perturbation applied (deterministic seed, so figures are reproducible)."""
    rng = random.Random(PERTURBATION_SEED)
    return [replace(e, finding=PERTURBATIONS[name](e.finding, rng)) for e in examples]


def load_rewordings(directory: Path) -> dict[tuple[str, int], str]:
    """Hand-reworded diagnostics ({"id", "index", "diagnostic"} per line of every *.jsonl in ``directory``):
    the same failures as other servers would word them, keyed by e-mail and recipient index."""
    return {(r["id"], r["index"]): r["diagnostic"]
            for path in sorted(directory.glob("*.jsonl")) for r in jsonl_records(path)}


def reworded(examples: list[Example], rewordings: dict[tuple[str, int], str]) -> list[Example]:
    """The examples with their diagnostic replaced by its rewording (codes and stage as extracted before)."""
    return [replace(example, finding=replace(example.finding,
                                             diagnostic=rewordings.get(key, example.finding.diagnostic)))
            for example, key in zip(examples, recipient_keys(examples), strict=True)]


def load_labels(path: Path, part: str | None = None) -> list[Example]:
    """Corpus-style labels.jsonl (with "recipients") or user examples (text/eml + category)."""
    first = next((line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()), "{}")
    if "recipients" in json.loads(first):
        parts = [part] if part else ["train", "dev"]
        return [e for p in parts for e in corpus_examples(path.parent, p)]
    return list(jsonl_examples(path))


def format_scores(scores: Scores, title: str) -> str:
    lines = [f"== {title}: {scores.emails} e-mails, {scores.recipients} recipients",
             f"per-e-mail accuracy {scores.email_accuracy:.3f}  per-recipient accuracy "
             f"{scores.recipient_accuracy:.3f}  macro-F1 {scores.macro_f1:.3f}",
             f"{'category':<20} {'precision':>9} {'recall':>7} {'F1':>6} {'support':>7}"]
    lines += [f"{name:<20} {s.precision:>9.3f} {s.recall:>7.3f} {s.f1:>6.3f} {s.support:>7}"
              for name, s in scores.per_category.items()]
    return "\n".join(lines)


def write_confusion_png(scores: Scores, path: Path, title: str) -> None:
    """Confusion matrix as a PNG (matplotlib, from the ``train`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(6.0, 0.45 * len(scores.labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(scores.confusion, cmap="Blues")
    ax.set_xticks(range(len(scores.labels)), scores.labels, rotation=90)
    ax.set_yticks(range(len(scores.labels)), scores.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (i, j), count in np.ndenumerate(scores.confusion):
        if count:
            ax.text(j, i, str(count), ha="center", va="center",
                    color="white" if count > scores.confusion.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score the model on a corpus part as is and perturbed.")
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--part", default="dev")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--original-labels", action="store_true", help="ignore the corpus's corrections.jsonl")
    parser.add_argument("--reworded", type=Path, help="directory of hand-reworded diagnostics (another condition)")
    parser.add_argument("--png", type=Path, help="confusion matrix of the as-is run")
    args = parser.parse_args(argv)
    classifier = BounceClassifier.load(args.model)
    examples = list(corpus_examples(args.corpus, args.part, corrected=not args.original_labels))
    conditions = {name: perturbed(examples, name) for name in PERTURBATIONS}
    if args.reworded:
        conditions["reworded"] = reworded(examples, load_rewordings(args.reworded))
    for name, varied in conditions.items():
        scores = score(varied, predict(classifier, varied))
        print(format_scores(scores, f"{args.part} {name} (model {classifier.model_id})"))
        if args.png and name == "as-is":
            write_confusion_png(scores, args.png, f"{args.part} {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
