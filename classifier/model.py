"""The ONNX model at run time: loaded once, self-describing (labels and category types in its metadata)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .codes import is_generic
from .extract import Finding
from .features import model_text, says_nothing
from .taxonomy import FALLBACK_CATEGORY, default_types

MODEL_PATH = Path(__file__).with_name("model.onnx")
META_LABELS = "mailwarden.labels"
META_TYPES = "mailwarden.types"
META_THRESHOLD = "mailwarden.threshold"
META_TEMPERATURE = "mailwarden.temperature"
META_PRIOR = "mailwarden.prior"  # {"5.1.1": [P(label | status) / P(label) in labels order], "5.1": [...], "5": [...]}
META_PRIOR_WEIGHT = "mailwarden.prior_weight"
META_BASE_RATES = "mailwarden.base_rates"  # [P(label) over the training examples, in labels order]
# Below this probability (about 3x the uniform 1/16) the top category is not trusted: "other" is reported.
DEFAULT_THRESHOLD = 0.20


class ModelError(ValueError):
    """The file is not a usable mailwarden bounce model."""


@dataclass(frozen=True)
class Prediction:
    category: str
    confidence: float


def status_keys(status: str | None) -> list[str]:
    """The status code from the most specific level to the class: 5.1.1, 5.1, 5."""
    parts = status.split(".") if status else []
    return [".".join(parts[:n]) for n in range(len(parts), 0, -1)]


def prior_key(status: str | None, prior: dict[str, list[float]]) -> str | None:
    """The most specific level of the status code that the prior knows."""
    return next((k for k in status_keys(status) if k in prior), None)


def with_prior(row: list[float], status: str | None, prior: dict[str, list[float]], weight: float) -> list[float]:
    """The text model's probabilities times the status code's likelihood ratio ** weight (most specific level
    known), renormalised.

    The prior is explicit and weighted below 1, so a text the model is sure of overrules a code that says
    otherwise (5.1.1 with "mailbox suspended" is inactive-mailbox), while a vague text follows the code.
    """
    key = prior_key(status, prior)
    if key is None:
        return row
    scaled = [p * q ** weight for p, q in zip(row, prior[key], strict=True)]
    total = sum(scaled) or 1.0
    return [p / total for p in scaled]


def code_alone(status: str | None, prior: dict[str, list[float]], base_rates: list[float]) -> list[float]:
    """P(category | status) for a text that says nothing: the base rates times the code's likelihood ratio.

    Without a specific code the prior knows (none, or only a class such as 5.0.0, which says permanent or
    temporary and nothing more) nothing speaks for any category: all are equally likely, so the verdict is the
    fallback category (CATEGORIES.md: "the text does not allow a decision").
    """
    if not status or is_generic(status) or prior_key(status, prior) is None:
        return [1.0 / len(base_rates)] * len(base_rates)
    return with_prior(base_rates, status, prior, 1.0)


def posterior(row: list[float], text: str, status: str | None, prior: dict[str, list[float]], weight: float,
              base_rates: list[float] | None) -> list[float]:
    """The category probabilities of one recipient before calibration: the text model's row with the status
    prior, or the code alone where the text says nothing (features.says_nothing) and the model knows its
    categories' base rates (a model written before session 14 does not: it reads every text as it always did)."""
    if base_rates is not None and says_nothing(text):
        return code_alone(status, prior, base_rates)
    return with_prior(row, status, prior, weight)


def calibrate(row: list[float], temperature: float) -> list[float]:
    """Class probabilities with the softmax temperature applied (p ** (1/T), renormalised).

    The temperature is fitted on grouped cross-validation (crossval.fit_temperature), so that a confidence of
    0.8 is right about 80 % of the time on mail servers the model never saw.
    """
    if temperature == 1.0:
        return row
    scaled = [p ** (1.0 / temperature) for p in row]
    total = sum(scaled) or 1.0
    return [p / total for p in scaled]


def top_category(row: list[float], labels: list[str], threshold: float) -> Prediction:
    """The most probable category, or the fallback category when it is less probable than the threshold."""
    confidence = max(row)
    category = labels[row.index(confidence)] if confidence >= threshold else FALLBACK_CATEGORY
    return Prediction(category, confidence)


class OnnxModel:
    """An onnxruntime session over a string input; safe to use from several threads (onnxruntime is)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        data = Path(path).read_bytes()
        self.model_id = hashlib.sha256(data).hexdigest()[:12]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
            meta = self._session.get_modelmeta().custom_metadata_map
            self.labels: list[str] = json.loads(meta[META_LABELS])
            self.types: dict[str, str] = {**default_types(), **json.loads(meta.get(META_TYPES, "{}"))}
            self.threshold = float(meta.get(META_THRESHOLD, DEFAULT_THRESHOLD))
            self.temperature = float(meta.get(META_TEMPERATURE, 1.0))
            self.prior: dict[str, list[float]] = json.loads(meta.get(META_PRIOR, "{}"))
            self.prior_weight = float(meta.get(META_PRIOR_WEIGHT, 0.0))
            self.base_rates: list[float] | None = json.loads(meta.get(META_BASE_RATES, "null"))
        except (KeyError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: not a mailwarden bounce model (metadata {exc} missing or broken)") from exc
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own, unrelated exception types
            raise ModelError(f"{path}: cannot load ONNX model: {exc}") from exc
        rows = [*self.prior.values(), *([self.base_rates] if self.base_rates is not None else [])]
        if any(not isinstance(row, list) or len(row) != len(self.labels) for row in rows):
            raise ModelError(f"{path}: not a mailwarden bounce model "
                             "(its status prior or base rates do not match its labels)")
        self._check_it_classifies(path)

    def _check_it_classifies(self, path: str | os.PathLike[str]) -> None:
        """Refuse at load, not at the first bounce, a model that loads but cannot classify a text: one that only
        failed later would turn every bounce into "not a bounce" (the analysis's safety net)."""
        try:
            self._input = self._session.get_inputs()[0].name
            self._probabilities = self._session.get_outputs()[1].name
            shape = self.probabilities([""]).shape
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own, unrelated exception types
            raise ModelError(f"{path}: not a mailwarden bounce model (it cannot classify a text: {exc})") from exc
        if shape != (1, len(self.labels)):
            raise ModelError(f"{path}: not a mailwarden bounce model "
                             f"({shape[-1]} outputs for {len(self.labels)} labels)")

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """The text model's class probabilities per model text, columns in ``labels`` order."""
        feed = np.array(texts, dtype=object).reshape(-1, 1)
        return np.asarray(self._session.run([self._probabilities], {self._input: feed})[0])

    def predict(self, findings: list[Finding]) -> list[Prediction]:
        """Top category per finding (text model, status prior, calibration), or the fallback category when the
        model is not confident enough."""
        if not findings:
            return []
        texts = [model_text(f) for f in findings]
        # Plain floats from here: numpy per-row calls cost ~20 us a text.
        rows = self.probabilities(texts).tolist()
        return [top_category(calibrate(posterior(row, text, f.status, self.prior, self.prior_weight,
                                                 self.base_rates), self.temperature), self.labels, self.threshold)
                for f, text, row in zip(findings, texts, rows, strict=True)]
