"""`mailwarden classify|train|eval` through register(), as the main CLI will wire them."""

from __future__ import annotations

import argparse
import json

import pytest

from mailwarden.classifier.cli import register

from .conftest import CORPUS


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mailwarden")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_classify_json_prints_one_object_per_file_with_the_documented_schema(capsys):
    files = [CORPUS / "eml" / name for name in ("rhost-aol-03.eml", "arf-01.eml", "rfc3834-01.eml")]
    assert run(["classify", *map(str, files), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    objects = [json.loads(line) for line in lines]
    assert [o["file"] for o in objects] == [str(f) for f in files]
    assert [(o["bounce"], o["kind"]) for o in objects] == [(True, "failure"), (False, "feedback"),
                                                           (False, "auto-reply")]
    for o in objects:
        assert set(o) == {"file", "bounce", "kind", "recipients"}
    first = objects[0]["recipients"]
    assert [r["recipient"] for r in first] == ["sabineko@example.jp", "mikeneko@example.jp"]
    for r in first:
        assert set(r) == {"recipient", "status", "action", "diagnostic", "category", "type", "confidence"}
        assert isinstance(r["confidence"], float) and 0.0 <= r["confidence"] <= 1.0
    assert (first[0]["category"], first[0]["type"], first[0]["status"]) == ("quota-issues", "transient", "5.2.2")


def test_classify_reports_unreadable_files_and_goes_on(tmp_path, capsys):
    good = CORPUS / "eml" / "rhost-aol-03.eml"
    assert run(["classify", str(tmp_path / "missing.eml"), str(good), "--json"]) == 1
    captured = capsys.readouterr()
    assert "missing.eml" in captured.err
    assert json.loads(captured.out)["file"] == str(good)


def test_classify_with_a_bad_model_fails_clearly(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"junk")
    assert run(["classify", str(CORPUS / "eml" / "arf-01.eml"), "--model", str(bad)]) == 2
    assert "bad.onnx" in capsys.readouterr().err


def test_eval_prints_per_category_scores_and_writes_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "cm.png"
    assert run(["eval", str(CORPUS / "labels.jsonl"), "--part", "dev", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "per-e-mail accuracy" in out and "bad-mailbox" in out and "precision" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_accepts_text_examples(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"text": "552 5.2.2 mailbox full", "category": "quota-issues"}\n'
                      '{"text": "550 5.1.1 no such user here", "category": "bad-mailbox"}\n')
    assert run(["eval", str(labels), "--png", str(tmp_path / "cm.png")]) == 0
    assert "per-recipient accuracy 1.000" in capsys.readouterr().out


def test_train_builds_a_model_with_a_new_category(tmp_path, capsys):
    pytest.importorskip("sklearn")
    examples = tmp_path / "examples.jsonl"
    eml = tmp_path / "grey.eml"
    eml.write_bytes(b"Return-Path: <>\nFrom: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail\n\n"
                    b"<r@example.com>: host mx said: 451 4.7.1 greylisted, come back in 5 minutes\n")
    examples.write_text("\n".join(json.dumps(r) for r in [
        {"text": "451 4.7.1 greylisted, please retry later", "category": "greylisted", "type": "transient"},
        {"text": "450 greylisting in effect", "category": "greylisted"},
        {"eml": "grey.eml", "category": "greylisted"},
        {"text": "550 5.1.1 user unknown", "category": "bad-mailbox"},
    ]) + "\n")
    out = tmp_path / "model.onnx"
    assert run(["train", "--examples", str(examples), "--base", "default", "--out", str(out)]) == 0
    assert "fitted" in capsys.readouterr().err  # progress is shown
    assert run(["classify", str(eml), "--model", str(out), "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out.splitlines()[-1])["recipients"][0]
    assert (verdict["category"], verdict["type"]) == ("greylisted", "transient")


def test_train_rejects_examples_without_category(tmp_path, capsys):
    examples = tmp_path / "examples.jsonl"
    examples.write_text('{"text": "something"}\n')
    assert run(["train", "--examples", str(examples), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "category" in capsys.readouterr().err


def review_line(text: str, category: str, **stated) -> str:
    """A line of `mailwarden bounces review --json` as the administrator hands it back."""
    fields = {"status": None, "reply_code": None, "stage": None, "remote_mta": None, **stated}
    return json.dumps({"id": 1, "time": "2026-01-02T03:04:05+00:00", "queue_id": "4ABC", "text": text, **fields,
                       "guess": "policy-related", "confidence": 0.3, "model": "0123456789ab", "seen": 1,
                       "category": category}) + "\n"  # fmt: skip


def test_review_lines_are_learnt_as_stated_and_unlabelled_ones_are_skipped(tmp_path):
    from mailwarden.classifier.corpus import jsonl_examples

    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(review_line("550 5.1.1 <address@redacted.invalid>: glacier", "inactive-mailbox",
                                    status="5.2.1", stage="rcpt")  # fmt: skip
                        + review_line("not looked at yet", ""))
    (example,) = jsonl_examples(labelled)
    assert example.category == "inactive-mailbox"
    # Stated fields win over the text's own codes, a stated null included: what the milter read is learnt.
    assert (example.finding.status, example.finding.reply_code, example.finding.stage) == ("5.2.1", None, "rcpt")
    assert example.finding.diagnostic == "550 5.1.1 <address@redacted.invalid>: glacier"
    labelled.write_text(review_line("x", "bad-mailbox") + review_line("y", "bad-mailbox", status="5.1"))
    with pytest.raises(ValueError, match=r"labelled.jsonl:2: status '5.1' is not valid"):
        list(jsonl_examples(labelled))


def test_train_builds_on_a_model_it_wrote_earlier(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from mailwarden.classifier import BounceClassifier
    from mailwarden.classifier.train import examples_path, load_base

    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_text(review_line("mailbox is hibernating in the glacier archive", "inactive-mailbox"))
    second.write_text(review_line("the moon is in the wrong phase, come back at full moon", "lunar-pause",
                                  type="transient"))  # fmt: skip
    one, two = tmp_path / "one.onnx", tmp_path / "two.onnx"
    assert run(["train", "--base", "default", "--add", str(first), "--out", str(one)]) == 0
    assert (tmp_path / "one.onnx.examples.json").exists()
    assert run(["train", "--base", str(one), "--add", str(second), "--out", str(two)]) == 0
    assert "1 examples from" in capsys.readouterr().err
    model = BounceClassifier.load(two)
    glacier = model.classify_text("mailbox is hibernating in the glacier archive")
    moon = model.classify_text("the moon is in the wrong phase, come back at full moon")
    assert (glacier.category, moon.category) == ("inactive-mailbox", "lunar-pause")  # the first lesson is kept
    assert model._model.types["lunar-pause"] == "transient"
    learnt = load_base(examples_path(two))  # what `--base two.onnx` learns again: both lessons, with the type
    assert [(e.category, e.type) for e in learnt[-2:]] == [("inactive-mailbox", None), ("lunar-pause", "transient")]


def test_train_on_a_base_that_train_did_not_write_fails_clearly(tmp_path, capsys):
    examples = tmp_path / "examples.jsonl"
    examples.write_text('{"text": "mailbox full", "category": "quota-issues"}\n')
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(b"onnx")
    assert run(["train", "--base", str(foreign), "--add", str(examples), "--out", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "foreign.onnx.examples.json" in err and "written by `mailwarden train`" in err
