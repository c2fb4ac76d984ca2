"""Bounce labels in real Postfix: a DSN arriving over SMTP (smtpd_milters) and a bounce that Postfix itself
writes (non_smtpd_milters + internal_mail_filter_classes = bounce) both get X-Mailwarden-Bounce fields; a bounce
whose only sign of being one is its null envelope sender too."""

from __future__ import annotations

import re
import smtplib
import uuid
from pathlib import Path

from mailwarden.classifier import BounceClassifier

from .smtp import send

CORPUS = Path(__file__).parent / "data" / "dsn-corpus" / "eml"
FIELD = re.compile(
    r"^(?P<rcpt>[^;\s]+); category=(?P<category>[a-z-]+); type=(?P<type>[a-z]+); status=(?P<status>[0-9.]+|none); "
    r"confidence=(?P<confidence>[01]\.\d\d); model=(?P<model>[0-9a-f]{12})$"
)


def test_dsn_over_smtp_is_labelled_per_recipient(mta):
    marker = f"mw-{uuid.uuid4().hex}"
    raw = f"X-Test-Marker: {marker}\r\n".encode() + (CORPUS / "lhost-postfix-63.eml").read_bytes()
    with smtplib.SMTP("127.0.0.1", mta.smtp_port, timeout=30) as smtp:
        smtp.sendmail("", ["bob@example.org"], raw)
    message = mta.delivered(marker)
    (value,) = message.get_all("X-Mailwarden-Bounce")
    match = FIELD.match(value)
    assert match, value
    assert (match["category"], match["type"], match["status"]) == ("quota-issues", "transient", "5.2.2")
    assert match["model"] == BounceClassifier.load().model_id
    assert f"recipient={match['rcpt']}" in mta.daemon.log() and "category=quota-issues" in mta.daemon.log()


def test_bounce_known_only_by_its_null_envelope_sender_is_labelled(mta):
    """KDDI's mailbox-full notice: From no-reply@, Subject "Mail", no delivery-status part. Without Return-Path
    (Postfix adds one only at final delivery, after the milter) MAIL FROM:<> is all that marks it."""
    marker = f"mw-{uuid.uuid4().hex}"
    original = (CORPUS / "lhost-kddi-03.eml").read_bytes()
    without_return_path = original.replace(b"Return-Path: <>\n", b"", 1)
    assert b"Return-Path: <>" not in without_return_path
    raw = f"X-Test-Marker: {marker}\r\n".encode() + without_return_path
    with smtplib.SMTP("127.0.0.1", mta.smtp_port, timeout=30) as smtp:
        smtp.sendmail("", ["bob@example.org"], raw)
    message = mta.delivered(marker)
    (value,) = message.get_all("X-Mailwarden-Bounce")
    match = FIELD.match(value)
    assert match, value
    assert (match["rcpt"], match["category"], match["type"]) == (
        "kijitora@00000000000000.dion.ne.jp", "quota-issues", "transient")


def test_postfix_generated_bounce_is_labelled(mta):
    marker = f"mw-{uuid.uuid4().hex}"
    mta.sendmail("alice@example.org", ["nobody@full.test"], f"Subject: {marker}\n\nHello.\n".encode())
    dsn = mta.delivered(f"Subject: {marker}")  # the bounce quotes the original's headers
    assert "<MAILER-DAEMON@mailwarden.test>" in dsn["From"]
    (value,) = dsn.get_all("X-Mailwarden-Bounce")
    match = FIELD.match(value)
    assert match, value
    assert (match["rcpt"], match["status"], match["category"]) == ("nobody@full.test", "5.2.2", "quota-issues")
    assert "Mailbox full: user is over quota" in mta.daemon.log()  # the evidence that decided


def test_ordinary_mail_gets_no_bounce_label(mta):
    sent = send(mta.smtp_port, "alice@good.test", ["bob@example.org"], ip="192.0.2.10")
    assert mta.delivered(sent.marker)["X-Mailwarden-Bounce"] is None
