"""Decision log lines: key=value or JSON, one line each, hostile values escaped."""

from __future__ import annotations

import json
import logging

import pytest

from mailwarden.log import EventFormatter


def record(**fields: object) -> logging.LogRecord:
    rec = logging.LogRecord("mailwarden", logging.INFO, __file__, 1, "decision", (), None)
    rec.fields = fields
    return rec


def test_key_value_lines_quote_values_with_spaces_and_escape_newlines():
    line = EventFormatter("kv").format(record(client="192.0.2.1", helo="evil\nX-Injected: 1", action="accept"))
    assert line == 'info decision client=192.0.2.1 helo="evil\\nX-Injected: 1" action=accept'


@pytest.mark.parametrize("value", ["plain", "with space", 'quote " and \\ backslash', "nul\x00bell\x07"])
def test_json_lines_parse_back_to_the_same_fields(value):
    line = EventFormatter("json").format(record(queue_id="ABC123", helo=value))
    assert "\n" not in line
    assert json.loads(line) == {"level": "info", "event": "decision", "queue_id": "ABC123", "helo": value}


def test_a_value_that_cannot_be_cached_is_written_like_any_other():
    """Pairs are kept for the next line (most repeat); an unhashable value is rendered without the cache."""
    line = EventFormatter("kv").format(record(recipients=["a@b.example", "c d"], action="accept"))
    assert line == """info decision recipients="['a@b.example', 'c d']" action=accept"""
    assert EventFormatter("kv").format(record(action="accept")) == "info decision action=accept"
