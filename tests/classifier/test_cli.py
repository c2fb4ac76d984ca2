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
