"""Detection and extraction on every corpus message, checked against labels.jsonl."""

from __future__ import annotations

import re

import pytest

from mailwarden.classifier.addresses import canonical
from mailwarden.classifier.corpus import corpus_labels as labels_of
from mailwarden.classifier.extraction_eval import dsn_corpus_addresses, extra_truth
from mailwarden.classifier.report import reported_findings

from .conftest import CORPUS, EXTRA, MTA_FORMATS, corpus_bytes, corpus_labels

LABELS = corpus_labels()
BOUNCES = [label for label in LABELS if label["is_bounce"]]
LOOKALIKES = [label for label in LABELS if not label["is_bounce"]]
# Sisimai-internal pseudo codes (x.0.9xx) stand for its reason, not for a code in the message.
PSEUDO_STATUS = re.compile(r"^\d\.0\.9\d\d$")

# Known misses, each with the reason; strict xfail so a fix shows up as XPASS and must be recorded here. "Product
# miss" means the product is wrong; "label disagreement" that the message supports the product's answer.
NOT_DETECTED = {
    "lhost-fml-03": "label disagreement: a mailing list's 'Loop Alert: Duplicated Message-ID' notice from its "
                    "admin address, no report part or bounce sender; the label counts it as a bounce",
}
COUNT_MISMATCH = dict(NOT_DETECTED)
STATUS_MISMATCH = {
    "lhost-amazonworkmail-05": "label disagreement: the message's own code is 554 4.4.7 (message expired); the "
                               "label takes the last attempt's quoted <421 4.4.2 Connection timed out>",
    "lhost-amazonworkmail-07": "label disagreement: the message's own code is 554 4.4.7 (message expired); the "
                               "label takes the last attempt's quoted <421 4.4.2 Connection timed out>",
    "lhost-exchange2007-05": "label disagreement: Status and Diagnostic-Code say 550 4.4.7 (queue expired); the "
                             "label takes the 441 4.4.1 of an earlier attempt quoted in the text part",
    "lhost-sendmail-56": "label disagreement: the remote refused with 554 '... not accepting connections' "
                         "(Status 5.5.0); the label takes the 421 4.7.0 it answered to the QUIT that followed",
}
# Recipient addresses against the reviewed ones (review/*.addresses.jsonl).
ADDRESS_MISMATCH = {
    **NOT_DETECTED,
    "lhost-einsundeins-03": "product miss, kept on purpose: the failed address is also the bounce's own To (the "
                            "anonymised sender), and the bounce's own addresses are never reported, so that a "
                            "sender's address is not labelled as failed; the returned original's To is taken",
    "lhost-apachejames-01": "product miss, kept on purpose: the anonymised recipient's local part is twelve "
                            "digits, which reads as a message identifier; Verizon's real ones are ten-digit "
                            "phone numbers and are reported",
    "lhost-qmail-08": "product miss, kept on purpose: the failed address is also the bounce's own To and "
                      "Delivered-To (a message to oneself); the bounce's own addresses are never reported",
    "lhost-exchange2007-04": "label disagreement: the review takes Final-Recipient, the product the "
                             "Original-Recipient the sender wrote (the review takes Original-Recipient in "
                             "lhost-postfix-01/49/77/78 and rfc3464-09)",
    "rhost-google-03": "label disagreement: '<final> (expanded from <original>)': the review takes the alias "
                       "target, the product the address the sender wrote (as the review does in lhost-postfix-77)",
    "rhost-google-04": "label disagreement: '<final> (expanded from <original>)': the review takes the alias "
                       "target, the product the address the sender wrote (as the review does in lhost-postfix-77)",
    "rhost-google-06": "label disagreement: '<final> (expanded from <original>)': the review takes the alias "
                       "target, the product the address the sender wrote (as the review does in lhost-postfix-77)",
}
REVIEWED_ADDRESSES = dsn_corpus_addresses(CORPUS)


def _mark(label: dict, known: dict[str, str]):
    reason = known.get(label["id"])
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(label, id=label["id"], marks=marks)


@pytest.mark.parametrize("label", [_mark(lb, NOT_DETECTED) for lb in BOUNCES])
def test_corpus_bounce_is_detected_as_failure_or_delay(label):
    kind, _ = reported_findings(corpus_bytes(label))
    assert kind in ("failure", "delay")


LOOKALIKE_MISSES = {
    "arf-26": "label disagreement: Apple Mail's 'unsubscribe' request, Auto-Submitted: auto-replied and no "
              "feedback-report part; the label says feedback, the product auto-reply (neither is a bounce)",
}


@pytest.mark.parametrize("label", [_mark(lb, LOOKALIKE_MISSES) for lb in LOOKALIKES])
def test_corpus_lookalike_is_not_reported_as_bounce(label):
    kind, _ = reported_findings(corpus_bytes(label))
    expected = {"feedback": "feedback", "vacation": "auto-reply", "delivered": "success"}
    assert kind == expected[label["recipients"][0]["reason"]]


# The extra corpora's notices where nothing failed: delay and success reports, auto-replies, other look-alikes.
EXTRA_NOTICES = [(root, label) for root in (EXTRA, MTA_FORMATS) for label in labels_of(root)
                 if not label["is_bounce"] or label.get("kind") in ("delay", "success")]
NOTICE_MISSES = {
    "mta-formats-messagegate-02": "product miss: a filter's compliance hold ('HELD FOR REVIEW ... It has not been "
                                  "rejected', 'will be delivered automatically') is read as a failure",
}


@pytest.mark.parametrize("root, label", [pytest.param(root, label, id=label["id"], marks=[pytest.mark.xfail(
    reason=NOTICE_MISSES[label["id"]], strict=True)] if label["id"] in NOTICE_MISSES else [])
    for root, label in EXTRA_NOTICES])
def test_extra_notice_where_nothing_failed_is_not_reported_as_a_failure(root, label):
    kind, _ = reported_findings((root / label["file"]).read_bytes())
    assert kind != "failure"


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


@pytest.mark.parametrize("label", [_mark(lb, ADDRESS_MISMATCH) for lb in BOUNCES if lb["id"] in REVIEWED_ADDRESSES])
def test_corpus_recipient_addresses_match_the_review(label):
    """Every failed recipient's address, in order (None: the message states none, anything is accepted)."""
    _, findings = reported_findings(corpus_bytes(label))
    expected = REVIEWED_ADDRESSES[label["id"]]
    assert len(findings) == len(expected)
    for finding, address in zip(findings, expected, strict=True):
        if address is not None:
            assert canonical(finding.recipient) == canonical(address)


# Bounces whose findings are not all complete (an address and a diagnostic each), with the reason.
INCOMPLETE = {
    "lhost-qmail-08": "the only address the report names is the bounce's own To",
    "lhost-apachejames-01": "the only address the report names has a twelve-digit local part (a message id)",
}


def test_corpus_recipients_have_addresses_and_diagnostics():
    incomplete = set()
    for label in BOUNCES:
        if label["id"] in COUNT_MISMATCH:
            continue
        _, findings = reported_findings(corpus_bytes(label))
        if any("@" not in f.recipient or not f.diagnostic for f in findings):
            incomplete.add(label["id"])
    assert incomplete == set(INCOMPLETE)


# The extra bounces (tests/data/bounce-extra and mta-formats, labels.jsonl): addresses where the labels state one.
EXTRA_TRUTH = [truth for root in (EXTRA, MTA_FORMATS) for truth in extra_truth(root) if any(truth.addresses)]
UNDETECTED = "product miss (detection, detect.py): "
EXTRA_ADDRESS_MISMATCH = {
    "bounceparser-aol-senderblock": "not in the message: AOL names only the screen name; the label infers the address",
    "bounceparser-aol.attachment": "not in the message: AOL names only the screen name; the label infers the address",
    "flufl-aol_01": "not in the message: AOL names only the screen name; the label infers the address",
    "bounceparser-quota": "product miss, kept: the anonymised 'a@b.c' has a one-letter top-level domain, which text "
                          "is not read as an address for (real ones have two letters or more)",
    "bounceparser-warning-7": "product miss, kept: the anonymised 'fred@mailgrp1.a.b.c' has a one-letter top-level "
                              "domain, which text is not read as an address for",
    "bounceparser-warning-5": UNDETECTED + "taken for an auto-reply",
    "flufl-bounce_01": "label disagreement: the label's 'dylan' is no address (the Jetmail notice names no domain)",
    "flufl-llnl_01": "product miss: addresses in the remote's prose (the address form, a contact) are taken "
                     "for recipients",
    "flufl-yale_01": "product miss: the directory hints in the remote's prose are taken for recipients, and the "
                     "failed address itself is not in the report text",
    "flufl-microsoft_01": "product miss: X.400 'dda:SMTP=userx@example.COM' keeps its 'SMTP=' type prefix",
    "flufl-simple_03": UNDETECTED + "Exim delay warning ('message delayed 24 hours')",
    "flufl-simple_21": UNDETECTED + "'Warning: message has not yet been delivered'",
    "flufl-simple_35": UNDETECTED + "sender 'Postmaster\\@example.com@xxx.com' and a warning subject",
    "flufl-simple_40": UNDETECTED + "'Warning: message delayed 2 days'",
    "flufl-sina_01": UNDETECTED + "undeclared GB2312 subject and body",
    "mta-formats-amavis-05": "label disagreement: the label lists the recipient amavis relayed to (named only in "
                             "the text); the product reports the delivery-status part's failed recipient",
    **dict.fromkeys((f"mta-formats-discourse-0{n}" for n in range(1, 5)),
                    UNDETECTED + "Discourse's mail-in notice: a no-reply sender and no bounce or refusal wording"),
    **dict.fromkeys(("mta-formats-mailman2-02", "mta-formats-listserv-02", "mta-formats-listserv-05"),
                    "product miss: a list's refusal names the list only in its subject or by name ('the CHEM-L "
                    "list'), and the text names no address"),
    "mta-formats-ezmlm-02": "product miss: ezmlm's refusal comes From MAILER-DAEMON, not from the list, so the "
                            "-owner address its text names is reported as a second recipient",
    "mta-formats-mmdf-02": UNDETECTED + "MMDF's 'Waiting mail' delay notice ('has not yet been fully delivered. "
                           "Attempts to deliver the message will continue') from mmdf@, wording no pattern reads",
    "mta-formats-telkomsa-02": "product miss: the reply wraps, and the sender's account it names on its "
                               "continuation line ('not owned by user zs1234@...') is taken for a second recipient",
    "mta-formats-plesk-03": "product miss, kept on purpose: the failed address is also the bounce's own To (a "
                            "message to oneself); the bounce's own addresses are never reported",
    # Round 7 (session 11), after its blind score.
    "mta-formats-smartlist-01": UNDETECTED + "SmartList's notice to the list owner that a subscriber was removed "
                                "after bouncing, quoting the last bounce",
    "mta-formats-egroups-02": "product miss: the group's -owner address that the refusal names is reported as a "
                              "second recipient (as ezmlm-02's)",
    "mta-formats-topica-01": "product miss: a list service's digest of suspended subscribers names the list's own "
                             "address, which is reported as a failed recipient beside them",
}


@pytest.mark.parametrize("truth", [pytest.param(t, id=t.id, marks=[pytest.mark.xfail(
    reason=EXTRA_ADDRESS_MISMATCH[t.id], strict=True)] if t.id in EXTRA_ADDRESS_MISMATCH else [])
    for t in EXTRA_TRUTH])
def test_extra_bounce_recipient_addresses_match_the_labels(truth):
    kind, findings = reported_findings(truth.path.read_bytes())
    assert kind in ("failure", "delay")
    assert len(findings) == len(truth.addresses)
    for finding, address in zip(findings, truth.addresses, strict=True):
        if address is not None:
            assert canonical(finding.recipient) == canonical(address)
