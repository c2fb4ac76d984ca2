"""Fixtures for the bounce classifier tests: the vendored corpus and one loaded classifier per session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailwarden.classifier import BounceClassifier

CORPUS = Path(__file__).resolve().parents[1] / "data" / "dsn-corpus"
EXTRA = CORPUS.with_name("bounce-extra")
MTA_FORMATS = CORPUS.with_name("mta-formats")


def corpus_labels() -> list[dict]:
    """labels.jsonl of the vendored corpus (a function, so tests can parametrize over it at collection)."""
    return [json.loads(line) for line in (CORPUS / "labels.jsonl").read_text(encoding="utf-8").splitlines()]


def corpus_bytes(label: dict) -> bytes:
    return (CORPUS / label["file"]).read_bytes()


@pytest.fixture(scope="session")
def classifier() -> BounceClassifier:
    return BounceClassifier.load()


@pytest.fixture
def make_bounce():
    """Factory for small bounce messages: headers + body lines, as bytes."""
    def build(body: str, *, subject: str = "Undelivered Mail Returned to Sender",
              sender: str = "MAILER-DAEMON@mx.example.net", extra_headers: str = "",
              content_type: str = "text/plain; charset=us-ascii", encoding: str = "7bit") -> bytes:
        head = (f"Return-Path: <>\nFrom: Mail Delivery System <{sender}>\nTo: sender@example.org\n"
                f"Subject: {subject}\nMIME-Version: 1.0\nContent-Type: {content_type}\n"
                f"Content-Transfer-Encoding: {encoding}\n{extra_headers}")
        return (head + "\n" + body).encode("latin-1" if encoding != "8bit" else "utf-8")
    return build
