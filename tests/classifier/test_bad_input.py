"""Hostile and broken input: a clear verdict, never an exception.

BounceClassifier.analyse() turns any exception of the analysis into a "not a bounce" report, the same report
as for a message that parsed and held nothing; so these tests run the analysis without that safety net
(`analyse` below), where a crash fails the test, and the safety net has a test of its own.
"""

from __future__ import annotations

import base64
import logging
import time
from logging.handlers import BufferingHandler

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwarden.classifier import BounceClassifier
from mailwarden.classifier.report import reported_findings
from mailwarden.classifier.verdict import KINDS, BounceReport

DSN_HEAD = ("Return-Path: <>\nFrom: MAILER-DAEMON@mx.example.net\nTo: s@example.org\n"
            "Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n")


def _dsn(boundary_declared: str, boundary_used: str, diagnostic: str = "550 5.1.1 user unknown") -> bytes:
    return (DSN_HEAD + f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary_declared}"\n'
            f"\n--{boundary_used}\nContent-Type: text/plain\n\nYour message could not be delivered.\n"
            f"\n--{boundary_used}\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
            f"Final-Recipient: rfc822; rcpt@example.com\nAction: failed\nStatus: 5.1.1\n"
            f"Diagnostic-Code: smtp; {diagnostic}\n\n--{boundary_used}--\n").encode()


@pytest.fixture
def analyse(classifier: BounceClassifier):
    """The analysis without analyse()'s safety net: an exception reaches the test instead of becoming "none"."""
    return classifier._analyse


def test_an_exception_in_the_analysis_gives_not_a_bounce_and_one_log_line(classifier, monkeypatch):
    def crash(*_: object) -> BounceReport:
        raise RuntimeError("parser bug\n" + "x" * 1000)

    monkeypatch.setattr(BounceClassifier, "_analyse", crash)
    log = BufferingHandler(capacity=100)  # on the logger itself: the daemon's log setup stops propagation to root
    logger = logging.getLogger("mailwarden.classifier")
    logger.addHandler(log)
    try:
        report = classifier.analyse(b"From: MAILER-DAEMON@x.example\n\nanything\n")
    finally:
        logger.removeHandler(log)
    assert (report.bounce, report.kind, report.recipients) == (False, "none", ())
    (record,) = log.buffer
    assert record.getMessage().startswith("bounce analysis failed (RuntimeError: parser bug")
    assert record.exc_info is None and len(record.getMessage()) < 300  # attacker input must not flood the log


def test_dsn_with_wrong_declared_boundary_is_still_read():
    report_kind, findings = reported_findings(_dsn("declared-but-unused", "actually-used"))
    assert report_kind == "failure"
    assert [(f.recipient, f.status) for f in findings] == [("rcpt@example.com", "5.1.1")]


def test_truncated_mime_gives_a_verdict(analyse):
    raw = _dsn("b", "b")
    for cut in (10, len(raw) // 3, len(raw) // 2, len(raw) - 20):
        report = analyse(raw[:cut])
        assert report.kind in ("failure", "none")
        assert all(v.category for v in report.recipients)


def test_ten_megabyte_body_is_analysed(analyse):
    raw = _dsn("b", "b") + b"\n" + (b"A" * 76 + b"\n") * (10 * 1024 * 1024 // 77)
    report = analyse(raw)
    assert report.bounce and report.recipients[0].category == "bad-mailbox"


def test_binary_garbage_is_not_a_bounce(analyse):
    report = analyse(bytes(range(256)) * 40)
    assert (report.bounce, report.kind, report.recipients) == (False, "none", ())


def test_empty_message_is_not_a_bounce(analyse):
    assert analyse(b"").kind == "none"


def test_unknown_charset_falls_back_to_readable_text(analyse, make_bounce):
    raw = make_bounce("<rcpt@example.com>: 550 5.2.2 mailbox full\n", content_type="text/plain; charset=x-klingon")
    report = analyse(raw)
    assert report.bounce and report.recipients[0].recipient == "rcpt@example.com"
    assert report.recipients[0].status == "5.2.2"


def test_nested_message_rfc822_does_not_leak_recipients(analyse):
    inner = (DSN_HEAD + "Content-Type: text/plain\n\n<inner@example.com>: 550 5.1.1 user unknown\n")
    raw = (DSN_HEAD + 'Content-Type: multipart/mixed; boundary="o"\n\n--o\nContent-Type: text/plain\n\n'
           "<outer@example.com>: 552 5.2.2 mailbox full\n\n--o\nContent-Type: message/rfc822\n\n"
           + inner + "\n--o--\n").encode()
    report = analyse(raw)
    assert [v.recipient for v in report.recipients] == ["outer@example.com"]


def test_deeply_nested_multiparts_give_a_clear_verdict(analyse):
    raw = b"From: MAILER-DAEMON@x.example\n" + b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(2000)) + b"\nx\n"
    report = analyse(raw)  # the stdlib parser recurses past Python's limit here
    assert (report.bounce, report.kind, report.recipients) == (False, "none", ())


def test_base64_body_is_decoded(analyse, make_bounce):
    body = base64.encodebytes(b"<rcpt@example.com>:\nRemote host said: 552 5.2.2 Mailbox full\n").decode()
    report = analyse(make_bounce(body, encoding="base64"))
    assert report.recipients[0].status == "5.2.2" and report.recipients[0].category == "quota-issues"


def test_quoted_printable_folded_diagnostic_is_joined(analyse):
    raw = (DSN_HEAD + 'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
           "--b\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: quoted-printable\n\n"
           "Reporting-MTA: dns; mx\n\nFinal-Recipient: rfc822; r@example.com\nAction: failed\nStatus: 5.2.2\n"
           "Diagnostic-Code: smtp; 552 5.2.2 The email account that you tried to reach is=\n"
           "  over quota\n\n--b--\n").encode()
    report = analyse(raw)
    assert report.recipients[0].diagnostic.endswith("over quota")
    assert report.recipients[0].category == "quota-issues"


def test_iso_2022_jp_body_is_decoded(analyse, make_bounce):
    text = "<rcpt@example.jp>\nメールボックスがいっぱいです 552 5.2.2\n"
    body = text.encode("iso-2022-jp").decode("latin-1")
    report = analyse(make_bounce(body, content_type="text/plain; charset=ISO-2022-JP"))
    assert "メールボックス" in report.recipients[0].diagnostic


def test_auto_submitted_bounce_is_still_a_failure(analyse, make_bounce):
    raw = make_bounce("<r@example.com>: host mx said: 550 5.1.1 user unknown\n",
                      extra_headers="Auto-Submitted: auto-replied\n")
    assert analyse(raw).kind == "failure"


def test_ordinary_mail_with_failure_words_is_not_a_bounce(analyse):
    raw = (b"Return-Path: <billing@shop.example>\nFrom: Billing <billing@shop.example>\nTo: s@example.org\n"
           b"Subject: Error in your last payment\n\nYour card was rejected and your subscription has expired.\n"
           b"The user account jane@example.org does not exist in our shop any more.\n")
    assert analyse(raw).kind == "none"


def test_vacation_reply_is_an_auto_reply(analyse):
    raw = (b"Return-Path: <>\nFrom: someone@example.com\nTo: s@example.org\nSubject: Out of office\n"
           b"Auto-Submitted: auto-replied\n\nI am away until Monday.\n")
    assert analyse(raw).kind == "auto-reply"


def test_exim_alias_note_is_not_a_recipient(make_bounce):
    raw = make_bounce("The following address(es) failed:\n\n  target@example.net\n"
                      "    (generated from alias@example.org)\n"
                      "    SMTP error from remote mail server after RCPT TO:<target@example.net>:\n"
                      "    host mx.example.net [192.0.2.1]: 550 5.1.1 no such user\n")
    _, findings = reported_findings(raw)
    assert [(f.recipient, f.status, f.stage) for f in findings] == [("target@example.net", "5.1.1", "rcpt")]


def test_sendmail_transcript_lines_above_a_recipient_line_are_its_diagnostic(make_bounce):
    raw = make_bounce("   ----- Transcript of session follows -----\nWhile talking to mx.example.org:\n"
                      ">>> MAIL From:<sender@example.org>\n<<< 553 sender domain does not resolve\n"
                      "554 <a@example.org>... Remote protocol error\n"
                      "554 <b@example.net>... 550 Host unknown (Authoritative answer from name server)\n")
    _, findings = reported_findings(raw)
    assert [(f.recipient, f.stage, f.reply_code) for f in findings] == [
        ("a@example.org", "mail", "553"), ("b@example.net", None, "554")]
    assert "sender domain does not resolve" in findings[0].diagnostic


def test_delay_dsn_is_a_delay_whose_recipients_did_not_fail(analyse):
    raw = _dsn("b", "b").replace(b"Action: failed", b"Action: delayed").replace(b"Status: 5.1.1", b"Status: 4.4.1")
    report = analyse(raw)
    assert (report.bounce, report.kind) == (False, "delay")
    assert [(v.category, v.type) for v in report.recipients] == [("not-a-bounce", "none")]


def test_a_delayed_recipient_in_a_failure_report_is_not_labelled_as_failed(analyse):
    delayed = ("\nFinal-Recipient: rfc822; later@example.com\nAction: delayed\nStatus: 4.2.2\n"
               "Diagnostic-Code: smtp; 452 4.2.2 mailbox full\n")
    raw = _dsn("b", "b").replace(b"\n\n--b--", delayed.encode() + b"\n--b--")
    report = analyse(raw)
    assert report.bounce and report.kind == "failure"
    assert [(v.recipient, v.category) for v in report.recipients] == [
        ("rcpt@example.com", "bad-mailbox"), ("later@example.com", "not-a-bounce")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_parser_never_raises_on_arbitrary_bytes(raw):
    kind, findings = reported_findings(raw)
    assert kind in KINDS
    assert isinstance(findings, list)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list("abc:;-=<>@.\n\t \"5.1.1 boundary multipart/report Final-Recipient"
                                             "Content-Type message/delivery-status charset=?"))),
       st.integers(min_value=0, max_value=3))
def test_parser_never_raises_on_mangled_dsns(noise, where):
    raw = bytearray(_dsn("b", "b"))
    position = len(raw) * where // 4
    raw[position:position] = noise.encode()
    kind, _ = reported_findings(bytes(raw))
    assert kind in KINDS


@pytest.mark.parametrize(("body", "ctype"), [
    (b"a" * 100_000, "text/plain"), (b"a." * 50_000, "text/plain"), (b"a@" * 50_000, "text/plain"),
    (b" ".join(b"u%d@example.com" % i for i in range(5_000)), "text/plain"),
    (b"<script>" * 12_000, "text/html"), (b"<" * 100_000, "text/html"), (b"<a " * 30_000, "text/html"),
    (b"--b\n" * 40_000, 'multipart/mixed; boundary="b"'),
], ids=["letters", "dots", "at-signs", "addresses", "unclosed-scripts", "unclosed-brackets", "unclosed-tags",
        "empty-parts"])
def test_pathological_bodies_are_analysed_in_bounded_time(analyse, make_bounce, body, ctype):
    # Each of these took 6-11 s with unbounded patterns (quadratic backtracking) before they were bounded.
    started = time.perf_counter()
    report = analyse(make_bounce(body.decode(), content_type=ctype))
    assert time.perf_counter() - started < 2.0
    assert len(report.recipients) <= 100


def test_a_report_naming_ten_thousand_recipients_is_labelled_in_bounded_time_and_size(analyse):
    groups = "".join(f"\nFinal-Recipient: rfc822; u{i}@example.com\nAction: failed\nStatus: 5.1.1\n"
                     f"Diagnostic-Code: smtp; 550 5.1.1 user unknown\n" for i in range(10_000))
    failed = ", ".join(f"u{i}@example.com" for i in range(10_000))
    raw = _dsn("b", "b").replace(b"\n\n--b--", groups.encode() + b"\n--b--").replace(
        b"\n\n", f"\nX-Failed-Recipients: {failed}\n\n".encode(), 1)
    started = time.perf_counter()
    report = analyse(raw)
    assert time.perf_counter() - started < 2.0
    assert report.bounce and 1 <= len(report.recipients) <= 100
    # The X-Failed-Recipients field alone is larger than the part of a message that is parsed (parts.MAX_PARSED_
    # BYTES): the recipients are known, the reason is not read, so nothing is claimed about it.
    assert {(v.category, v.type) for v in report.recipients} == {("other", "unknown")}
