"""The milter-facing API: BounceReport contents and the X-Mailwarden-Bounce header value."""

from __future__ import annotations

import logging
import re
from dataclasses import FrozenInstanceError, replace
from logging.handlers import BufferingHandler

import pytest

from mailwarden.classifier import BounceClassifier, BounceReport, EnvelopeFacts, RecipientVerdict, header_value
from mailwarden.classifier.corpus import corpus_examples
from mailwarden.classifier.evaluate import predict, score

from .conftest import CORPUS

HEADER_RE = re.compile(r"^[^\s;<>]+; category=[a-z-]+; type=(hard|soft|transient|unknown|none); "
                       r"status=(\d\.\d{1,3}\.\d{1,3}|none); confidence=\d\.\d\d; model=[0-9a-f]{12}$")


def test_multi_recipient_dsn_gives_one_verdict_per_recipient_in_order(classifier):
    report = classifier.analyse((CORPUS / "eml" / "rhost-aol-03.eml").read_bytes())
    assert report.bounce and report.kind == "failure"
    assert [(v.recipient, v.status, v.category, v.type) for v in report.recipients] == [
        ("sabineko@example.jp", "5.2.2", "quota-issues", "transient"),
        ("mikeneko@example.jp", "5.1.1", "bad-mailbox", "hard"),
    ]
    assert all(v.action == "failed" and v.remote_mta == "example.mx.aol.com" for v in report.recipients)
    assert report.recipients[0].reply_code == "550"
    assert "Mailbox Full" in report.recipients[0].evidence


def test_header_value_has_the_documented_form(classifier):
    report = classifier.analyse((CORPUS / "eml" / "rhost-aol-03.eml").read_bytes())
    value = header_value(report.recipients[0], classifier.model_id)
    assert HEADER_RE.match(value), value
    assert value.startswith("sabineko@example.jp; category=quota-issues; type=transient; status=5.2.2; ")


def _kddi_notice_without_return_path() -> bytes:
    """KDDI's mailbox-full notice (From no-reply@, Subject "Mail", no delivery-status part) as a milter sees it:
    Return-Path is added at final delivery, so only the envelope can say it came from the null sender."""
    raw = (CORPUS / "eml" / "lhost-kddi-03.eml").read_bytes().replace(b"Return-Path: <>\n", b"", 1)
    assert b"Return-Path: <>" not in raw
    return raw


def test_null_envelope_sender_makes_an_ambiguous_notice_a_labelled_bounce(classifier):
    raw = _kddi_notice_without_return_path()
    assert classifier.analyse(raw).kind == "none"
    assert classifier.analyse(raw, envelope=EnvelopeFacts(sender="alice@example.org")).kind == "none"
    report = classifier.analyse(raw, envelope=EnvelopeFacts(sender="", client_ip="192.0.2.72",
                                                             client_name="nmomta.auone-net.jp", queue_id="4XyZ1"))
    assert (report.bounce, report.kind) == (True, "failure")
    assert [(v.recipient, v.category, v.type) for v in report.recipients] == [
        ("kijitora@00000000000000.dion.ne.jp", "quota-issues", "transient")]


def test_envelope_sender_overrules_a_return_path_field_written_by_the_sender(classifier):
    raw = b"Return-Path: <>\n" + _kddi_notice_without_return_path()
    assert classifier.analyse(raw).bounce  # a bare file: the field is all there is
    assert classifier.analyse(raw, envelope=EnvelopeFacts(sender="alice@example.org")).kind == "none"


def test_a_failed_analysis_is_logged_with_the_queue_id_and_client(classifier, monkeypatch):
    def crash(self: BounceClassifier, message: bytes, envelope: EnvelopeFacts | None = None) -> BounceReport:
        raise RuntimeError("parser bug")

    monkeypatch.setattr(BounceClassifier, "_analyse", crash)
    log = BufferingHandler(capacity=10)  # on the logger itself: the daemon's log setup stops propagation to root
    logging.getLogger("mailwarden.classifier").addHandler(log)
    try:
        facts = EnvelopeFacts(sender="", client_ip="192.0.2.72", client_name="mx\r\n.example.net", queue_id="4XyZ1")
        report = classifier.analyse(b"From: MAILER-DAEMON@x.example\n\nanything\n", envelope=facts)
    finally:
        logging.getLogger("mailwarden.classifier").removeHandler(log)
    assert (report.bounce, report.kind) == (False, "none")
    assert [r.getMessage() for r in log.buffer] == [
        "bounce analysis failed (RuntimeError: parser bug) for queue id 4XyZ1 from mx%0D%0A.example.net[192.0.2.72];"
        " treating the message as not a bounce"]


def _verdict(**changes) -> RecipientVerdict:
    base = RecipientVerdict(recipient="user@example.com", status=None, action="failed", diagnostic="x",
                            remote_mta=None, reply_code=None, category="other", type="unknown", confidence=0.123,
                            evidence="x")
    return replace(base, **changes)


def test_header_value_says_none_without_status_and_rounds_confidence():
    assert header_value(_verdict(), "0123456789ab") == (
        "user@example.com; category=other; type=unknown; status=none; confidence=0.12; model=0123456789ab")


def test_header_value_escapes_line_breaks_and_strips_brackets_and_separators_from_the_recipient():
    value = header_value(_verdict(recipient="<evil@example.com>\r\nX-Injected: yes; category=x"), "0123456789ab")
    assert "\r" not in value and "\n" not in value and "<" not in value
    assert value.startswith("evil@example.com%0D%0AX-Injected:yescategory=x; category=other;")
    assert HEADER_RE.match(value)


def test_reports_are_immutable(classifier):
    report = classifier.analyse((CORPUS / "eml" / "rhost-aol-03.eml").read_bytes())
    with pytest.raises(FrozenInstanceError):
        report.bounce = False  # type: ignore[misc]
    assert isinstance(report, BounceReport) and isinstance(report.recipients, tuple)


def test_success_dsn_is_not_a_bounce_and_its_recipients_are_not_a_bounce(classifier):
    report = classifier.analyse((CORPUS / "eml" / "rfc3464-28.eml").read_bytes())
    assert (report.bounce, report.kind) == (False, "success")
    assert report.recipients and {v.category for v in report.recipients} == {"not-a-bounce"}
    assert {v.type for v in report.recipients} == {"none"}


def test_feedback_and_auto_reply_have_no_recipients(classifier):
    for name, kind in (("arf-01", "feedback"), ("rfc3834-01", "auto-reply")):
        report = classifier.analyse((CORPUS / "eml" / f"{name}.eml").read_bytes())
        assert (report.bounce, report.kind, report.recipients) == (False, kind, ())


def test_dev_accuracy_does_not_regress(classifier):
    """Guard for the documented figure (docs/classifier.md); the exact value is printed by evaluate."""
    examples = list(corpus_examples(CORPUS, "dev"))
    scores = score(examples, predict(classifier, examples))
    assert scores.email_accuracy >= 0.70 and scores.recipient_accuracy >= 0.70


def test_report_wording_wrapped_across_lines_is_recognised(classifier):
    """A filter's notice from a null sender, its only bounce wording broken over two lines."""
    raw = (b"Return-Path: <>\nFrom: \"Email Gateway\" <gateway@example.com>\nTo: scanner@example.net\n"
           b"Subject: Message Stopped: \"Scan\"\nContent-Type: text/plain\n\n"
           b"The message detailed below has been stopped by the gateway and has not\nbeen delivered.\n\n"
           b"   To:        k.yilmaz@example.com\n\nReason: The MIME structure of the message is invalid.\n")
    report = classifier.analyse(raw)
    assert report.kind == "failure"
    assert [v.recipient for v in report.recipients] == ["k.yilmaz@example.com"]


def _notice(sender: str, subject: str, text: str, *, reverse_path: str, extra: str = "") -> bytes:
    """A plain-text notice as a filter, a sending service or a list manager writes it."""
    return (f"Return-Path: <{reverse_path}>\nFrom: {sender}\nTo: poster@example.org\nSubject: {subject}\n{extra}"
            f"Content-Type: text/plain; charset=utf-8\n\n{text}").encode()


def _failed(classifier: BounceClassifier, raw: bytes) -> list[str]:
    report = classifier.analyse(raw)
    assert report.kind == "failure"
    return [v.recipient for v in report.recipients]


@pytest.mark.parametrize("subject, text", [
    ("Postmark SMTP: message could not be sent (inactive recipient)",
     "A message submitted over SMTP could not be sent.\n\n  To:  jane.roe@example.net\n\n"
     "Error: You tried to send to recipient(s) that have been marked as inactive.\n"),
    ("=?utf-8?b?44CQ44Km44Kk44Or44K55qSc5Ye644CR44Oh44OD44K744O844K444Gv6YWN5L+h44GV44KM44G+44Gb44KT44Gn44GX44Gf?=",
     "以下のメッセージからウイルスが検出されたため、メッセージは受信者に配信されませんでした。\n\n"
     "  受信者:     jane.roe@example.net\n"),
])
def test_notice_of_a_sending_service_or_gateway_with_its_own_address_is_a_failure(classifier, subject, text):
    """Not from a bounce robot nor a null sender: a bounce-like subject and a report's wording decide."""
    raw = _notice("Service <notices@service.example.com>", subject, text, reverse_path="notices@service.example.com")
    assert _failed(classifier, raw) == ["jane.roe@example.net"]


@pytest.mark.parametrize("subject, text", [
    ("Mensagem não entregue - vírus detectado",
     "A mensagem enviada para <vivi@example.com.br> não foi entregue porque\no nosso antivírus detectou um vírus.\n"),
    ("Messaggio bloccato: rilevato virus",
     "il messaggio da Lei inviato non è stato consegnato perché il filtro\nha rilevato un virus.\n\n"
     "  Destinatario:  vivi@example.com.br\n"),
])
def test_a_notice_without_codes_in_portuguese_or_italian_from_a_null_sender_is_a_failure(classifier, subject, text):
    raw = _notice("Filter <no-reply@filter.example.net>", subject, text, reverse_path="")
    assert _failed(classifier, raw) == ["vivi@example.com.br"]


@pytest.mark.parametrize("sender, subject, text", [
    ("astro-club-owner@lists.example.org", "Request to mailing list Astro-club rejected",
     "You are not allowed to post to this mailing list, and your message has been automatically rejected."),
    ("astro-club-admin@lists.example.org", "You someone@example.com are not member (astro-club ML)",
     "You are not a member of this mailing list <astro-club@lists.example.org>.\n"
     "For the guide, send 'guide' to the address astro-club-ctl@lists.example.org"),  # fml's command address
    ("SYMPA <sympa@listes.example.org>", "Votre message pour la liste astro-club a été rejeté",
     "Votre message pour la liste astro-club@lists.example.org a été rejeté par le modérateur de la liste."),
])
def test_a_mailing_list_refusing_a_post_is_a_failure_for_the_list_address(classifier, sender, subject, text):
    """Sent by the list's own robot (Sympa marks it as an auto-reply); the list is what refused the post."""
    raw = _notice(sender, subject, f"{text}\nList: astro-club@lists.example.org\n",
                  reverse_path="astro-club-bounces@lists.example.org", extra="Auto-Submitted: auto-replied\n")
    assert _failed(classifier, raw) == ["astro-club@lists.example.org"]


def test_a_list_holding_a_post_of_a_non_member_for_its_moderator_reports_no_failure(classifier):
    """Mailman's hold notice names the reason ("Post by non-member to a members-only list") of a post that still
    waits for approval: nothing failed, so the list's address must not be reported."""
    raw = _notice("astro-club-owner@lists.example.org", "Your message to Astro-club awaits moderator approval",
                  "Your mail to 'Astro-club' with the subject\n\n    Meeting\n\nIs being held until the list "
                  "moderator can review it for approval.\n\nThe reason it is being held:\n\n    Post by "
                  "non-member to a members-only list\n", reverse_path="astro-club-bounces@lists.example.org")
    assert classifier.analyse(raw).kind != "failure"


def test_a_list_refusal_naming_only_an_administrative_address_is_for_the_posting_address(classifier):
    """LISTSERV names the list by its -request address (Mailman and mlmmj robots by -owner); the post was to the
    list."""
    raw = _notice("L-Soft list server <LISTSERV@LISTS.EXAMPLE.ORG>", "Message rejected",
                  "Your message to ASTRO-CLUB-request@LISTS.EXAMPLE.ORG has been rejected because the list has\n"
                  "reached its daily limit of postings. Please try again tomorrow.\n",
                  reverse_path="owner-astro-club@lists.example.org")
    assert _failed(classifier, raw) == ["astro-club@lists.example.org"]


@pytest.mark.parametrize("sender, subject, text, reverse_path", [
    # mlmmj tells a member whose address bounced.
    ("astro-club+owner@lists.example.org", "Some messages to you could not be delivered",
     "Some messages to you could not be delivered. If you're seeing this message it means things\n"
     "are back to normal, and it's merely for informational purposes.\n", "astro-club+bounces-help@lists.example.org"),
    # A filter's digest of mail held for the reader: a null sender and 'NOT delivered'.
    ("Mail Filter <quarantine@example.org>", "Quarantine summary for bob@example.org (2 new items)",
     "The following emails addressed to you were quarantined since the last summary. They have NOT\n"
     "been delivered to your mailbox.\n  offers@deals.example  You have been selected!  Bayesian\n", ""),
], ids=["mlmmj-member-notice", "quarantine-digest"])
def test_a_notice_about_mail_sent_to_the_reader_is_no_failure(classifier, sender, subject, text, reverse_path):
    """Nothing the reader sent failed: the notice is about mail addressed to the reader."""
    assert not classifier.analyse(_notice(sender, subject, text, reverse_path=reverse_path)).bounce


def test_a_list_post_that_merely_says_rejected_is_no_bounce(classifier):
    raw = _notice("Jane <jane@example.net>", "Re: telescope grant rejected",
                  "Our grant application was rejected; we try again next year.\n",
                  reverse_path="astro-club-bounces@lists.example.org")
    assert classifier.analyse(raw).kind == "none"
