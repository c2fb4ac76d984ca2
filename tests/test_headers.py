"""Header writing: sanitising, quoting, and recognising which authserv-id an incoming A-R claims."""

from __future__ import annotations

import email
import email.policy

import authres
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwarden.checks.iprev import IprevResult
from mailwarden.checks.spf import SpfResult, received_spf
from mailwarden.headers import authentication_results, authserv_id_of
from mailwarden.sanitise import clean, token


def spf_result(sender: str, helo: str = "mail.example.net") -> SpfResult:
    domain = sender.rpartition("@")[2]
    return SpfResult("spf", "fail", f"domain of {sender} does not designate 192.0.2.1", "mailfrom", sender, domain,
                     "-all", "")  # fmt: skip


def parse_field(name: str, value: str) -> list[str]:
    """All values of `name` after a round trip through the email parser (CRLF folding as on the wire)."""
    raw = f"{name}: {value}".replace("\n", "\r\n") + "\r\nSubject: x\r\n\r\nbody\r\n"
    message = email.message_from_string(raw, policy=email.policy.compat32)
    return message.get_all(name) or []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("mail.example.net", "mail.example.net"), ("a\r\nX-Injected: 1", "a%0D%0AX-Injected: 1"),
     ("nul\x00tab\tdel\x7f", "nul%00tab%09del%7F"), ("bücher.de", "b%C3%BCcher.de"), ("x" * 400, "x" * 197 + "...")],
)  # fmt: skip
def test_clean_keeps_printable_ascii_and_escapes_the_rest(raw, expected):
    assert clean(raw) == expected


def test_token_cannot_end_a_field_value_or_add_a_key():
    assert token("<a b@x.test>;\r\n type=hard") == "ab@x.test%0D%0Atype=hard"
    assert token("x" * 400) == "x" * 317 + "..."


def test_received_spf_quotes_values_that_are_not_dot_atoms():
    value = received_spf(spf_result('"a;b=c"@evil.test'), "192.0.2.1", 'x; identity=helo "', "mx.example.org")
    assert 'envelope-from="\\"a;b=c\\"@evil.test";' in value
    assert 'helo="x; identity=helo \\"";' in value
    assert value.count("identity=") == 2  # ours, and the quoted text inside helo
    assert "\n\tidentity=mailfrom;" in value


def test_authentication_results_parse_back_with_authres():
    results = [
        IprevResult("iprev", "pass", "ok", ip="192.0.2.1", names=("host.example.net",)),
        spf_result("user@example.net"),
    ]
    value = authentication_results("mx.example.org", results)
    parsed = authres.AuthenticationResultsHeader.parse_value(value.replace("\n", " "))
    assert parsed.authserv_id == "mx.example.org"
    assert [(r.method, r.result) for r in parsed.results] == [("iprev", "pass"), ("spf", "fail")]
    assert parsed.results[1].properties[0].value == "example.net"


@given(helo=st.text(max_size=300), sender=st.text(max_size=400))
@settings(max_examples=300, deadline=None)
def test_any_smtp_values_give_single_well_formed_fields(helo, sender):
    rspf = received_spf(spf_result(sender, helo), "192.0.2.1", helo, "mx.example.org")
    ar = authentication_results("mx.example.org", [spf_result(sender, helo)])
    for name, value in (("Received-SPF", rspf), ("Authentication-Results", ar)):
        assert all(0x20 <= ord(c) < 0x7F or c in "\n\t" for c in value)
        assert "\n" not in value.replace("\n\t", "")
        assert len(parse_field(name, value)) == 1
        assert all(len(line) < 998 for line in value.split("\n"))
    assert authserv_id_of(ar) == "mx.example.org"


@pytest.mark.parametrize(
    ("value", "claimed"),
    [
        ("mx.example.org; spf=pass smtp.mailfrom=example.net", "mx.example.org"),
        ("MX.Example.ORG; spf=pass", "mx.example.org"),
        ("  mx.example.org  ;  spf=pass", "mx.example.org"),
        ("mx.example.org 1; spf=pass", "mx.example.org"),
        ("(forged) (really) mx.example.org; spf=pass", "mx.example.org"),
        ("(nested (comment)) mx.example.org;", "mx.example.org"),
        ("mx.example.org;\r\n\tspf=pass smtp.mailfrom=example.net", "mx.example.org"),
        ("mx.example.org(comment);;; not parseable ===", "mx.example.org"),
        ("(a \\) b) mx.example.org;;; unparseable (", "mx.example.org"),
        ('"mx.example.org"; spf=pass', "mx.example.org"),
        ('"mx.example.org; spf=pass', "mx.example.org"),
        ("mx.example.org.; spf=pass", "mx.example.org"),
        ("other.example.org; spf=pass", "other.example.org"),
        ('other.example.org; spf=pass reason="mx.example.org"', "other.example.org"),
        ("mx.example.org.evil; spf=pass", "mx.example.org.evil"),
    ],
)
def test_authserv_id_claimed_by_incoming_headers(value, claimed):
    assert authserv_id_of(value) == claimed
