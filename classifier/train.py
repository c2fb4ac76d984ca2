"""Train the bounce classifier and export it to ONNX (training-time only: needs the ``train`` extra).

Reproduce the shipped model (every labelled corpus, corrected labels):
    python -m mailwarden.classifier.train --corpus tests/data/dsn-corpus --corpus tests/data/bounce-extra \
        --corpus tests/data/mta-formats \
        --out classifier/model.onnx --save-base classifier/base_examples.json
The settings below were chosen by grouped cross-validation (crossval.py), never on one corpus part.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .augment import BankReply, augment
from .corpus import Example, corpus_examples
from .extract import Finding
from .features import model_text
from .model import (
    DEFAULT_THRESHOLD,
    META_BASE_RATES,
    META_LABELS,
    META_PRIOR,
    META_PRIOR_WEIGHT,
    META_TEMPERATURE,
    META_THRESHOLD,
    META_TYPES,
    posterior,
    status_keys,
)
from .taxonomy import default_types

BASE_EXAMPLES_PATH = Path(__file__).with_name("base_examples.json")
SEED = 20261127
# Chosen by grouped cross-validation over every corpus (crossval.py); see docs/classifier.md.
REGULARISATION_C = 3.0
MAX_FEATURES = 6000  # vocabulary cap: the dense TF-IDF row times the weights dominates inference time
PRIOR_WEIGHT = 0.5  # the status prior's exponent: below 1, so a confident text overrules the code
PRIOR_MIN_COUNT = 5  # a status level seen fewer times in training has no prior of its own (the next level speaks)
PRIOR_SMOOTHING = 1.0  # add-one: no category is ruled out by a code alone
TEMPERATURE = 1.0  # softmax temperature fitted on the grouped cross-validation (crossval.fit_temperature)

Progress = Callable[[str], None]


def build_pipeline(max_features: int | None = MAX_FEATURES):  # -> sklearn Pipeline (imported lazily: train extra)
    """Word uni+bigram TF-IDF over normalised text, then multinomial logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return Pipeline([
        ("tfidf", TfidfVectorizer(lowercase=False, token_pattern=r"[^ ]+", ngram_range=(1, 2),
                                  binary=True, min_df=2, max_features=max_features)),
        ("clf", LogisticRegression(C=REGULARISATION_C, max_iter=5000)),
    ])


@dataclass(frozen=True)
class Trained:
    """A fitted text model and its status-code prior: what export_onnx writes and cross-validation scores."""

    pipeline: Any  # sklearn Pipeline over model_text
    prior: dict[str, list[float]]  # status level -> P(category | status) / P(category) in classes_ order
    base_rates: list[float]  # P(category) in classes_ order
    prior_weight: float = PRIOR_WEIGHT

    @property
    def classes_(self) -> list[str]:
        return [str(c) for c in self.pipeline.classes_]

    def predict_proba(self, findings: list[Finding]) -> list[list[float]]:
        """What the exported model computes before calibration (model.OnnxModel.predict)."""
        texts = [model_text(f) for f in findings]
        rows = self.pipeline.predict_proba(texts).tolist()
        return [posterior(row, text, f.status, self.prior, self.prior_weight, self.base_rates)
                for f, text, row in zip(findings, texts, rows, strict=True)]


def base_rates(examples: list[Example], labels: list[str]) -> list[float]:
    """P(category) over the training examples (add-one smoothed)."""
    overall = Counter(e.category for e in examples)
    return [round((overall[label] + PRIOR_SMOOTHING) / (overall.total() + PRIOR_SMOOTHING * len(labels)), 6)
            for label in labels]


def status_prior(examples: list[Example], labels: list[str]) -> dict[str, list[float]]:
    """How much each status level says about the category: P(category | status) / P(category) over the training
    examples (add-one smoothed), for levels seen often enough.

    Divided by the base rate because the text model has the base rate already: a code must not count it twice
    (with P(category | status) alone, a bare "552 5.3.4" was read as the commonest category, bad-mailbox).
    """
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for example in examples:
        for key in status_keys(example.finding.status):
            counts[key][example.category] += 1
    base = base_rates(examples, labels)
    return {key: [round((seen[label] + PRIOR_SMOOTHING) / (seen.total() + PRIOR_SMOOTHING * len(labels)) / rate, 6)
                  for label, rate in zip(labels, base, strict=True)]
            for key, seen in sorted(counts.items()) if seen.total() >= PRIOR_MIN_COUNT}


def fit(examples: list[Example], with_seeds: bool, progress: Progress = print,
        max_features: int | None = MAX_FEATURES, bank: list[BankReply] | None = None) -> Trained:
    """Augment, fit the text model on code-free texts and count the status prior (``bank``: a selection of the
    reply bank instead of all of it)."""
    rng = random.Random(SEED)
    progress(f"examples: {len(examples)}")
    # 'other' is learnt like any category ("550 Rejected" says nothing), besides standing for low confidence.
    augmented = augment(examples, rng, with_seeds=with_seeds, bank=bank)
    counts = Counter(e.category for e in augmented)
    progress(f"augmented to {len(augmented)} texts over {len(counts)} categories")
    if len(counts) < 2:
        raise ValueError("training needs at least two categories")
    texts = [model_text(e.finding) for e in augmented]
    pipeline = build_pipeline(max_features)
    if max_features:
        pipeline.set_params(tfidf__vocabulary=closed_vocabulary(pipeline.named_steps["tfidf"], texts),
                            tfidf__max_features=None)
    progress("fitting TF-IDF + logistic regression ...")
    pipeline.fit(texts, [e.category for e in augmented], clf__sample_weight=[e.weight for e in augmented])
    progress("fitted")
    labels = [str(c) for c in pipeline.classes_]
    return Trained(pipeline, status_prior(augmented, labels), base_rates(augmented, labels))


def closed_vocabulary(vectorizer, texts: list[str]) -> list[str]:
    """The capped vocabulary plus the words of every kept bigram.

    onnxruntime's TfIdfVectorizer finds a bigram only through its first word, so a bigram whose words were
    cut by the cap would count in scikit-learn but not in the exported model.
    """
    from sklearn.base import clone

    terms = set(clone(vectorizer).fit(texts).vocabulary_)
    return sorted(terms | {word for term in terms for word in term.split()})


def category_types(examples: list[Example], labels: list[str]) -> dict[str, str]:
    """Bounce type per label: the taxonomy's, else the one given with the examples, else 'unknown'."""
    given = {e.category: e.type for e in examples if e.type}
    known = default_types()
    return {label: known.get(label) or given.get(label) or "unknown" for label in labels}


def export_onnx(trained: Trained, types: dict[str, str], out: Path, threshold: float = DEFAULT_THRESHOLD,
                temperature: float = TEMPERATURE) -> None:
    """Write the text model as ONNX with its labels, types, status prior, threshold and temperature in
    metadata_props."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType

    pipeline = trained.pipeline
    onx = convert_sklearn(
        pipeline, initial_types=[("text", StringTensorType([None, 1]))], target_opset=17,
        options={id(pipeline.named_steps["clf"]): {"zipmap": False},
                 id(pipeline.named_steps["tfidf"]): {"locale": "C.UTF-8"}},
    )
    slim_graph(onx)
    # skl2onnx names the graph with a random uuid and lists opsets in set order: fix both, so the same
    # training data gives the same file (and so the same model id).
    onx.graph.name = "mailwarden_bounce_classifier"
    opsets = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    for domain, version in opsets:
        onx.opset_import.add(domain=domain, version=version)
    for key, value in ((META_LABELS, json.dumps(trained.classes_)), (META_TYPES, json.dumps(types)),
                       (META_PRIOR, json.dumps(trained.prior, separators=(",", ":"))),
                       (META_PRIOR_WEIGHT, str(trained.prior_weight)),
                       (META_BASE_RATES, json.dumps(trained.base_rates, separators=(",", ":"))),
                       (META_THRESHOLD, str(threshold)), (META_TEMPERATURE, str(temperature))):
        prop = onx.metadata_props.add()
        prop.key, prop.value = key, value
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(onx.SerializeToString())


def slim_graph(onx) -> None:
    """Rewrite skl2onnx's graph into fewer nodes with the same probabilities (to ~1e-7).

    onnxruntime spends a few microseconds per node and call, a third of the classification time here:
    binary TF (TfIdfVectorizer "TF", Cast to bool, Cast to float) times the idf constant (Mul) is one
    TfIdfVectorizer in "IDF" mode (weight when the n-gram occurs); the L1 Normalizer after a multiclass
    softmax is dropped (the softmax sums to 1 already); class labels become ints, so no string tensor is built per call
    (the names are in the model's metadata).
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = onx.graph
    node = {n.op_type: n for n in graph.node}  # the op types used below occur once, except Cast/Normalizer
    tfidf, mul, classifier = node["TfIdfVectorizer"], node["Mul"], node["LinearClassifier"]
    initializers = {i.name: i for i in graph.initializer}
    idf_init = next(initializers[name] for name in mul.input if name in initializers)
    idf = numpy_helper.to_array(idf_init)
    attributes = {a.name: a for a in tfidf.attribute}
    casts = [n for n in graph.node if n.op_type == "Cast"]
    if (helper.get_attribute_value(attributes["mode"]) != b"TF" or len(casts) != 2
            or len(idf) != len(attributes["weights"].floats)):
        raise ValueError("not the binary TF-IDF graph build_pipeline exports; cannot slim it")
    columns = list(attributes["ngram_indexes"].ints)  # weights are indexed like the pool, idf like the output
    attributes["mode"].s = b"IDF"
    del attributes["weights"].floats[:]
    attributes["weights"].floats.extend(float(idf[column]) for column in columns)
    tfidf.output[0] = mul.output[0]
    for dropped in [*casts, mul]:
        graph.node.remove(dropped)
    # Multiclass: an L1 Normalizer reads the softmax; a two-class model has none (its only Normalizer is the
    # TF-IDF's L2 one, which stays).
    for normaliser in [n for n in graph.node if n.op_type == "Normalizer" and n.input[0] == classifier.output[1]]:
        classifier.output[1] = normaliser.output[0]
        graph.node.remove(normaliser)
    graph.initializer.remove(idf_init)
    labels = next(a for a in classifier.attribute if a.name == "classlabels_strings")
    count = len(labels.strings)
    classifier.attribute.remove(labels)
    classifier.attribute.append(helper.make_attribute("classlabels_ints", list(range(count))))
    next(o for o in graph.output if o.name == classifier.output[0]).type.tensor_type.elem_type = TensorProto.INT64


def save_base(examples: list[Example], path: Path) -> None:
    """Write training findings: the shipped ones (so `mailwarden train --base default` works without the corpus)
    and those `mailwarden train` writes next to each model it builds (so `--base MODEL` can build on it)."""
    records = [{"category": e.category, "group": e.group, "finding": asdict(e.finding),
                **({"type": e.type} if e.type else {}), **({"weight": e.weight} if e.weight != 1.0 else {})}
               for e in examples]
    path.write_text(json.dumps(records, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")


def load_base(path: Path = BASE_EXAMPLES_PATH) -> list[Example]:
    """Training findings written by save_base (default: the shipped model's)."""
    records = json.loads(path.read_text(encoding="utf-8"))
    return [Example(Finding(**r["finding"]), r["category"], r["group"], r.get("type"), weight=r.get("weight", 1.0))
            for r in records]


def examples_path(model: Path) -> Path:
    """Where the training findings of a model built by `mailwarden train` are kept: beside it."""
    return model.with_name(model.name + ".examples.json")


def base_path(base: str) -> Path:
    """The findings file of a `--base`: "default" (the shipped model's) or a model file `mailwarden train` wrote."""
    return BASE_EXAMPLES_PATH if base == "default" else examples_path(Path(base))


def train(examples: list[Example], out: Path, with_seeds: bool, progress: Progress = print,
          max_features: int | None = MAX_FEATURES, temperature: float = TEMPERATURE) -> Trained:
    """Fit and export; returns the fitted model (for callers that check the ONNX agrees with it).

    Custom training passes ``max_features=None``: a frequency cap would drop the rare words of a new category.
    """
    trained = fit(examples, with_seeds, progress, max_features)
    export_onnx(trained, category_types(examples, trained.classes_), out, temperature=temperature)
    progress(f"wrote {out} ({out.stat().st_size // 1024} KiB)")
    return trained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the default bounce model from the labelled corpora.")
    parser.add_argument("--corpus", type=Path, action="append", required=True,
                        help="directory with labels.jsonl (and corrections.jsonl); repeat for more corpora")
    parser.add_argument("--part", choices=["train", "dev"], help="only this part of corpora that have parts")
    parser.add_argument("--original-labels", action="store_true", help="ignore the corpora's corrections.jsonl")
    parser.add_argument("--out", type=Path, required=True, help="where to write the ONNX model")
    parser.add_argument("--save-base", type=Path, help="also write the extracted training findings (JSON)")
    args = parser.parse_args(argv)
    examples = [e for root in args.corpus
                for e in corpus_examples(root, args.part, corrected=not args.original_labels)]
    train(examples, args.out, with_seeds=True, progress=lambda s: print(s, file=sys.stderr))
    if args.save_base:
        save_base(examples, args.save_base)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
