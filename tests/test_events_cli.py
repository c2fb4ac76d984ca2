"""`mailwarden bounces list | suppressed | forget | export` and `config check` on the store: what each prints, its
filters and formats, and exit 2 for a store that is off, missing or damaged."""

from __future__ import annotations

import csv
import io
import json
import uuid
from dataclasses import asdict

import pytest

from mailwarden.cli import main
from mailwarden.events import Event
from mailwarden.store import Store


def event(recipient: str, time: str, category: str = "bad-mailbox", type_: str = "hard") -> Event:
    return Event(id=str(uuid.uuid4()), time=time, recipient=recipient, category=category, type=type_,
                 status="5.1.1" if type_ == "hard" else None, confidence=0.97, model="0123456789ab",
                 queue_id="4ABC", reporting_mta="mx.far.example", diagnostic="550 5.1.1 no such user")  # fmt: skip


EVENTS = [event("gone@far.example", "2026-03-01T10:00:00+00:00"),
          event("Full@far.example", "2026-03-02T10:00:00+00:00", "quota-issues", "transient"),
          event("full@far.example", "2026-03-03T10:00:00+00:00", "quota-issues", "transient")]  # fmt: skip


@pytest.fixture
def config(tmp_path):
    store = Store(tmp_path / "events.sqlite")
    store.record(EVENTS, [])
    store.close()
    path = tmp_path / "mailwarden.toml"
    path.write_text(f'[events]\nstore = "{tmp_path}/events.sqlite"\n')
    return str(path)


def run(capsys, *args: str) -> tuple[int, str, str]:
    status = main(["bounces", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_list_json_prints_each_event_as_published_oldest_first(config, capsys):
    status, out, _ = run(capsys, "list", "--config", config, "--json")
    assert status == 0
    assert [json.loads(line) for line in out.splitlines()] == [asdict(e) for e in EVENTS]


def test_list_filters_by_time_recipient_and_category(config, capsys):
    _, out, _ = run(capsys, "list", "--config", config, "--json", "--since", "2026-03-02", "--recipient",
                    "FULL@far.example", "--category", "quota-issues")  # fmt: skip
    assert [json.loads(line)["id"] for line in out.splitlines()] == [EVENTS[1].id, EVENTS[2].id]
    _, out, _ = run(capsys, "list", "--config", config, "--since", "1d")  # relative: none is that recent
    assert out == ""


def test_list_text_shows_one_line_per_event(config, capsys):
    _, out, _ = run(capsys, "list", "--config", config)
    first = out.splitlines()[0]
    assert first.startswith("2026-03-01T10:00:00+00:00 gone@far.example bad-mailbox hard status=5.1.1")
    assert f"id={EVENTS[0].id}" in first and "reporting_mta=mx.far.example" in first


def test_suppressed_lists_the_hard_bounce_and_forget_takes_it_off(config, capsys):
    _, out, _ = run(capsys, "suppressed", "--config", config, "--json")
    assert [json.loads(line) for line in out.splitlines()] == [
        {"address": "gone@far.example", "reason": "hard-bounce", "since": "2026-03-01T10:00:00+00:00", "events": 1}]
    status, out, _ = run(capsys, "forget", "Gone@far.example", "--config", config)
    assert status == 0 and "taken off the suppression list" in out
    assert run(capsys, "suppressed", "--config", config)[1] == ""
    status, _, err = run(capsys, "forget", "gone@far.example", "--config", config)
    assert status == 1 and "not on the suppression list" in err


def test_export_writes_events_as_csv_or_json_and_the_suppression_list(config, capsys):
    _, out, _ = run(capsys, "export", "--config", config)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["id"] for r in rows] == [e.id for e in EVENTS] and rows[1]["status"] == ""
    _, out, _ = run(capsys, "export", "--config", config, "--format", "json", "--category", "bad-mailbox")
    assert json.loads(out) == [asdict(EVENTS[0])]
    _, out, _ = run(capsys, "export", "--config", config, "--format", "csv", "--suppressed")
    assert out.splitlines() == ["address,reason,since,events",
                                "gone@far.example,hard-bounce,2026-03-01T10:00:00+00:00,1"]


def test_commands_say_so_when_the_store_is_off_or_missing(tmp_path, capsys):
    off = tmp_path / "off.toml"
    off.write_text('[events]\nstore = ""\n')
    status, _, err = run(capsys, "suppressed", "--config", str(off))
    assert status == 2 and '[events] store is ""' in err
    missing = tmp_path / "missing.toml"
    missing.write_text(f'[events]\nstore = "{tmp_path}/nothing.sqlite"\n')
    status, _, err = run(capsys, "list", "--config", str(missing))
    assert status == 2 and "no such store" in err
    assert not (tmp_path / "nothing.sqlite").exists()


def test_config_check_fails_on_a_damaged_store_and_notes_one_not_created_yet(tmp_path, capsys):
    store = tmp_path / "events.sqlite"
    config = tmp_path / "mailwarden.toml"
    config.write_text(f'[events]\nstore = "{store}"\n')
    assert main(["config", "check", "--config", str(config)]) == 0  # not there yet: the daemon makes it
    written = Store(store)
    written.record(EVENTS, [])
    written.close()  # checkpointed into the file
    raw = bytearray(store.read_bytes())
    raw[4096:8192] = b"\xff" * 4096  # a page of the file overwritten
    store.write_bytes(bytes(raw))
    capsys.readouterr()
    assert main(["config", "check", "--config", str(config)]) == 2
    assert "[events] store cannot be used" in capsys.readouterr().err
