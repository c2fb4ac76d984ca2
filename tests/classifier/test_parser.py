"""The lightweight MIME reader (parts.py) against the stdlib parser it replaces on the hot path."""

from __future__ import annotations

import email
import email.policy
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwarden.classifier.parts import (
    MAX_PARSED_BYTES,
    OPAQUE_TYPES,
    at_word_start,
    content_type,
    lowered,
    parse,
    parse_message,
    split_message,
    walk_outer,
)

from .conftest import corpus_bytes, corpus_labels


def _stdlib(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw[:MAX_PARSED_BYTES], policy=email.policy.compat32)


def _outline(msg: email.message.Message) -> list[tuple[str, list[tuple[str, str]]]]:
    """Content type and raw header fields of every outer part (what the extraction reads)."""
    return [(ctype, list(part.raw_items())) for part, ctype in walk_outer(msg)]


def _leaf_payloads(msg: email.message.Message) -> list[str]:
    return [part.get_payload() for part, ctype in walk_outer(msg)
            if not part.is_multipart() and ctype not in OPAQUE_TYPES]


@pytest.mark.parametrize("label", corpus_labels(), ids=lambda label: label["id"])
def test_corpus_message_reads_like_the_stdlib_parse(label):
    raw = corpus_bytes(label)
    ours, stdlib = parse_message(raw), _stdlib(raw)
    if any(ctype.startswith("multipart/") and not part.is_multipart() for part, ctype in walk_outer(stdlib)):
        # A multipart whose declared boundary never occurs: the stdlib keeps it opaque; our repair finds the
        # parts that another boundary delimits (7 corpus messages) and never loses one.
        assert len(list(walk_outer(ours))) >= len(list(walk_outer(stdlib)))
        return
    assert _outline(ours) == _outline(stdlib)
    assert _leaf_payloads(ours) == _leaf_payloads(stdlib)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["a", "b", ":", " ", "\t", "\n", "\r\n", "-", ">", "F", ":x", "\n "]), max_size=60)
       .map("".join))
def test_header_block_matches_the_stdlib(text):
    """Fields, unfolding and where the body starts (mbox "From " lines are left out: the stdlib keeps or drops
    them by position, and neither is a field for us)."""
    ours, body = split_message(text)
    stdlib = email.message_from_string(text, policy=email.policy.compat32)
    assert list(ours.raw_items()) == list(stdlib.raw_items())
    assert body == stdlib.get_payload()


def test_multipart_whose_boundary_never_occurs_is_split_at_the_one_used():
    raw = (b'Content-Type: multipart/report; boundary="declared"\n\n--used\nContent-Type: text/plain\n\nhello\n'
           b"--used\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; a@example.com\n--used--\n")
    assert [ctype for _, ctype in walk_outer(parse_message(raw))] == [
        "multipart/report", "text/plain", "message/delivery-status"]


def test_attached_original_is_kept_as_text_and_html_is_skipped_next_to_a_report():
    raw = (b'Content-Type: multipart/report; boundary="b"\n\n--b\nContent-Type: text/html\n\n<p>550 user unknown</p>\n'
           b"--b\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; a@example.com\n\n"
           b"--b\nContent-Type: message/rfc822\n\nTo: a@example.com\nSubject: hi\n\nbody\n--b--\n")
    parsed = parse(raw)
    original = parsed.of_type("message/rfc822")[0]
    assert original.get_payload() == "To: a@example.com\nSubject: hi\n\nbody"
    assert parsed.body == ""  # the report's fields are read instead of its HTML rendering
    html_only = raw.replace(b"message/delivery-status", b"text/x-unknown")
    assert parse(html_only).body.strip() == "550 user unknown"


def test_lowered_keeps_positions_when_lower_casing_would_not():
    text = "\u0130STANBUL Mailbox FULL"  # U+0130 lower-cases to two characters
    assert len(lowered(text)) == len(text)
    assert lowered(text).endswith("mailbox full")
    assert content_type(parse_message(b"Content-Type: TEXT/Plain\n\nx")) == "text/plain"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["mail", "box", "data", "x", " ", "-", "_", "1", "e", "\u00e9"]), max_size=30)
       .map("".join))
def test_word_start_alternation_matches_like_a_leading_word_boundary(text):
    alternatives = (r"mail[\s\-]?box", r"data\b", "email", "box")
    plain = re.compile(r"\b(?:" + "|".join(alternatives) + ")")
    fast = re.compile(at_word_start(*alternatives))
    assert [m.span() for m in fast.finditer(text)] == [m.span() for m in plain.finditer(text)]
