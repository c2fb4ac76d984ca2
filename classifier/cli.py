"""`mailwarden classify|train|eval` subcommands, registered into the main mailwarden argparse CLI."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .analyse import BounceClassifier
from .model import ModelError
from .verdict import BounceReport

RECIPIENT_FIELDS = ("recipient", "status", "action", "diagnostic", "category", "type", "confidence")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the classify, train and eval subcommands; each sets ``func`` to a handler returning an exit code."""
    classify = subparsers.add_parser("classify", help="detect bounces and label each failed recipient")
    classify.add_argument("files", nargs="+", type=Path, metavar="FILE.eml")
    classify.add_argument("--json", action="store_true", help="one JSON object per file and line")
    classify.add_argument("--model", type=Path, help="ONNX model (default: the shipped one)")
    classify.set_defaults(func=run_classify)

    train = subparsers.add_parser("train", help="train a bounce model from labelled examples (JSONL)")
    train.add_argument("--add", "--examples", dest="examples", type=Path, required=True, action="append",
                       metavar="FILE.jsonl", help='labelled examples (repeatable): {"text": ...} or {"eml": path}, '
                       '"category", optional "type"; or the labelled lines of `mailwarden bounces review --json`')
    train.add_argument("--base", metavar="default|MODEL",
                       help='also learn what a model learnt: "default" (the shipped one) or a model written by '
                       "`mailwarden train`")  # fmt: skip
    train.add_argument("--out", type=Path, required=True, help="where to write the ONNX model")
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser("eval", help="per-category precision/recall/F1 and a confusion-matrix PNG")
    evaluate.add_argument("labels", type=Path, metavar="LABELS.jsonl")
    evaluate.add_argument("--model", type=Path, help="ONNX model (default: the shipped one)")
    evaluate.add_argument("--png", type=Path, default=Path("confusion.png"), help="confusion matrix image")
    evaluate.add_argument("--part", choices=["train", "dev"], help="corpus-style labels: score one part only")
    evaluate.set_defaults(func=run_eval)


def report_json(path: Path, report: BounceReport) -> str:
    recipients = [{name: getattr(v, name) for name in RECIPIENT_FIELDS} for v in report.recipients]
    return json.dumps({"file": str(path), "bounce": report.bounce, "kind": report.kind, "recipients": recipients},
                      ensure_ascii=False)


def _load(model: Path | None) -> BounceClassifier | None:
    try:
        return BounceClassifier.load(model)
    except (ModelError, OSError) as exc:
        print(f"mailwarden: {exc}", file=sys.stderr)
        return None


def run_classify(args: argparse.Namespace) -> int:
    classifier = _load(args.model)
    if classifier is None:
        return 2
    status = 0
    for path in args.files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            print(f"mailwarden: {path}: {exc.strerror}", file=sys.stderr)
            status = 1
            continue
        report = classifier.analyse(raw)
        if args.json:
            print(report_json(path, report), flush=True)
            continue
        print(f"{path}: {report.kind}")
        for v in report.recipients:
            print(f"  {v.recipient or '?'}  {v.category} ({v.type}, {v.confidence:.2f})  status={v.status or 'none'}"
                  f"  {v.evidence[:100]}")
    return status


def run_train(args: argparse.Namespace) -> int:
    try:
        from .corpus import jsonl_examples
        from .train import base_path, examples_path, load_base, save_base, train
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        print(f"mailwarden: training needs the 'train' extra (pip install 'mailwarden[train]'): {exc}",
              file=sys.stderr)
        return 2
    try:
        examples = [example for path in args.examples for example in jsonl_examples(path)]
        base = load_base(base_path(args.base)) if args.base else []
    except FileNotFoundError as exc:
        hint = " (a --base model must have been written by `mailwarden train`)" if args.base else ""
        print(f"mailwarden: {exc.filename}: no such file{hint}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"mailwarden: {exc}", file=sys.stderr)
        return 2
    print(f"{len(examples)} examples from {', '.join(map(str, args.examples))}, {len(base)} base examples",
          file=sys.stderr)
    try:
        train(base + examples, args.out, with_seeds=bool(base), max_features=None,
              progress=lambda line: print(line, file=sys.stderr, flush=True))
    except ValueError as exc:
        print(f"mailwarden: {exc}", file=sys.stderr)
        return 2
    save_base(base + examples, examples_path(args.out))  # what `--base` of this model will learn again
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from .evaluate import format_scores, load_labels, predict, score, write_confusion_png

    classifier = _load(args.model)
    if classifier is None:
        return 2
    try:
        examples = load_labels(args.labels, args.part)
    except (OSError, ValueError, KeyError) as exc:
        print(f"mailwarden: {args.labels}: {exc}", file=sys.stderr)
        return 2
    if not examples:
        print(f"mailwarden: {args.labels}: no labelled failed recipients", file=sys.stderr)
        return 2
    scores = score(examples, predict(classifier, examples))
    print(format_scores(scores, f"{args.labels} (model {classifier.model_id})"))
    try:
        write_confusion_png(scores, args.png, f"{args.labels.name} - model {classifier.model_id}")
    except ImportError:
        print("mailwarden: the confusion-matrix PNG needs matplotlib (the 'train' extra)", file=sys.stderr)
        return 1
    print(f"confusion matrix: {args.png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (python -m mailwarden.classifier.cli) until the main CLI wires register() in."""
    parser = argparse.ArgumentParser(prog="mailwarden")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
