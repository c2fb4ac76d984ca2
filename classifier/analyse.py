"""BounceClassifier: message bytes in, BounceReport out; the ONNX model is loaded once per instance.

Instances are immutable after load(), so the milter can build a new one on SIGHUP and swap it in while
sessions still use the old one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..sanitise import LIMIT_NAME, clean
from .envelope import EnvelopeFacts
from .extract import Finding, compact, finding_from_text
from .lexicon import glossary
from .model import MODEL_PATH, OnnxModel, Prediction
from .report import reported_findings
from .taxonomy import NOT_A_BOUNCE
from .verdict import BounceReport, RecipientVerdict

log = logging.getLogger(__name__)
# Recipients a report names without a failure: CATEGORIES.md counts delay and success reports as not-a-bounce
# (nothing to suppress or retry), also for the delayed or delivered recipients of a mixed failure report.
NOT_FAILED_ACTIONS = frozenset({"delayed", "delivered", "relayed", "expanded"})
NOT_FAILED = Prediction(NOT_A_BOUNCE, 1.0)
EVIDENCE_CHARS = 300
NO_REPORT = BounceReport(bounce=False, kind="none", recipients=())


def default_model_path() -> Path:
    """The model shipped inside the package."""
    return MODEL_PATH


class BounceClassifier:
    """Detects bounces, extracts their recipients and labels each failed one with the ONNX model."""

    def __init__(self, model: OnnxModel) -> None:
        self._model = model
        self.model_id = model.model_id
        glossary()  # compiled at load (~25 ms once per process), not while the first bounce waits

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> BounceClassifier:
        """Load a model file (default: the shipped one); raises ModelError (a ValueError) or OSError."""
        return cls(OnnxModel(path if path is not None else default_model_path()))

    def analyse(self, message: bytes, envelope: EnvelopeFacts | None = None) -> BounceReport:
        """The report for one message; any failure inside yields a 'none' report instead of an exception.

        ``envelope``: what the MTA said about the message; without it (a bare file) detection can only read
        a Return-Path field for the null sender, and a milter seldom sees one.
        """
        try:
            return self._analyse(message, envelope)
        except Exception as exc:  # noqa: BLE001 - a message must never be lost because the analysis failed
            # One line, no traceback: the input is attacker-controlled and must not be able to flood the log.
            log.warning("bounce analysis failed (%s: %.200s)%s; treating the message as not a bounce",
                        type(exc).__name__, exc, _which(envelope))
            return NO_REPORT

    def _analyse(self, message: bytes, envelope: EnvelopeFacts | None = None) -> BounceReport:
        kind, findings = reported_findings(message, envelope)
        if kind == "failure":
            failed = [f for f in findings if f.action not in NOT_FAILED_ACTIONS]
            predictions = dict(zip(map(id, failed), self.classify_findings(failed), strict=True))
            verdicts = [self._verdict(f, predictions.get(id(f), NOT_FAILED)) for f in findings]
        elif kind in ("delay", "success"):
            verdicts = [self._verdict(f, NOT_FAILED) for f in findings]
        else:
            verdicts = []
        return BounceReport(bounce=kind == "failure", kind=kind, recipients=tuple(verdicts))

    def classify_text(self, text: str) -> Prediction:
        """Classify a bare diagnostic text (status and reply code are read from it), e.g. one quoted in a log."""
        return self._model.predict([finding_from_text("", text)])[0]

    def classify_findings(self, findings: list[Finding]) -> list[Prediction]:
        """Classify extracted findings directly (evaluation of perturbed findings)."""
        return self._model.predict(findings)

    def _verdict(self, f: Finding, p: Prediction) -> RecipientVerdict:
        return RecipientVerdict(
            recipient=f.recipient, status=f.status, action=f.action, diagnostic=f.diagnostic,
            remote_mta=f.remote_mta, reply_code=f.reply_code, category=p.category,
            type=self._model.types.get(p.category, "unknown"),
            confidence=round(p.confidence, 4), evidence=compact(f.diagnostic, EVIDENCE_CHARS), stage=f.stage,
        )


def _which(envelope: EnvelopeFacts | None) -> str:
    """Which message a log line is about: its queue id (what `grep` follows through the MTA's log) and client."""
    if envelope is None:
        return ""
    return (f" for queue id {clean(envelope.queue_id, LIMIT_NAME) or '-'} from "
            f"{clean(envelope.client_name, LIMIT_NAME)}[{clean(envelope.client_ip, LIMIT_NAME)}]")
