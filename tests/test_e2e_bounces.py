"""Bounce labels in real Postfix: a DSN arriving over SMTP (smtpd_milters) and a bounce that Postfix itself
writes (non_smtpd_milters + internal_mail_filter_classes = bounce) both get X-Mailwarden-Bounce fields; a bounce
whose only sign of being one is its null envelope sender too."""

from __future__ import annotations

import re
import smtplib
import uuid
from pathlib import Path

from mailwarden.classifier import BounceClassifier

from .postfix import Postfix
from .smtp import send

CORPUS = Path(__file__).parent / "data" / "dsn-corpus" / "eml"
FIELD = re.compile(
    r"^(?P<rcpt>[^;\s]+); category=(?P<category>[a-z-]+); type=(?P<type>[a-z]+); status=(?P<status>[0-9.]+|none); "
    r"confidence=(?P<confidence>[01]\.\d\d); model=(?P<model>[0-9a-f]{12})$"
)


def label_fields(value: str) -> dict[str, str]:
    """The fields of one X-Mailwarden-Bounce value (the test fails if the value does not have the format)."""
    match = FIELD.match(value)
    assert match, value
    return match.groupdict()


def deliver_bounce(postfix: Postfix, raw: bytes, sender: str = "") -> dict[str, str]:
    """Send `raw` with the null envelope sender (as a bounce arrives) or `sender`, and return the fields of the
    one X-Mailwarden-Bounce it was delivered with."""
    marker = f"mw-{uuid.uuid4().hex}"
    with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=30) as smtp:
        smtp.sendmail(sender, ["bob@example.org"], f"X-Test-Marker: {marker}\r\n".encode() + raw)
    (value,) = postfix.delivered(marker).get_all("X-Mailwarden-Bounce")
    return label_fields(value)


def test_dsn_over_smtp_is_labelled_per_recipient(mta):
    label = deliver_bounce(mta, (CORPUS / "lhost-postfix-63.eml").read_bytes())
    assert (label["category"], label["type"], label["status"]) == ("quota-issues", "transient", "5.2.2")
    assert label["model"] == BounceClassifier.load().model_id
    assert f"recipient={label['rcpt']}" in mta.daemon.log() and "category=quota-issues" in mta.daemon.log()


def test_bounce_known_only_by_its_null_envelope_sender_is_labelled(mta):
    """KDDI's mailbox-full notice: From no-reply@, Subject "Mail", no delivery-status part. Without Return-Path
    (Postfix adds one only at final delivery, after the milter) MAIL FROM:<> is all that marks it."""
    original = (CORPUS / "lhost-kddi-03.eml").read_bytes()
    without_return_path = original.replace(b"Return-Path: <>\n", b"", 1)
    assert b"Return-Path: <>" not in without_return_path
    label = deliver_bounce(mta, without_return_path)
    assert (label["rcpt"], label["category"], label["type"]) == (
        "kijitora@00000000000000.dion.ne.jp", "quota-issues", "transient")


def test_a_mailing_list_refusing_a_post_is_labelled_for_the_list_address(mta):
    """Mailman writes it From the list's owner address with the list's bounce address as envelope sender: no
    null sender, no MAILER-DAEMON; the From is what makes the milter keep the body for the classifier."""
    raw = (b"From: astro-club-owner@lists.example.org\r\nTo: bob@example.org\r\n"
           b"Subject: Request to mailing list Astro-club rejected\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n'
           b"You are not allowed to post to this mailing list, and your message has been automatically\r\n"
           b"rejected.\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n"
           b"From: bob@example.org\r\nTo: astro-club@lists.example.org\r\nSubject: Star party\r\n\r\n"
           b"Saturday?\r\n--b--\r\n")
    label = deliver_bounce(mta, raw, sender="astro-club-bounces@lists.example.org")
    assert (label["rcpt"], label["category"]) == ("astro-club@lists.example.org", "invalid-sender")


def test_postfix_generated_bounce_is_labelled(mta):
    marker = f"mw-{uuid.uuid4().hex}"
    mta.sendmail("alice@example.org", ["nobody@full.test"], f"Subject: {marker}\n\nHello.\n".encode())
    dsn = mta.delivered(f"Subject: {marker}")  # the bounce quotes the original's headers
    assert "<MAILER-DAEMON@mailwarden.test>" in dsn["From"]
    (value,) = dsn.get_all("X-Mailwarden-Bounce")
    label = label_fields(value)
    assert (label["rcpt"], label["status"], label["category"]) == ("nobody@full.test", "5.2.2", "quota-issues")
    assert "Mailbox full: user is over quota" in mta.daemon.log()  # the evidence that decided


def test_ordinary_mail_gets_no_bounce_label(mta):
    sent = send(mta.smtp_port, "alice@good.test", ["bob@example.org"], ip="192.0.2.10")
    assert mta.delivered(sent.marker)["X-Mailwarden-Bounce"] is None
