"""The review loop's milter side and `mailwarden bounces review`: unplaced recipients are reported as `other`
and kept redacted; a store that fails costs the review item, never the message; the CLI lists and forgets."""

from __future__ import annotations

import json
import logging

import pytest

from mailwarden.classifier.verdict import RecipientVerdict
from mailwarden.cli import main
from mailwarden.config import parse
from mailwarden.recorder import Recorder
from mailwarden.review import Review
from mailwarden.store import Store

DIAGNOSTIC = "mailbox for <carol.smith@far.example> is hibernating in the glacier archive"


def verdict(confidence: float, category: str = "quota-issues", diagnostic: str = DIAGNOSTIC) -> RecipientVerdict:
    return RecipientVerdict(
        recipient="carol.smith@far.example", status=None, action="failed", diagnostic=diagnostic,
        remote_mta="mx.far.example (for carol.smith@far.example)", reply_code="550", category=category,
        type="transient", confidence=confidence, evidence=diagnostic, stage="rcpt",
    )  # fmt: skip


def logged(caplog: pytest.LogCaptureFixture, name: str) -> list[dict]:
    """The fields of each `name` event logged."""
    return [r.fields for r in caplog.records if r.getMessage() == name]


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "events.sqlite")
    yield store
    store.close()


def test_unplaced_recipient_is_reported_as_other_and_kept_without_any_address(store, tmp_path):
    (reported,) = Recorder(Review(0.5), store).apply([verdict(0.31)], "4ABC", "0123456789ab")
    assert (reported.category, reported.type, reported.recipient) == ("other", "unknown", "carol.smith@far.example")
    (kept,) = store.review_items()
    assert kept.text == "mailbox for <address@redacted.invalid> is hibernating in the glacier archive"
    assert (kept.guess, kept.confidence, kept.model, kept.queue_id) == ("quota-issues", 0.31, "0123456789ab", "4ABC")
    assert (kept.status, kept.reply_code, kept.stage) == (None, "550", "rcpt")
    assert kept.remote_mta == "mx.far.example (for address@redacted.invalid)"
    assert kept.time.endswith("+00:00")
    assert "carol" not in repr(store._db.execute("SELECT * FROM review").fetchall())  # the event names it; not this


def test_confident_recipient_is_reported_as_labelled_and_not_kept(store):
    confident = verdict(0.5)
    assert Recorder(Review(0.5), store).apply([confident], "4ABC", "m") == [confident]
    assert store.review_items() == []


def test_what_the_model_itself_calls_other_is_kept_whatever_the_threshold(store):
    (reported,) = Recorder(Review(0.0), store).apply([verdict(0.12, category="other")], "", "m")
    assert reported.category == "other"
    assert [i.guess for i in store.review_items()] == ["other"]


def test_a_store_that_cannot_be_written_costs_the_review_not_the_mail(store, caplog):
    store._db.execute("PRAGMA query_only = ON")  # every write now fails inside SQLite, as on a read-only disk
    review = Recorder(Review(0.5), store)
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            (reported,) = review.apply([verdict(0.2)], "4ABC", "m")
            assert reported.category == "other"
    (failure,) = logged(caplog, "store-write-failed")  # once, not once per message
    assert "readonly" in failure["error"]
    store._db.execute("PRAGMA query_only = OFF")
    with caplog.at_level(logging.INFO):
        review.apply([verdict(0.2)], "4ABC", "m")
    assert logged(caplog, "store-write-recovered")
    assert len(store.review_items()) == 1


def test_a_store_that_cannot_be_opened_is_logged_and_reviewing_goes_on_without_it(tmp_path, caplog):
    config = parse(f'[events]\nstore = "{tmp_path}/no/such/dir/events.sqlite"\n')
    with caplog.at_level(logging.INFO):
        review = Recorder.from_config(config)
    assert review.store is None
    (unavailable,) = logged(caplog, "store-unavailable")
    assert "no/such/dir" in unavailable["error"]
    assert review.apply([verdict(0.2)], "", "m")[0].category == "other"


def test_an_empty_store_setting_keeps_nothing(caplog):
    with caplog.at_level(logging.INFO):
        review = Recorder.from_config(parse('[events]\nstore = ""\n'))
    assert review.store is None and caplog.text == ""


# -- `mailwarden bounces review` --


@pytest.fixture
def config_file(tmp_path, store):
    second = verdict(0.4, category="bad-domain", diagnostic="host far.example is on holiday")
    Recorder(Review(0.5), store).apply([verdict(0.31), second], "4ABC", "0123456789ab")
    path = tmp_path / "mailwarden.toml"
    path.write_text(f'[events]\nstore = "{store.path}"\n')
    return path


def test_review_json_lists_one_object_per_line_oldest_first_with_an_empty_category(config_file, capsys):
    assert main(["bounces", "review", "--config", str(config_file), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["id"] for line in lines] == [1, 2]
    assert next(iter(lines[0])) == "id"
    assert set(lines[0]) == {"id", "time", "queue_id", "text", "status", "reply_code", "stage", "remote_mta",
                             "guess", "confidence", "model", "seen", "category"}  # fmt: skip
    assert (lines[0]["category"], lines[0]["guess"], lines[1]["guess"]) == ("", "quota-issues", "bad-domain")
    assert lines[0]["status"] is None and lines[0]["reply_code"] == "550"
    assert "address@redacted.invalid" in lines[0]["text"]


def test_review_text_shows_each_item_with_what_the_model_thought(config_file, capsys):
    assert main(["bounces", "review", "--config", str(config_file)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("#1 ")
    assert "guess=quota-issues confidence=0.31 model=0123456789ab status=none reply_code=550 stage=rcpt" in out
    assert "\n    mailbox for <address@redacted.invalid> is hibernating" in out


def test_forget_labelled_removes_only_the_items_that_got_a_category(config_file, tmp_path, capsys):
    main(["bounces", "review", "--config", str(config_file), "--json"])
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(json.dumps({**first, "category": "inactive-mailbox"}) + "\n" + json.dumps(second) + "\n")
    assert main(["bounces", "review", "--config", str(config_file), "--forget-labelled", str(labelled)]) == 0
    assert "1 reviewed bounce(s) forgotten" in capsys.readouterr().out
    main(["bounces", "review", "--config", str(config_file), "--json"])
    assert [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()] == [2]


def test_forget_labelled_refuses_a_file_that_is_not_a_review(config_file, tmp_path, capsys):
    other = tmp_path / "examples.jsonl"
    other.write_text('{"text": "mailbox full", "category": "quota-issues"}\n')
    assert main(["bounces", "review", "--config", str(config_file), "--forget-labelled", str(other)]) == 2
    assert "examples.jsonl:1" in capsys.readouterr().err


def test_review_says_so_when_the_store_is_off_or_not_there_yet(tmp_path, capsys):
    off = tmp_path / "off.toml"
    off.write_text('[events]\nstore = ""\n')
    assert main(["bounces", "review", "--config", str(off)]) == 2
    assert "nothing is kept for review" in capsys.readouterr().err
    missing = tmp_path / "missing.toml"
    missing.write_text(f'[events]\nstore = "{tmp_path}/events.sqlite"\n')
    assert main(["bounces", "review", "--config", str(missing)]) == 2
    assert "the daemon creates it" in capsys.readouterr().err
    assert not (tmp_path / "events.sqlite").exists()


def test_forget_labelled_leaves_items_of_another_store_alone(config_file, tmp_path, capsys):
    main(["bounces", "review", "--config", str(config_file), "--json"])
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    elsewhere = tmp_path / "elsewhere.jsonl"  # same id, another server's failure
    elsewhere.write_text(json.dumps({**first, "text": "another server's text", "category": "bad-mailbox"}) + "\n")
    main(["bounces", "review", "--config", str(config_file), "--forget-labelled", str(elsewhere)])
    assert "0 reviewed bounce(s) forgotten" in capsys.readouterr().out


def test_a_full_review_store_is_logged_once_and_mail_goes_on(store, caplog, monkeypatch):
    monkeypatch.setattr("mailwarden.store.MAX_REVIEW_ITEMS", 1)
    review = Recorder(Review(0.5), store)
    with caplog.at_level(logging.INFO):
        for n in range(3):
            assert review.apply([verdict(0.2, diagnostic=f"failure {n}")], "", "m")[0].category == "other"
    (failure,) = logged(caplog, "store-write-failed")
    assert "1 bounces wait for review" in failure["error"]
    assert [i.text for i in store.review_items()] == ["failure 0"]
