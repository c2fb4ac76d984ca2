"""DMARC cases written from RFC 7489's text, through `mailwarden check --message`'s code path against a DNS
server on loopback: the author domain (§6.6.1), the organizational domain through the Public Suffix List
(§3.2), relaxed and strict alignment of SPF and DKIM (§3.1, Appendix C), policy discovery with p, sp and pct
(§6.3, §6.6.3, §6.6.4), and DNS errors (temperror)."""

from __future__ import annotations

import random

import pytest

from mailwarden.checks.dmarc import organizational_domain
from mailwarden.cli import check_report
from mailwarden.config import parse
from mailwarden.engine import Engine

from .conftest import GOOD_IP, ZONE, message_check_config
from .dnsserver import TestDNSServer, merge
from .results import entries
from .signing import dmarc_zone, key_zone, message, sign

SPF_OK = [("TXT", f"v=spf1 ip4:{GOOD_IP} -all")]
ZONE_DMARC = merge(
    ZONE,
    {"bounces.relaxed.test": SPF_OK, "bounces.strict.test": SPF_OK, "relaxed.test": SPF_OK},
    dmarc_zone("relaxed.test", "v=DMARC1; p=reject"),
    dmarc_zone("strict.test", "v=DMARC1; p=reject; aspf=s; adkim=s"),
    key_zone("news.relaxed.test"), key_zone("news.strict.test"), key_zone("co.uk"),
    dmarc_zone("example.co.uk", "v=DMARC1; p=reject; sp=quarantine"),
    dmarc_zone("sub.own.test", "v=DMARC1; p=none; sp=reject"), dmarc_zone("own.test", "v=DMARC1; p=reject"),
    dmarc_zone("half.test", "v=DMARC1; p=reject; pct=0"),
    {"_dmarc.twice.test": [("TXT", "v=DMARC1; p=reject"), ("TXT", "v=DMARC1; p=none")]},
    dmarc_zone("other.test", "v=spf1 -all"), dmarc_zone("fallback.other.test", "v=spf1 -all"),
    dmarc_zone("bogus.test", "v=DMARC1; p=bogus"),
    dmarc_zone("reporting.test", "v=DMARC1; p=bogus; rua=mailto:dmarc@reporting.test"),
    dmarc_zone("loose.test", "v=DMARC1; p=quarantine; pct=x; adkim=z; aspf=9"),
    {"_dmarc.servfail.test": [("SERVFAIL", None)], "_dmarc.slow.test": [("TIMEOUT", None)],
     "_dmarc.sub.orgfail.test": [], "_dmarc.orgfail.test": [("SERVFAIL", None)]},
    dmarc_zone("good.test", "v=DMARC1; p=reject"),
)  # fmt: skip


@pytest.fixture(scope="module")
def dmarc_dns():
    server = TestDNSServer(ZONE_DMARC).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def engine(dmarc_dns):
    return Engine.from_config(parse(message_check_config(dmarc_dns)))


def dmarc(engine, author: str, sender: str = "alice@good.test", signer: str = "", fields: bytes = b"") -> dict:
    """The DMARC report for a message From `author` (or with these From `fields` instead), with a DKIM
    signature of `signer`'s."""
    raw = message(author) if author else b"To: bob@example.org\r\nSubject: x\r\n" + fields + b"\r\nHello.\r\n"
    if signer:
        raw = sign(raw, signer)
    report = check_report(engine, GOOD_IP, "mail.good.test", sender, raw)
    (entry,) = entries(report["headers"]["Authentication-Results"], "dmarc")
    return report["dmarc"] | {"comment": entry.comment, "header.from": entry.properties.get("header.from", "")}


def test_rfc_7489_example_spf_relaxed_alignment_passes_for_a_subdomain_of_the_author_domain(engine):
    """§3.1.2 / Appendix C: MAIL FROM bounces.relaxed.test passes SPF and shares relaxed.test's org domain."""
    result = dmarc(engine, "alice@relaxed.test", sender="x@bounces.relaxed.test")
    assert result == {"result": "pass", "domain": "relaxed.test", "org_domain": "relaxed.test", "policy": "reject",
                      "spf_aligned": True, "dkim_aligned": False, "comment": "p=reject sp=reject",
                      "header.from": "relaxed.test"}  # fmt: skip


def test_strict_spf_alignment_needs_the_exact_domain(engine):
    result = dmarc(engine, "alice@strict.test", sender="x@bounces.strict.test")
    assert (result["result"], result["spf_aligned"], result["policy"]) == ("fail", False, "reject")


def test_spf_pass_for_an_unrelated_domain_does_not_align(engine):
    assert dmarc(engine, "alice@relaxed.test")["result"] == "fail"  # SPF passes for good.test


def test_dkim_relaxed_alignment_passes_and_strict_needs_the_exact_domain(engine):
    relaxed = dmarc(engine, "alice@relaxed.test", signer="news.relaxed.test")
    assert (relaxed["result"], relaxed["dkim_aligned"], relaxed["spf_aligned"]) == ("pass", True, False)
    strict = dmarc(engine, "alice@strict.test", signer="news.strict.test")
    assert (strict["result"], strict["dkim_aligned"]) == ("fail", False)


def test_aligned_means_passed_and_aligned_a_failing_aligned_signature_does_not_count(engine):
    raw = sign(message("alice@relaxed.test"), "news.relaxed.test").replace(b"Hello.", b"Tampered.")
    report = check_report(engine, GOOD_IP, "mail.good.test", "alice@good.test", raw)
    assert report["dkim"][0]["result"] == "fail"
    assert (report["dmarc"]["result"], report["dmarc"]["dkim_aligned"]) == ("fail", False)


def test_a_signature_by_a_public_suffix_never_aligns(engine):
    """§3.2: co.uk is a public suffix, example.co.uk the organizational domain; they are not aligned."""
    assert organizational_domain("a.b.example.co.uk") == "example.co.uk"
    result = dmarc(engine, "alice@example.co.uk", signer="co.uk")
    assert (result["result"], result["dkim_aligned"]) == ("fail", False)


def test_a_subdomain_without_a_record_gets_the_organizational_domains_sp(engine, dmarc_dns):
    fresh = Engine.from_config(engine.config)  # nothing cached
    before = len(dmarc_dns.queries)
    result = dmarc(fresh, "alice@a.b.example.co.uk")
    assert (result["org_domain"], result["policy"], result["comment"]) == ("example.co.uk", "quarantine",
                                                                           "p=reject sp=quarantine")  # fmt: skip
    asked = [name for name, qtype in dmarc_dns.queries[before:] if name.startswith("_dmarc.")]
    assert asked == ["_dmarc.a.b.example.co.uk", "_dmarc.example.co.uk"]


def test_sp_does_not_apply_to_the_record_of_the_author_domain_itself(engine):
    assert dmarc(engine, "alice@sub.own.test")["policy"] == "none"


def test_pct_0_turns_reject_into_quarantine_and_pct_100_applies_it(engine, monkeypatch):
    """§6.6.4: a message outside pct= gets the next policy down (reject -> quarantine -> none)."""
    monkeypatch.setattr(random, "random", lambda: 0.0)
    dispositions = {}
    for author in ("alice@half.test", "alice@relaxed.test"):
        _, envelope = engine.check(GOOD_IP, "mail.good.test", "alice@good.test", message(author))
        dispositions[author] = envelope.results["dmarc"].disposition
    assert dispositions == {"alice@half.test": "quarantine", "alice@relaxed.test": "reject"}


@pytest.mark.parametrize("author, result, policy, comment", [
    ("alice@twice.test", "none", "", "2 DMARC records at _dmarc.twice.test"),
    ("alice@fallback.other.test", "none", "", "no DMARC record"),  # v=spf1 records are not DMARC records
    ("alice@bogus.test", "none", "", "DMARC record without a valid p="),
    ("alice@reporting.test", "fail", "none", "p=none sp=none"),  # no valid p=, but rua=: as if p=none
    ("alice@loose.test", "fail", "quarantine", "p=quarantine sp=quarantine"),  # bad pct/adkim/aspf: defaults
    ("alice@nodmarc.test", "none", "", "no DMARC record"),
])  # fmt: skip
def test_policy_discovery(engine, author, result, policy, comment):
    got = dmarc(engine, author)
    assert (got["result"], got["policy"], got["comment"]) == (result, policy, comment)


@pytest.mark.parametrize("author", ["alice@servfail.test", "alice@slow.test", "alice@sub.orgfail.test"])
def test_dns_errors_are_temperror(engine, author):
    got = dmarc(engine, author)
    assert got["result"] == "temperror"
    assert got["comment"].startswith("DMARC record lookup failed:")


@pytest.mark.parametrize("fields, comment", [
    (b"", "no From field"),
    (b"From: a@relaxed.test\r\nFrom: b@relaxed.test\r\n", "2 From fields"),
    (b"From: undisclosed-recipients:;\r\n", "From has no address"),
    (b"From: Alice <alice>\r\n", "From has an address without a domain"),
    (b"From: a@relaxed.test, b@other.test\r\n", "From has addresses in several domains"),
    (b"From: a@[192.0.2.1]\r\n", "From domain is not a domain name"),
    (b"From: =?utf-8?q?=E2=82=AC?= <a@b\xe4d\xff.test>\r\n", "From domain is not a domain name"),
])  # fmt: skip
def test_no_usable_author_domain_is_permerror_without_dns(engine, fields, comment):
    got = dmarc(engine, "", fields=fields)
    assert (got["result"], got["domain"], got["policy"], got["comment"], got["header.from"]) == (
        "permerror", "", "", comment, "")  # fmt: skip


def test_the_null_sender_aligns_through_its_helo_identity(engine):
    """SPF's identity for MAIL FROM:<> is postmaster@<HELO> (RFC 7208 §2.4), which DMARC aligns."""
    result = dmarc(engine, "alice@good.test", sender="")
    assert (result["result"], result["spf_aligned"]) == ("pass", True)
