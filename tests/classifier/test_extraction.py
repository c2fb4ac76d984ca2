"""extract.py: which address, codes and text each failed recipient gets, one bounce format at a time.

The messages are written for these tests (general formats, not copies of corpus messages).
"""

from __future__ import annotations

import pytest

from mailwarden.classifier.extract import Finding
from mailwarden.classifier.report import reported_findings

HEAD = ("Return-Path: <>\nFrom: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>\n"
        "To: sender@example.org\nSubject: Returned mail: see transcript for details\nMIME-Version: 1.0\n")


def _report(text: str, *groups: str, attached: str = "To: someone@example.com\nSubject: hi\n\nhello\n") -> str:
    """A multipart/report: the human-readable text, a delivery-status part of the given field groups, and the
    returned message."""
    status = "\n".join(["Reporting-MTA: dns; mx.example.net\n", *groups])
    return (HEAD + 'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\n\n'
            f"--r\nContent-Type: text/plain\n\n{text}\n--r\nContent-Type: message/delivery-status\n\n{status}\n"
            f"--r\nContent-Type: message/rfc822\n\n{attached}\n--r--\n")


def _findings(raw: str | bytes):
    kind, findings = reported_findings(raw.encode() if isinstance(raw, str) else raw)
    return kind, [(f.recipient, f.status, f.reply_code) for f in findings]


def test_forwarded_bounce_is_read_from_its_attached_report_not_from_the_attachments_to():
    """A gateway wraps the real bounce as an attachment: the recipient is in the inner delivery-status part,
    and the inner bounce's To is the original sender, who must never be reported as failed."""
    inner = _report("The following addresses had permanent fatal errors\n",
                    "Final-Recipient: rfc822; rcpt@example.com\nAction: failed\nStatus: 5.1.1\n"
                    "Diagnostic-Code: smtp; 550 5.1.1 User unknown\n").replace("To: sender@example.org",
                                                                                "To: original-sender@example.org")
    raw = (HEAD + 'Content-Type: multipart/mixed; boundary="outer"\n\n--outer\nContent-Type: text/plain\n\n'
           "The following addresses had permanent delivery errors\n\n"
           f"--outer\nContent-Type: message/rfc822\n\n{inner}\n--outer--\n")
    assert _findings(raw) == ("failure", [("rcpt@example.com", "5.1.1", "550")])


def test_attached_bounce_without_report_part_never_makes_its_to_the_recipient(make_bounce):
    attached = ("From: MAILER-DAEMON@relay.example.net\nTo: original-sender@example.org\n"
                "Subject: Undeliverable\n\nDelivery failed.\n")
    raw = make_bounce("--- Original message follows ---\n", content_type='multipart/mixed; boundary="m"')
    raw = raw.replace(b"--- Original message follows ---\n", (
        "--m\nContent-Type: text/plain\n\nYour message could not be delivered: 550 5.1.1 user unknown\n"
        f"--m\nContent-Type: message/rfc822\n\n{attached}--m--\n").encode())
    _, findings = _findings(raw)
    assert "original-sender@example.org" not in [address for address, _, _ in findings]


def test_exit_status_diagnostic_is_read_from_the_text_about_the_recipient():
    """'X-Unix; 255' is a local program's exit status and states no reason: the model reads the body's text
    about the recipient (the transcript), and the codes come from it."""
    raw = _report("   ----- The following addresses had permanent fatal errors -----\n\"|/usr/bin/filter\"\n"
                  "    (reason: 255)\n    (expanded from: <rcpt@example.com>)\n\n"
                  "   ----- Transcript of session follows -----\n554 5.3.0 unknown mailer error 255\n",
                  "Final-Recipient: RFC822; rcpt@example.com\nAction: failed\nStatus: 5.0.0\n"
                  "Diagnostic-Code: X-Unix; 255\n")
    kind, findings = reported_findings(raw.encode())
    assert [(f.status, f.reply_code) for f in findings] == [("5.3.0", "554")]
    assert findings[0].diagnostic.endswith("Transcript of session follows ----- 554 5.3.0 unknown mailer error 255")


def test_generic_code_in_the_text_does_not_replace_a_specific_status_field():
    raw = _report("<rcpt@example.com>\n    (reason: Insufficient permission)\n\n"
                  "550 5.0.0 <rcpt@example.com>... Insufficient permission\n",
                  "Final-Recipient: RFC822; rcpt@example.com\nAction: failed\nStatus: 5.3.0\n"
                  "Diagnostic-Code: X-Unix; 77\n")
    assert _findings(raw)[1] == [("rcpt@example.com", "5.3.0", "550")]


def test_mail_from_argument_in_a_transcript_is_the_sender_not_a_recipient(make_bounce):
    raw = make_bounce("Transcript of session follows.\n\n Out: 220 mx.example.com ESMTP\n In:  MAIL\n"
                      "     FROM:<list-bounces+x=example.org@lists.example.net> SIZE=2000\n Out: 250 2.1.0 Ok\n"
                      " In:  RCPT TO:<rcpt@example.com>\n Out: 250 2.1.5 Ok\n In:  DATA\n"
                      " Out: 354 End data with <CR><LF>.<CR><LF>\n Out: 451 4.3.0 Error: queue file write error\n")
    assert _findings(raw)[1] == [("rcpt@example.com", "4.3.0", "451")]


def test_quoted_original_headers_below_the_announcement_name_the_recipient(make_bounce):
    raw = make_bounce("   ----- Transcript of session follows -----\n"
                      "421 example.com (smtp)... Deferred: Connection timed out during user open\n\n"
                      "   ----- Unsent message follows -----\nReceived: by mx.example.net; id 1;\n"
                      "    Thu, 29 Apr 1995 23:34:45 +0900\nFrom: sender@example.org\nTo: rcpt@example.com\n"
                      "Subject: hi\n\nhello\n")
    assert _findings(raw)[1] == [("rcpt@example.com", None, "421")]


def test_alias_is_reported_by_the_address_the_sender_wrote():
    raw = _report("<mbox@host.example.net> (expanded from <alias@example.com>): user unknown\n",
                  "Final-Recipient: rfc822; mbox@host.example.net\nOriginal-Recipient: rfc822;alias@example.com\n"
                  "Action: failed\nStatus: 5.1.1\nDiagnostic-Code: x-unix; user unknown\n")
    assert _findings(raw)[1] == [("alias@example.com", "5.1.1", None)]


def test_alias_noted_in_the_text_is_reported_by_the_address_the_sender_wrote(make_bounce):
    """Sendmail's "(expanded from: <alias>)" under the failed address, as Original-Recipient in a DSN."""
    raw = make_bounce("   ----- The following addresses had permanent fatal errors -----\nmbox@host.example.net\n"
                      "    (reason: 553 Sender Policy Framework (SPF) fail)\n"
                      "    (expanded from: <Alias@example.com>)\n")
    assert [address for address, _, _ in _findings(raw)[1]] == ["Alias@example.com"]


def test_list_expanded_to_several_members_is_reported_by_member_never_by_list():
    member = ("Final-Recipient: rfc822; {0}@example.net\nOriginal-Recipient: rfc822;list@example.com\n"
              "Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 {0}: user unknown\n")
    raw = _report("Delivery to the following recipients failed.\n", member.format("ann"), member.format("bob"))
    assert [address for address, _, _ in _findings(raw)[1]] == ["ann@example.net", "bob@example.net"]
    text = "<ann@example.net> (expanded from <list@example.com>): user unknown\n" \
           "<bob@example.net> (expanded from <list@example.com>): user unknown\n"
    assert [address for address, _, _ in _findings(HEAD + "Content-Type: text/plain\n\n" + text)[1]] == [
        "ann@example.net", "bob@example.net"]


def test_recipient_field_is_taken_as_written():
    """A delivery-status field holds one address: a one-letter top-level domain, a quoted local part and an
    encoded word (which RFC 2047 does not allow in an address, so it is part of it) stay as they are."""
    group = "Final-Recipient: rfc822; {}\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 unknown\n"
    written = ["a@b.c", '"dots..here"@example.org', "=?utf-8?B?8J+QiA==?=@example.org"]
    raw = _report("Delivery failed.\n", *(group.format(address) for address in written))
    assert [address for address, _, _ in _findings(raw)[1]] == written


def test_recipient_field_without_an_address_takes_the_one_the_text_names():
    raw = _report("   ----- The following addresses had permanent fatal errors -----\n<rcpt@example.org>\n"
                  "    (reason: 550 Host unknown)\n",
                  "Final-Recipient: RFC822; @mx.example.org\nAction: failed\nStatus: 5.1.2\n")
    assert _findings(raw)[1] == [("rcpt@example.org", "5.1.2", "550")]


def test_addresses_in_the_returned_headers_after_the_announcement_are_not_recipients(make_bounce):
    raw = make_bounce("The following address(es) failed:\n\nrcpt@example.com:\n"
                      "SMTP error from remote server for TEXT command: 550 5.2.0 Mail rejected.\n\n"
                      "--- The header of the original message is following. ---\n\n"
                      "From: <sender@example.org>\nTo: rcpt@example.com\nReply-To: <other@example.net>\n")
    assert [address for address, _, _ in _findings(raw)[1]] == ["rcpt@example.com"]


def test_undisclosed_address_is_reported_by_the_alias_it_was_generated_from(make_bounce):
    raw = make_bounce("A message that you sent could not be delivered to one or more of its\nrecipients. This is a "
                      "permanent error. The following address(es) failed:\n\n  an undisclosed address\n"
                      "    (generated from rcpt@example.com)\n")
    assert [address for address, _, _ in _findings(raw)[1]] == ["rcpt@example.com"]


def test_recipients_listed_after_did_not_receive_a_copy_are_read(make_bounce):
    raw = make_bounce("YOUR MESSAGE WAS NOT DELIVERED!\n\nThe following addresses did NOT receive a copy of your "
                      "message:\n\n> rcpt@example.com\n\n--- Session Transcript ---\n RCPT To:<rcpt@example.com>\n"
                      " 552 Message for <rcpt@example.com> would exceed mailbox quota\n")
    assert _findings(raw)[1] == [("rcpt@example.com", None, "552")]


def test_list_post_returned_to_the_list_bounce_address_never_reports_the_list(make_bounce):
    """A member's server bounces a list post to the list's bounce address: the list's own address (To of the
    post, and quoted in the report) is not the failed recipient; neither are lists the post was copied to."""
    raw = make_bounce("Your message\n\n  To:      announce@lists.example.org\n  Cc:      other-list@lists.example.org\n"
                      "  Subject: [Announce] release\n\ndid not reach the following recipient(s):\n\n"
                      "member@example.com on Thu, 11 Jul 2002 16:54:54 -0300\n"
                      "    The recipient name is not recognized\n")
    raw = raw.replace(b"To: sender@example.org", b"To: announce-bounces@lists.example.org")
    assert [address for address, _, _ in _findings(raw)[1]] == ["member@example.com"]
    unnamed = raw.replace(b"member@example.com on", b"a member on")
    assert "announce@lists.example.org" not in [address for address, _, _ in _findings(unnamed)[1]]


@pytest.mark.parametrize(("diagnostic", "recipient", "reason"), [
    ("550 5.1.1 <rcpt@example.com>: Recipient address rejected: User unknown in local recipient table "
     "(in reply to RCPT TO command)", "rcpt@example.com",
     "Recipient address rejected: User unknown in local recipient table"),
    ("550-5.1.1 The email account that you tried to reach does not exist. Please try 550-5.1.1 "
     "double-checking the recipient's email address for typos", "rcpt@example.com",
     "The email account that you tried to reach does not exist."),
    ("<rcpt@example.jp>: 550: 5.2.2 <rcpt@example.jp>... Mailbox Full", "rcpt@example.jp", "Mailbox Full"),
    ("552-5.2.2 The email account that you tried to reach is over quota 552 5.2.2 and inactive.",
     "rcpt@example.com", "The email account that you tried to reach is over quota and inactive."),
    ("Hi. This is the qmail-send program at mx.example.net. <rcpt@example.org>: Sorry, I couldn't find any "
     "host named example.org. (#5.1.2) Below this line is a copy", "rcpt@example.org",
     "Sorry, I couldn't find any host named example.org. (#5.1.2)"),
    ("<rcpt@example.com> (reason: 550 Host unknown) ----- Transcript of session follows -----",
     "rcpt@example.com", "Host unknown"),
    ("255", "rcpt@example.com", "255"),  # states no reason: the diagnostic as it is
])
def test_reason_is_the_sentence_after_the_reply_code_without_address_or_boilerplate(diagnostic, recipient, reason):
    assert Finding(recipient=recipient, diagnostic=diagnostic).reason == reason


def test_recipients_named_by_display_name_each_get_their_own_reason():
    """Exchange lists failed recipients by display name in its text and gives the address in the
    delivery-status part with X-Display-Name: each recipient reads its own paragraph, not a neighbour's."""
    raw = _report("The following recipient(s) could not be reached:\n\n"
                  "      Sandra Lutz on 1/11/2021 2:02 PM\n"
                  "            The recipient's mailbox is full and can't accept messages now.\n"
                  "            <MAIL01.example.org #5.2.2>\n\n"
                  "      All Managers on 1/11/2021 2:02 PM\n"
                  "            You do not have permission to send to this recipient.\n"
                  "            <MAIL01.example.org #5.7.1>\n",
                  "Final-Recipient: rfc822;slutz@example.org\nAction: failed\nStatus: 5.2.2\n"
                  "X-Display-Name: Sandra Lutz\n",
                  "Final-Recipient: rfc822;allmanagers@example.org\nAction: failed\nStatus: 5.7.1\n"
                  "X-Display-Name: All Managers\n")
    _, findings = reported_findings(raw.encode())
    assert [f.recipient for f in findings] == ["slutz@example.org", "allmanagers@example.org"]
    assert "mailbox is full" in findings[0].diagnostic and "permission" not in findings[0].diagnostic
    assert "permission" in findings[1].diagnostic and "mailbox is full" not in findings[1].diagnostic


def test_recipient_text_of_a_report_ends_where_the_next_recipient_is_named():
    raw = _report("An error has occurred while attempting to deliver a message for\n"
                  "the following list of recipients:\n\n"
                  "sales@shop.example: No MX found for domain\n\n"
                  "t.nguyen@example.net: 553 5.1.8 <noreply@example.org>: Sender address rejected: Domain not found\n",
                  "Final-Recipient: rfc822; sales@shop.example\nAction: failed\nStatus: 5.1.2\n",
                  "Final-Recipient: rfc822; t.nguyen@example.net\nAction: failed\nStatus: 5.1.8\n")
    _, findings = reported_findings(raw.encode())
    assert findings[0].diagnostic == "sales@shop.example: No MX found for domain"
    assert "Sender address rejected" in findings[1].diagnostic


def test_bare_address_list_under_one_stated_reason_gives_every_address_that_reason(make_bounce):
    raw = make_bounce("Your message:\n   Subject: Project kickoff\n\nCould not be delivered because of\n\n"
                      "550 5.2.1 Mailbox disabled, not accepting messages\n\n"
                      "The following recipients were affected:\n    p.chen@example.net\n    r.ahmed@example.net\n\n"
                      "Additional Information\n======================\nReporting-MTA:      <mailgw.example.com>\n")
    _, findings = reported_findings(raw)
    assert [f.recipient for f in findings] == ["p.chen@example.net", "r.ahmed@example.net"]
    for finding in findings:
        assert finding.diagnostic.startswith(finding.recipient)
        assert "Mailbox disabled" in finding.diagnostic and "Additional Information" not in finding.diagnostic


def test_session_transcript_is_read_from_the_remote_error_reply_near_its_end(make_bounce):
    """A transcript names the recipient at its top and the remote's reply at its end, past what the model
    reads of a diagnostic: the diagnostic starts at the reply's line."""
    lines = [f" Mon 2020-11-30 09:02:44.{n:03}: <-- 250-EXTENSION{n}" for n in range(20)]
    raw = make_bounce("The attached message had PERMANENT fatal delivery errors!\n\n--- Session Transcript ---\n"
                      " Mon 2020-11-30 09:02:44.139: *  To: ap@client.example.org\n" + "\n".join(lines) +
                      "\n Mon 2020-11-30 09:02:46.458: <-- 554 5.7.1 Message rejected: virus found in attachment\n"
                      " Mon 2020-11-30 09:02:46.465: --> QUIT\n--- End Transcript ---\n")
    _, findings = reported_findings(raw)
    assert [(f.recipient, f.status, f.reply_code) for f in findings] == [("ap@client.example.org", "5.7.1", "554")]
    assert findings[0].diagnostic.startswith("Mon 2020-11-30 09:02:46.458: <-- 554 5.7.1 Message rejected: virus")


def test_quoted_sender_rejection_never_makes_the_original_sender_a_recipient(make_bounce):
    """qmail quotes the remote's '553 <sender>: Sender address rejected'; the sender (the returned original's
    Return-Path, a VERP address the bounce's To does not show) did not fail."""
    raw = make_bounce("I'm afraid I wasn't able to deliver your message to the following addresses.\n\n"
                      "<hr@example.in>:\nConnected to 203.0.113.150 but sender was rejected.\nRemote host said: "
                      "553 5.1.8 <bounce-14221@mx.example.net>: Sender address rejected: Domain not found\n\n"
                      "--- Below this line is a copy of the message.\n\n"
                      "Return-Path: <bounce-14221@mx.example.net>\nFrom: Rahul <rahul@example.net>\n"
                      "To: hr@example.in\nSubject: Application\n\nDear Sir,\n")
    assert _findings(raw)[1] == [("hr@example.in", "5.1.8", "553")]


def test_a_message_to_oneself_still_reports_its_recipient(make_bounce):
    raw = make_bounce("I'm afraid I wasn't able to deliver your message to the following addresses.\n\n"
                      "<me@example.in>:\nRemote host said: 550 5.1.1 <me@example.in>: User unknown\n\n"
                      "--- Below this line is a copy of the message.\n\n"
                      "Return-Path: <me@example.in>\nFrom: Me <me@example.in>\nTo: me@example.in\n\nnote\n")
    assert _findings(raw)[1] == [("me@example.in", "5.1.1", "550")]


def test_a_contact_address_in_a_german_notice_is_no_recipient(make_bounce):
    raw = make_bounce("Your message to <m.fischer@example.de> was automatically rejected:\n"
                      "Dieses Postfach wurde deaktiviert und wird nicht mehr gelesen.\n"
                      "Bitte wenden Sie sich kuenftig an info@example.de.\n")
    assert [address for address, _, _ in _findings(raw)[1]] == ["m.fischer@example.de"]


def test_an_address_the_error_reply_mentions_is_no_recipient_and_leaves_the_reason_whole(make_bounce):
    raw = make_bounce("Delivery to the following recipient failed permanently:\n\n     info@example.lv\n\n"
                      "Technical details of permanent failure:\nPERM_FAILURE: SMTP Error (state 9): 550 5.7.1 Your "
                      "message was blocked by our DNSBL. If you are not a spammer, send an e-mail message from "
                      "another address to dz@example.lv with the blocked sender e-mail name.\n")
    _, findings = reported_findings(raw)
    assert [f.recipient for f in findings] == ["info@example.lv"]
    assert "blocked by our DNSBL" in findings[0].diagnostic


def test_reason_above_the_address_is_read_when_below_it_stands_only_a_contact_hint(make_bounce):
    raw = make_bounce("This Message was undeliverable due to the following reason:\n\n"
                      "The user(s) account is temporarily over quota.\n\n<grandad@isp.example.net>\n\n"
                      "Please reply to Postmaster@isp.example.net\nif you feel this message to be in error.\n")
    _, findings = reported_findings(raw)
    assert [f.recipient for f in findings] == ["grandad@isp.example.net"]
    assert "temporarily over quota" in findings[0].diagnostic


def test_reason_stated_below_a_list_of_bare_addresses_is_every_address_reason(make_bounce):
    raw = make_bounce("Dear customer,\n\nYour message \"Fair\" was not sent to the following recipients:\n\n"
                      "  choir@example.org.uk\n  j.owen@example.org.uk\n\n"
                      "Reason: your account has sent more messages than allowed in a short period.\n\n"
                      "  Remote error: 550 5.7.1 Outbound rate limit exceeded, slow down\n")
    _, findings = reported_findings(raw)
    assert [f.recipient for f in findings] == ["choir@example.org.uk", "j.owen@example.org.uk"]
    for finding in findings:
        assert "rate limit exceeded" in finding.diagnostic and finding.status == "5.7.1"


def test_an_id_field_shaped_like_an_address_is_no_recipient(make_bounce):
    raw = make_bounce("[<00>] XMail bounce: Rcpt=[n.petrova@example.net];Error=[550 5.1.1 No such user here]\n\n"
                      "[<01>] Error sending message [S4A2B01] from [xmail.example.org].\n\n"
                      "ID:        <S4A2B01@xmail.example.org>\nRcpt To:   <n.petrova@example.net>\n")
    assert [address for address, _, _ in _findings(raw)[1]] == ["n.petrova@example.net"]


def test_a_failed_recipient_with_a_temporary_status_is_read_with_the_text_that_says_the_mta_gave_up():
    """Exim's Diagnostic-Code quotes only the last temporary reply; "retry timeout exceeded" is in its text."""
    raw = _report("A message that you sent could not be delivered to one or more of its recipients.\n\n"
                  "  r.moreau@example.fr\n    host mx.example.fr [198.51.100.61]\n"
                  "    SMTP error from remote mail server after RCPT TO:<r.moreau@example.fr>:\n"
                  "    451 4.7.1 Greylisting in action, please come back later\n    retry timeout exceeded\n",
                  "Final-Recipient: rfc822;r.moreau@example.fr\nAction: failed\nStatus: 4.7.1\n"
                  "Diagnostic-Code: smtp; 451 4.7.1 Greylisting in action, please come back later\n")
    _, findings = reported_findings(raw.encode())
    assert [(f.recipient, f.status, f.reply_code) for f in findings] == [("r.moreau@example.fr", "4.7.1", "451")]
    assert findings[0].diagnostic.startswith("451 4.7.1 Greylisting in action")
    assert "retry timeout exceeded" in findings[0].diagnostic


def test_a_permanent_failure_is_read_from_its_diagnostic_code_alone():
    raw = _report("A message that you sent could not be delivered.\n\n  jo@example.fr\n    a note the text adds\n",
                  "Final-Recipient: rfc822;jo@example.fr\nAction: failed\nStatus: 5.1.1\n"
                  "Diagnostic-Code: smtp; 550 5.1.1 user unknown\n")
    _, findings = reported_findings(raw.encode())
    assert findings[0].diagnostic == "550 5.1.1 user unknown"


@pytest.mark.parametrize("recipients", [["j.doe@example.edu"], ["j.doe@example.edu", "m.roe@example.net"]])
def test_sendmail_transcript_lines_above_a_recipient_error_give_its_reply_and_stage(make_bounce, recipients):
    """Old Sendmail reports (no delivery-status part) write ">>> command / <<< remote reply" above each
    recipient's own summary line ("554 <addr>... Remote protocol error"); when the command names the sender,
    not the recipient, the recipient is first named on that summary line. The remote's reply is the reason and
    the command the stage, for one recipient as for several."""
    sections = "".join(f"While talking to mx{n}.example.edu:\n>>> MAIL From:<a@example.org>\n"
                       "<<< 553 Client host rejected: listed at bl.example.net\n"
                       f"554 <{address}>... Remote protocol error\n" for n, address in enumerate(recipients))
    raw = make_bounce("   ----- Transcript of session follows -----\n" + sections +
                      "\n   ----- Unsent message follows -----\nFrom: a@example.org\nTo: x@example.edu\n\nhi\n",
                      subject="Returned mail: Remote protocol error")
    _, findings = reported_findings(raw)
    assert [(f.recipient, f.reply_code, f.stage) for f in findings] == [(a, "553", "mail") for a in recipients]
    assert all("listed at bl.example.net" in f.diagnostic for f in findings)


def test_transcript_lines_of_the_recipient_above_are_not_taken_for_the_next_one(make_bounce):
    """Reports that write each address on its own line with its session below it (no blank line between
    recipients) keep each recipient's reply: only Sendmail's "<addr>... reason" summary line reads the
    transcript above it."""
    raw = make_bounce("<a@example.com>:\n>>> RCPT TO:<a@example.com>\n<<< 550 5.1.1 <a@example.com>: user unknown\n"
                      "<b@example.com>:\n>>> DATA\n<<< 552 5.2.2 mailbox full\n"
                      "<c@example.com>:\n>>> DATA\n<<< 554 5.7.1 message refused\n")
    _, findings = reported_findings(raw)
    assert [(f.recipient, f.reply_code, f.status, f.stage) for f in findings] == [
        ("a@example.com", "550", "5.1.1", "rcpt"), ("b@example.com", "552", "5.2.2", "data"),
        ("c@example.com", "554", "5.7.1", "data")]


def test_a_sendmail_line_about_a_host_below_the_recipient_is_not_its_reason(make_bounce):
    """Sendmail V5 ends a transcript with its line about the session's host ("421 example.org (smtp)...
    Deferred: Connection timed out"): the recipient's "User unknown" above it is the reason, not a time-out."""
    raw = make_bounce("   ----- Transcript of session follows -----\nWhile talking to smtp.example.org:\n"
                      ">>> RCPT To:<kijitora@example.org>\n<<< 550 <kijitora@example.org>, User Unknown\n"
                      "550 <kijitora@example.org>... User unknown\n"
                      "421 example.org (smtp)... Deferred: Connection timed out during user open with example.org\n"
                      "\n   ----- Unsent message follows -----\nFrom: a@example.com\nTo: x@example.org\n\nhi\n",
                      subject="Returned mail: Deferred: Connection timed out during user open with example.org")
    _, findings = reported_findings(raw)
    assert [(f.recipient, f.stage) for f in findings] == [("kijitora@example.org", "rcpt")]
    assert findings[0].diagnostic.endswith("550 <kijitora@example.org>... User unknown")
    assert "timed out" not in findings[0].diagnostic


def test_a_line_announcing_the_next_recipient_is_not_the_reason_of_the_one_above(make_bounce):
    """Netscape Messaging Server states the reason once and then repeats "The following recipients did not
    receive your message:" above each address: that line is not the first address's reason."""
    raw = make_bounce("This Message was undeliverable due to the following reason:\n\n"
                      "Your message was not delivered within 2 days.\nHost example.com is not responding.\n\n"
                      "The following recipients did not receive your message:\n\n     <aaaaa@example.com>\n"
                      "The following recipients did not receive your message:\n\n     <bbbbb@example.com>\n\n"
                      "Please reply to Postmaster@mail.example.com\nif you feel this message to be in error.\n",
                      subject="Mail System Error - Returned Mail")
    _, findings = reported_findings(raw)
    assert [f.recipient for f in findings] == ["aaaaa@example.com", "bbbbb@example.com"]
    assert all("not delivered within 2 days" in f.diagnostic for f in findings)


def test_a_sentence_naming_a_recipient_in_wrapped_prose_is_read_past_the_end_of_its_line(make_bounce):
    """A one-line block ("554 <addr>... reason") is Sendmail's summary style, where the address starts the line;
    an address in the middle of hard-wrapped prose is part of a sentence that runs on below it, and the words
    that decide ("did not match any mailbox here") are on the next line."""
    raw = make_bounce("Your message could not be delivered. The address to which it was sent,\n"
                      "first.last@example.org, is not a valid address: it did not match any\n"
                      "mailbox here. Nearby names in the directory:\n\n  F. Last  flast@example.org  room 12\n",
                      subject="Returned mail: no such user")
    _, findings = reported_findings(raw)
    assert [f.recipient for f in findings][:1] == ["first.last@example.org"]
    assert "any mailbox here" in " ".join(findings[0].diagnostic.split())


def test_a_recipient_named_in_prose_does_not_take_the_next_recipients_line(make_bounce):
    """The sentence naming one recipient runs on, but the line naming the next one (in another case) is that
    recipient's: "mailbox is full" is not a reason of the first address."""
    raw = make_bounce("Your message was not delivered. It was sent to the address\n"
                      "first.last@example.org, which does not exist here, and to\n"
                      "SECOND@Example.org, whose mailbox is full and accepts nothing more.\n",
                      subject="Returned mail: see below")
    _, findings = reported_findings(raw)
    assert [f.recipient.lower() for f in findings][:2] == ["first.last@example.org", "second@example.org"]
    assert "does not exist" in findings[0].diagnostic
    assert "mailbox is full" not in findings[0].diagnostic


def test_a_sendmail_summary_line_ends_before_the_next_recipients_transcript(make_bounce):
    """Sendmail's summary line ("554 <addr>... 550 Host unknown") ends without punctuation; the unindented line
    below it ("While talking to ...") opens the next recipient's transcript and is not part of its reason."""
    raw = make_bounce("   ----- Transcript of session follows -----\n"
                      "554 <kijitora@example.org>... 550 Host unknown\n"
                      "While talking to smtp.example.edu:\n>>> RCPT To:<mikeneko@example.edu>\n"
                      "<<< 550 <mikeneko@example.edu>... User unknown\n550 <mikeneko@example.edu>... User unknown\n"
                      "\n   ----- Unsent message follows -----\nFrom: a@example.com\nTo: x@example.org\n\nhi\n",
                      subject="Returned mail: Host unknown")
    _, findings = reported_findings(raw)
    assert [f.recipient for f in findings] == ["kijitora@example.org", "mikeneko@example.edu"]
    assert "Host unknown" in findings[0].diagnostic
    assert "While talking" not in findings[0].diagnostic
