"""addresses.py: the one place that finds addresses and names the mailboxes that send bounces."""

from __future__ import annotations

import time

import pytest

from mailwarden.classifier.addresses import (
    bare_address,
    canonical,
    find_addresses,
    is_bounce_sender,
    is_robot,
    list_address,
    local_part,
    redact,
)


@pytest.mark.parametrize(("value", "bare"), [
    ("<user@example.org>", "user@example.org"),
    ("  user@example.org ", "user@example.org"),
    ("Mail Delivery System <MAILER-DAEMON@mx.example.net>", "MAILER-DAEMON@mx.example.net"),
    ("<>", ""),
    ("", ""),
])
def test_bare_address_drops_brackets_and_display_name(value, bare):
    assert bare_address(value) == bare


@pytest.mark.parametrize("sender", [
    "MAILER-DAEMON@mx.example.net",
    "<postmaster@example.org>",
    "Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
    "MAILER-DAEMON",                                # Postfix's local bounces name no domain
    "MAILER-DAEMON (Mail Delivery Subsystem)",
    '"Postmaster"@example.org',
    "postmaster@localhost",                          # no dot in the domain: not matched by ADDRESS_RE
    "Mail Delivery System <mail-daemon@mx.example.net>",
    "MDaemon@mail.example.com",                      # MDaemon's reports
    "post_master@vtext.example.com",                 # Verizon's (Apache James) reports
])
def test_bounce_senders_are_named(sender):
    assert is_bounce_sender(sender)


@pytest.mark.parametrize("sender", ["", "<>", "alice@example.org", "postmaster-team@example.org",
                                    "Postmaster Bob <bob@example.org>", "noreply@example.org"])
def test_ordinary_and_null_senders_are_not_bounce_senders(sender):
    assert not is_bounce_sender(sender)


def test_robots_include_no_reply_senders_and_their_tagged_forms():
    assert [is_robot(a) for a in ("noreply+bounce@x.example", "MAILER-DAEMON@x.example", "user@x.example")] == [
        True, True, False]
    assert local_part("User@Example.org") == "user"


def test_address_in_single_quotes_is_found_and_an_apostrophe_in_a_local_part_kept():
    assert find_addresses("addressed to 'rcpt@example.uk', and o'brien@example.ie") == [
        "rcpt@example.uk", "o'brien@example.ie"]


def test_addresses_are_found_in_order_without_brackets_or_trailing_dots():
    text = "<a.b+tag@example.org>: 550 unknown; also c=d@mail.example.co.jp. and not user@localhost"
    assert find_addresses(text) == ["a.b+tag@example.org", "c=d@mail.example.co.jp"]


def test_long_runs_of_address_characters_are_scanned_in_linear_time():
    """A bounce body is attacker-controlled: 200 KB of local-part characters must not make the scan quadratic."""
    started = time.perf_counter()
    assert find_addresses("a" * 200_000 + "@" + "b." * 50_000) == []
    assert time.perf_counter() - started < 1.0



@pytest.mark.parametrize(("text", "redacted"), [
    ("<bob.smith+x@mail.example.org>: 550 unknown user",
     "<address@redacted.invalid>: 550 unknown user"),
    ("mailbox of bob@localhost and u@[192.0.2.1] (\"j.doe\"@example.org) is closed",
     "mailbox of address@redacted.invalid and address@redacted.invalid (address@redacted.invalid) is closed"),
    ("no address here, 5.1.1 at 192.0.2.1", "no address here, 5.1.1 at 192.0.2.1"),
])
def test_redact_replaces_every_address_and_keeps_the_rest(text, redacted):
    assert redact(text) == redacted


def test_redacted_text_reads_to_the_model_as_the_original_does():
    from mailwarden.classifier.features import normalise

    text = "550 5.1.1 <carol@far.example>: mailbox for carol@far.example is hibernating"
    assert "carol" not in redact(text)
    assert normalise(redact(text)) == normalise(text)


def test_redact_scans_long_hostile_runs_in_linear_time():
    started = time.perf_counter()
    assert redact("a" * 200_000 + "@" + "b" * 200_000).count("@") == 1
    assert time.perf_counter() - started < 1.0


def test_canonical_form_makes_one_mailbox_compare_equal():
    assert canonical('"Neko....Nyaan...."@Example.org') == canonical("neko....nyaan....@example.org")
    assert canonical("a@example.org") != canonical("b@example.org")


@pytest.mark.parametrize(("address", "posting"), [
    ("announce-bounces@lists.example.org", "announce@lists.example.org"),
    ("announce-bounces+member=example.com@lists.example.org", "announce@lists.example.org"),
    ("Mailman-Users-Admin@python.org", "mailman-users@python.org"),
    ("owner-neko@example.co.jp", "neko@example.co.jp"),
    ("neko-nyaan-ctl@example.org", "neko-nyaan@example.org"),  # fml's command address
    ("woodworking+owner@lists.example.com", "woodworking@lists.example.com"),
    ("woodworking+bounces-help@lists.example.com", "woodworking@lists.example.com"),
    ("jane+newsletter@example.org", None),
    ("jane-doe@example.org", None),
    ("bounces@example.org", None),
])
def test_list_address_is_named_from_its_administrative_addresses(address, posting):
    assert list_address(address) == posting
