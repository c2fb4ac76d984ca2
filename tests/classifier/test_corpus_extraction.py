"""Detection and extraction on every corpus message, checked against labels.jsonl."""

from __future__ import annotations

import re

import pytest

from mailwarden.classifier.report import reported_findings

from .conftest import corpus_bytes, corpus_labels

LABELS = corpus_labels()
BOUNCES = [label for label in LABELS if label["is_bounce"]]
LOOKALIKES = [label for label in LABELS if not label["is_bounce"]]
# Sisimai-internal pseudo codes (x.0.9xx) stand for its reason, not for a code in the message.
PSEUDO_STATUS = re.compile(r"^\d\.0\.9\d\d$")

# Known misses, each with the reason; strict xfail so a fix shows up as XPASS and must be recorded here.
NOT_DETECTED = {
    "lhost-apachejames-01": "sent by post_master@ with a reply subject; nothing marks it as a bounce",
    "lhost-fml-02": "mailing-list 'not a member' notice from the list admin, no bounce markers",
    "lhost-fml-03": "mailing-list command error notice from the list admin, no bounce markers",
}
COUNT_MISMATCH = {
    **NOT_DETECTED,
    "lhost-postfix-75": "the rewritten envelope address is mentioned as well as the recipient",
}
STATUS_MISMATCH = {
    "lhost-amazonworkmail-05": "Sisimai takes the quoted remote code 4.4.2 over the MTA's own 4.4.7",
    "lhost-amazonworkmail-07": "Sisimai takes the quoted remote code 4.4.2 over the MTA's own 4.4.7",
    "lhost-exchange2007-05": "label 4.4.1 is Sisimai's inference; the message says 4.4.7",
    "lhost-sendmail-18": "label 5.3.0 is Sisimai's inference; the message says 5.0.0",
    "lhost-sendmail-56": "label 4.7.0 is Sisimai's inference from the text",
    "lhost-x5-01": "label 5.1.1 is inferred from 'User unknown'; the message has no code",
}


def _mark(label: dict, known: dict[str, str]):
    reason = known.get(label["id"])
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(label, id=label["id"], marks=marks)


@pytest.mark.parametrize("label", [_mark(lb, NOT_DETECTED) for lb in BOUNCES])
def test_corpus_bounce_is_detected_as_failure_or_delay(label):
    kind, _ = reported_findings(corpus_bytes(label))
    assert kind in ("failure", "delay")


LOOKALIKE_MISSES = {
    "arf-26": "labelled feedback, but it is an 'unsubscribe' auto-reply with no report part",
}


@pytest.mark.parametrize("label", [_mark(lb, LOOKALIKE_MISSES) for lb in LOOKALIKES])
def test_corpus_lookalike_is_not_reported_as_bounce(label):
    kind, _ = reported_findings(corpus_bytes(label))
    expected = {"feedback": "feedback", "vacation": "auto-reply", "delivered": "success"}
    assert kind == expected[label["recipients"][0]["reason"]]


@pytest.mark.parametrize("label", [_mark(lb, COUNT_MISMATCH) for lb in BOUNCES])
def test_corpus_recipient_count_matches_labels(label):
    _, findings = reported_findings(corpus_bytes(label))
    assert len(findings) == len(label["recipients"])


@pytest.mark.parametrize("label", [_mark(lb, STATUS_MISMATCH) for lb in BOUNCES
                                   if lb["id"] not in COUNT_MISMATCH
                                   and any(r["status"] and not PSEUDO_STATUS.match(r["status"])
                                           for r in lb["recipients"])])
def test_corpus_status_codes_match_labels(label):
    _, findings = reported_findings(corpus_bytes(label))
    for finding, expected in zip(findings, label["recipients"], strict=True):
        if expected["status"] and not PSEUDO_STATUS.match(expected["status"]):
            assert finding.status == expected["status"]


def test_corpus_recipients_have_addresses_and_diagnostics():
    missing = []
    for label in BOUNCES:
        if label["id"] in COUNT_MISMATCH:
            continue
        _, findings = reported_findings(corpus_bytes(label))
        missing += [label["id"] for f in findings if "@" not in f.recipient or not f.diagnostic]
    assert len(missing) <= 5, missing
