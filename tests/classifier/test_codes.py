"""codes.py: the one pattern for SMTP reply codes and the one for enhanced status codes."""

from __future__ import annotations

import pytest

from mailwarden.classifier.codes import find_reply_code, find_status


@pytest.mark.parametrize(("text", "code"), [
    ("550 5.1.1 <a@example.org>: user unknown", "550"),
    ("550-5.1.1 The email account does not exist", "550"),
    ("<a@example.jp>: 550: 5.2.2 Mailbox Full", "550"),                 # Yahoo! Japan
    ("Invalid Address, ERROR_CODE :550, ERROR_CODE :5.1.1", "550"),      # Zoho
    ("ResponseCode 421, , Host not reachable", "421"),
    ("250 ok, then 452 4.2.2 over quota", "452"),                         # an error code wins over a success
    ("220 mx.example.org ESMTP", "220"),
    ("[2606:2800:220:6d:26bf:1447:1097:aa7]:25: socket error", None),   # an IPv6 group is no reply code
    ("version 550.1, id A550, 5502 bytes, 10.250.3.4", None),
])
def test_reply_code_is_a_three_digit_word(text, code):
    assert find_reply_code(text) == code


@pytest.mark.parametrize(("text", "status"), [
    ("550 5.1.1 user unknown", "5.1.1"),
    ("Status: 4.4.7 (delivery expired)", "4.4.7"),
    ("smtp; 554 5.3.0 unknown mailer error 255", "5.3.0"),
    ("client 192.5.1.1 refused; version 2.5.10.1", None),
    ("250 2.1.5 Ok, 354 go ahead, 451 4.3.0 queue file write error", "4.3.0"),  # a failure wins over a success
    ("Status: 2.0.0 (delivered)", "2.0.0"),
])
def test_status_is_a_dotted_triple_standing_alone(text, status):
    assert find_status(text) == status
