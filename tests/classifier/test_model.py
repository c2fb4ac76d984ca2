"""The shipped ONNX model: loading, identity, self-description, agreement with the training-time model."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from mailwarden.classifier import BounceClassifier, ModelError, default_model_path
from mailwarden.classifier.corpus import Example, corpus_examples
from mailwarden.classifier.extract import Finding
from mailwarden.classifier.features import model_text
from mailwarden.classifier.model import OnnxModel, calibrate, top_category, with_prior
from mailwarden.classifier.taxonomy import default_types

from .conftest import CORPUS, EXTRA, MTA_FORMATS


def test_shipped_model_is_small_and_inside_the_package():
    path = default_model_path()
    assert path.parent.name == "classifier" and path.is_file()
    assert path.stat().st_size < 5 * 1024 * 1024


def test_model_id_is_first_12_hex_of_file_sha256(classifier):
    expected = hashlib.sha256(default_model_path().read_bytes()).hexdigest()[:12]
    assert classifier.model_id == expected


def test_model_carries_the_17_failure_categories_and_their_types():
    model = OnnxModel(default_model_path())
    taxonomy = set(default_types()) - {"not-a-bounce"}  # 'other' is learnt from replies that name no cause
    assert set(model.labels) == taxonomy
    assert model.types["inactive-mailbox"] == "hard"  # 'hard*' counts as hard
    assert model.types["other"] == "unknown"


def test_load_rejects_a_file_that_is_not_onnx(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(ModelError):
        BounceClassifier.load(bad)


def test_load_rejects_onnx_without_mailwarden_metadata(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(ModelError, match="not a mailwarden bounce model"):
        BounceClassifier.load(path)


def test_load_of_missing_file_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        BounceClassifier.load(tmp_path / "missing.onnx")


def test_loading_again_gives_an_independent_instance_with_the_same_answers(classifier):
    text = "550 5.2.2 mailbox full"
    again = BounceClassifier.load()
    assert again is not classifier
    assert again.classify_text(text) == classifier.classify_text(text)


def test_specific_text_wins_over_a_generic_status_code(classifier):
    assert classifier.classify_text("550 5.0.0 mailbox full, quota exceeded").category == "quota-issues"
    assert classifier.classify_text("554 5.0.0 message size exceeds fixed limit").category == "message-too-large"


def test_a_confident_text_overrules_the_status_code_and_a_bare_code_follows_it(classifier):
    assert classifier.classify_text("550 5.1.1 Mailbox currently suspended").category == "inactive-mailbox"
    assert classifier.classify_text("553 5.1.1 Sender Policy Framework (SPF) fail").category == "auth-security"
    assert classifier.classify_text("550 5.1.1").category == "bad-mailbox"
    assert classifier.classify_text("552 5.2.2").category == "quota-issues"


@pytest.mark.parametrize(("text", "category"), [
    ("550 Message refused by SpamGuardian", "spam-related"),
    ("554 Rejected by the AntiSpamShield filter", "spam-related"),
    ("554 Message rejected: AntiVirusGate found W32/Bagle", "virus-related"),
])
def test_a_filter_unknown_to_training_is_read_by_the_stem_in_its_name(classifier, text, category):
    assert classifier.classify_text(text).category == category


# Languages no training text is written in (the reply bank has none of them): read through the glossary.
@pytest.mark.parametrize(("text", "category"), [
    ("A címzett postafiókja megtelt", "quota-issues"),                       # Hungarian
    ("Το γραμματοκιβώτιο του παραλήπτη είναι πλήρες", "quota-issues"),       # Greek
    ("Domeniul destinatarului nu există", "bad-domain"),                      # Romanian
    ("Adresa expeditorului a fost respinsă", "invalid-sender"),
    ("Viesti hylättiin roskapostina", "spam-related"),                        # Finnish
    ("Postkassen er deaktiveret", "inactive-mailbox"),                        # Danish
    ("Az üzenet mérete túl nagy", "message-too-large"),
    ("Πάρα πολλές συνδέσεις, δοκιμάστε αργότερα", "rate-limited"),
])
def test_a_failure_text_in_a_language_training_never_saw_is_read_through_the_glossary(classifier, text, category):
    assert classifier.classify_text(text).category == category


def test_status_prior_takes_the_most_specific_level_it_knows():
    from mailwarden.classifier.model import with_prior

    prior = {"5.1": [0.9, 0.1], "5": [0.5, 0.5]}
    assert with_prior([0.5, 0.5], "5.1.1", prior, 1.0) == pytest.approx([0.9, 0.1])  # 5.1.1 unknown: 5.1
    assert with_prior([0.5, 0.5], "5.7.1", prior, 1.0) == pytest.approx([0.5, 0.5])  # only the class: flat
    assert with_prior([0.2, 0.8], None, prior, 1.0) == [0.2, 0.8]  # no code, no prior
    weighted = with_prior([0.5, 0.5], "5.1.1", prior, 0.5)
    assert 0.5 < weighted[0] < 0.9  # a weight below 1 softens the code's say


def test_a_text_that_says_nothing_leaves_the_decision_to_the_status_code():
    from mailwarden.classifier.features import says_nothing

    assert says_nothing("xstage_data ") and says_nothing("xstage_rcpt zaddr znum")
    assert not says_nothing("xstage_rcpt user unknown zaddr")
    model = OnnxModel(default_model_path())
    # Before: an empty diagnostic at DATA read as content-related (0.50), at RCPT as bad-mailbox, from what
    # the training made of empty texts.
    for stage in ("data", "rcpt", None):
        silent = model.predict([Finding(recipient="r@example.org", diagnostic="<r@example.org>", stage=stage)])
        assert silent[0].category == "other" and silent[0].confidence < model.threshold
        full = model.predict([Finding(recipient="r@example.org", status="4.2.2", stage=stage)])
        assert full[0].category == "quota-issues"
        # A class alone (5.0.0) says permanent and nothing more: still no decision.
        generic = model.predict([Finding(recipient="r@example.org", status="5.0.0", diagnostic="550 5.0.0")])
        assert generic[0].category == "other"


def test_code_alone_is_the_base_rate_times_the_likelihood_ratio():
    from mailwarden.classifier.model import code_alone

    prior = {"5.1": [3.0, 0.5], "5": [1.0, 1.0]}
    assert code_alone("5.1.1", prior, [0.2, 0.8]) == pytest.approx([0.6, 0.4])  # 0.2 * 3 : 0.8 * 0.5
    assert code_alone(None, prior, [0.2, 0.8]) == pytest.approx([0.5, 0.5])  # no code: nothing speaks
    assert code_alone("4.7.1", prior, [0.2, 0.8]) == pytest.approx([0.5, 0.5])  # a code the prior lacks


def test_the_base_rates_are_the_training_share_of_each_category_smoothed():
    from mailwarden.classifier.train import base_rates

    examples = [Example(Finding(recipient=""), category, "g") for category in ("a", "a", "a", "b")]
    assert base_rates(examples, ["a", "b", "c"]) == pytest.approx([4 / 7, 2 / 7, 1 / 7])  # add-one
    shipped = OnnxModel(default_model_path())
    assert shipped.base_rates is not None and sum(shipped.base_rates) == pytest.approx(1.0, abs=1e-4)


def test_a_model_written_before_the_base_rates_were_stored_still_loads_and_classifies(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = onnx.load(default_model_path())
    kept = [p for p in model.metadata_props if p.key != "mailwarden.base_rates"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, tmp_path / "older.onnx")
    older = OnnxModel(tmp_path / "older.onnx")
    assert older.base_rates is None
    silent = Finding(recipient="r@example.org", status="5.1.1")
    assert older.predict([silent]) == [  # read as every text was before: the text model's row times the prior
        top_category(calibrate(with_prior(older.probabilities([model_text(silent)])[0].tolist(), "5.1.1",
                                          older.prior, older.prior_weight), older.temperature),
                     older.labels, older.threshold)]


@pytest.mark.parametrize(("key", "value"), [("mailwarden.prior", '{"5.1.1": [1.0]}'),
                                            ("mailwarden.base_rates", "[1.0]"), ("mailwarden.base_rates", '"0.5"')])
def test_load_rejects_a_status_prior_or_base_rates_that_do_not_match_the_labels(tmp_path, key, value):
    onnx = pytest.importorskip("onnx")
    model = onnx.load(default_model_path())
    next(p for p in model.metadata_props if p.key == key).value = value
    onnx.save(model, tmp_path / "broken.onnx")
    with pytest.raises(ModelError, match="status prior or base rates"):
        OnnxModel(tmp_path / "broken.onnx")


def test_low_confidence_becomes_other_with_the_score_shown():
    model = OnnxModel(default_model_path())
    model.threshold = 1.01  # nothing can be that sure
    prediction = model.predict([Finding(recipient="", diagnostic="550 <r@example.org>... User unknown")])[0]
    assert prediction.category == "other" and 0.0 < prediction.confidence < 1.0


def test_onnx_model_agrees_with_the_training_time_model(tmp_path):
    """The exported model computes what the training-time model does (text model, status prior), and the
    shipped model is what the documented train command (every corpus, corrected labels) produces."""
    pytest.importorskip("sklearn")
    pytest.importorskip("skl2onnx")
    from mailwarden.classifier.model import calibrate
    from mailwarden.classifier.train import train

    examples = [e for root in (CORPUS, EXTRA, MTA_FORMATS) for e in corpus_examples(root)]
    trained = train(examples, tmp_path / "m.onnx", with_seeds=True, progress=lambda _line: None)
    findings = [e.finding for e in examples]
    rebuilt = OnnxModel(tmp_path / "m.onnx")
    texts = [model_text(f) for f in findings]
    np.testing.assert_allclose(rebuilt.probabilities(texts), trained.pipeline.predict_proba(texts), atol=1e-5)
    expected = [max(calibrate(row, rebuilt.temperature)) for row in trained.predict_proba(findings)]
    np.testing.assert_allclose([p.confidence for p in rebuilt.predict(findings)], expected, atol=1e-5)
    # A near-tie or two may flip under another scikit-learn version.
    shipped = OnnxModel(default_model_path()).predict(findings)
    assert sum(a.category != b.category for a, b in zip(rebuilt.predict(findings), shipped, strict=True)) <= 2


def test_custom_category_is_learned_with_its_type_even_where_the_shipped_examples_read_it_otherwise(tmp_path):
    """The shipped replies file greylisting under policy-related; an administrator's four labelled lines (each
    counting USER_WEIGHT times) still teach a category of its own, firmly, for the wordings they label."""
    pytest.importorskip("sklearn")
    from mailwarden.classifier.corpus import jsonl_examples
    from mailwarden.classifier.train import load_base, train

    texts = ["451 4.7.1 greylisted, please try again later", "450 greylisting in effect, come back soon",
             "451 temporarily greylisted by the recipient's server", "greylisted: retry in 300 seconds"]
    labelled = tmp_path / "grey.jsonl"
    labelled.write_text("".join(json.dumps({"text": t, "category": "greylisted", "type": "transient"}) + "\n"
                                for t in texts))
    train(load_base() + list(jsonl_examples(labelled)), tmp_path / "custom.onnx", with_seeds=True,
          progress=lambda _line: None, max_features=None)
    model = OnnxModel(tmp_path / "custom.onnx")
    assert "greylisted" in model.labels and model.types["greylisted"] == "transient"
    meta = json.loads(model._session.get_modelmeta().custom_metadata_map["mailwarden.labels"])
    assert meta == model.labels
    prediction = model.predict([Finding(recipient="", diagnostic=texts[0])])[0]
    assert prediction.category == "greylisted" and prediction.confidence > 0.8


def test_a_two_category_model_loads_and_agrees_with_the_training_time_model(tmp_path):
    """A two-class logistic regression exports another graph (no softmax normaliser): slimming must keep it
    loadable. `mailwarden train` without --base on two categories gave a file onnxruntime refused."""
    pytest.importorskip("sklearn")
    from mailwarden.classifier.train import train

    texts = {"greylisted": ["451 4.7.1 greylisted, please try again later", "450 greylisting in effect",
                            "temporarily deferred due to greylisting"],
             "bad-mailbox": ["550 5.1.1 user unknown", "No such user here", "mailbox does not exist"]}  # fmt: skip
    examples = [Example(Finding(recipient="", diagnostic=t), category, f"{category}{i}", "")
                for category, group in texts.items() for i, t in enumerate(group)]  # fmt: skip
    trained = train(examples, tmp_path / "two.onnx", with_seeds=False, progress=lambda _line: None,
                    max_features=None)  # fmt: skip
    model = OnnxModel(tmp_path / "two.onnx")
    probe = [Finding(recipient="", diagnostic=d) for d in ["451 greylisted, try later", "user unknown"]]
    texts = [model_text(f) for f in probe]
    np.testing.assert_allclose(model.probabilities(texts), trained.pipeline.predict_proba(texts), atol=1e-5)
    assert [p.category for p in model.predict(probe)] == ["greylisted", "bad-mailbox"]


def test_calibration_keeps_the_ranking_and_moves_confidence_with_the_temperature():
    from mailwarden.classifier.model import calibrate

    row = [0.6, 0.3, 0.1]
    sharper, softer = calibrate(row, 0.5), calibrate(row, 2.0)
    for calibrated in (sharper, softer):
        assert sum(calibrated) == pytest.approx(1.0)
        assert calibrated.index(max(calibrated)) == 0
    assert sharper[0] > 0.6 > softer[0]


def test_model_applies_the_temperature_written_into_it(tmp_path):
    pytest.importorskip("sklearn")
    from mailwarden.classifier.model import calibrate
    from mailwarden.classifier.train import train

    examples = [Example(Finding(recipient="", diagnostic=t), category, f"{category}{i}", "")
                for category, group in {"quota-issues": ["mailbox full", "over quota", "storage full"],
                                        "bad-mailbox": ["user unknown", "no such user", "unknown recipient"]}.items()
                for i, t in enumerate(group)]
    train(examples, tmp_path / "hot.onnx", with_seeds=False, progress=lambda _line: None, max_features=None,
          temperature=2.0)
    model = OnnxModel(tmp_path / "hot.onnx")
    assert model.temperature == 2.0
    finding = Finding(recipient="", diagnostic="mailbox full")
    raw = model.probabilities([model_text(finding)])[0].tolist()
    expected = calibrate(raw, 2.0)
    assert model.predict([finding])[0].confidence == pytest.approx(max(expected))
    assert max(expected) < max(raw)


def test_grouped_folds_hold_each_mta_family_out_whole():
    from mailwarden.classifier.crossval import family_folds

    examples = list(corpus_examples(CORPUS))
    for folds in (None, 5):
        held_out = family_folds(examples, folds)
        families = [f for fold in held_out for f in fold]
        assert sorted(families) == sorted({e.family for e in examples})  # each family in exactly one fold
    assert len(family_folds(examples, None)) == len({e.family for e in examples})


def test_reader_agreement_scores_labels_and_model_against_each_reader_and_where_readers_agree():
    from mailwarden.classifier.crossval import AGREED, reader_agreement

    def example(group: str, category: str) -> Example:
        return Example(Finding(recipient=f"{category}@{group}.example"), category, group)

    # m1's recipients are not next to each other: a recipient's place counts within its own e-mail
    examples = [example("m1", "bad-mailbox"), example("m2", "other"), example("m1", "quota-issues")]
    predicted = ["bad-mailbox", "system-error", "bad-mailbox"]
    readers = [
        {"id": "m1", "index": 0, "recipient": "bad-mailbox@m1.example",
         "readers": {"A": "bad-mailbox", "B": "bad-mailbox"}},
        {"id": "m1", "index": 1, "recipient": "quota-issues@m1.example",
         "readers": {"A": "quota-issues", "B": "bad-mailbox"}},
        {"id": "m2", "index": 0, "recipient": "other@m2.example", "readers": {"A": "system-error"}},  # one reader
        {"id": "m9", "index": 0, "recipient": "x@m9.example", "readers": {"A": "other", "B": "other"}},  # no corpus
    ]
    scores = reader_agreement(examples, predicted, readers)
    assert scores["A"] == (3, 2 / 3, 2 / 3)
    assert scores["B"] == (2, 1 / 2, 1.0)
    assert scores[AGREED] == (1, 1.0, 1.0)  # only m1#0: one reader alone is no agreement


def test_reader_agreement_refuses_readers_out_of_step_with_the_corpora():
    from mailwarden.classifier.crossval import reader_agreement

    examples = [Example(Finding(recipient="a@example.org"), "bad-mailbox", "m1")]
    readers = [{"id": "m1", "index": 0, "recipient": "b@example.org", "readers": {"A": "bad-mailbox"}}]
    with pytest.raises(ValueError, match="b@example.org"):
        reader_agreement(examples, ["bad-mailbox"], readers)


def test_readers_labels_cover_the_real_corpora_recipient_for_recipient():
    """The independent readers' file covers what docs/classifier.md says: each of the two real corpora's
    failed recipients as they stood before session 10 added four messages, once, read by two readers."""
    from mailwarden.classifier.corpus import recipient_keys
    from mailwarden.classifier.crossval import load_readers

    examples = list(corpus_examples(CORPUS)) + list(corpus_examples(EXTRA))
    recipients = dict(zip(recipient_keys(examples), (e.finding.recipient for e in examples), strict=True))
    added_in_session_10 = {key for key in recipients if key[0].startswith(("cpython-", "rt-", "mailparser-"))}
    readers = load_readers(CORPUS.parent / "readers" / "labels.jsonl")
    assert sorted((r["id"], r["index"]) for r in readers) == sorted(recipients.keys() - added_in_session_10)
    for item in readers:
        assert recipients[(item["id"], item["index"])] == item["recipient"]
        assert len(item["readers"]) == 2


def test_load_rejects_a_model_whose_outputs_do_not_match_its_labels(tmp_path):
    """A model that loads but cannot classify is refused at load time (it used to fail at the first bounce,
    which the analysis's safety net turned into "not a bounce", or raise IndexError on a one-output graph)."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(default_model_path())
    labels = next(p for p in model.metadata_props if p.key == "mailwarden.labels")
    labels.value = json.dumps(["bad-mailbox", "quota-issues"])
    prior = next(p for p in model.metadata_props if p.key == "mailwarden.prior")
    prior.value = "{}"
    next(p for p in model.metadata_props if p.key == "mailwarden.base_rates").value = "[0.5, 0.5]"
    onnx.save(model, tmp_path / "mismatch.onnx")
    with pytest.raises(ModelError, match="outputs for 2 labels"):
        OnnxModel(tmp_path / "mismatch.onnx")


def test_load_rejects_an_onnx_model_with_one_output_and_mailwarden_metadata(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.STRING, [None, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.STRING, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    prop = model.metadata_props.add()
    prop.key, prop.value = "mailwarden.labels", json.dumps(["bad-mailbox"])
    onnx.save(model, tmp_path / "one-output.onnx")
    with pytest.raises(ModelError, match="cannot classify"):
        OnnxModel(tmp_path / "one-output.onnx")
