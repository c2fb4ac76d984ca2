"""DKIM through `mailwarden check --message`'s code path against a DNS server on loopback: dkimpy's own test
vectors (RFC 8463's Ed25519 + RSA message, its test keys), messages dkimpy signs here, and what mailwarden
decides where dkimpy does not (rsa-sha1, key sizes, key problems as permerror/temperror, From unsigned)."""

from __future__ import annotations

import base64
import time

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailwarden.checks.dkim import MAX_SIGNATURES
from mailwarden.checks.message import split_message
from mailwarden.cli import check_report
from mailwarden.config import parse
from mailwarden.engine import Edits, Engine
from mailwarden.session import Envelope, Session

from .conftest import GOOD_IP, ZONE, message_check_config
from .dnsserver import TestDNSServer, merge
from .results import Entry, entries
from .signing import (
    ED25519,
    ED25519_RECORD,
    RFC8463_MESSAGE,
    RFC8463_ZONE,
    RSA_1024,
    RSA_1024_RECORD,
    dmarc_zone,
    key_zone,
    message,
    sign,
    sign_with_tags,
)


def rsa_record(bits: int, exponent: int = 65537) -> str:
    """A key record with an RSA public key of `bits` bits (a random odd modulus: only its size matters)."""
    import secrets

    modulus = secrets.randbits(bits) | (1 << (bits - 1)) | 1
    public = rsa.RSAPublicNumbers(exponent, modulus).public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


ZONE_DKIM = merge(
    ZONE,
    RFC8463_ZONE,
    key_zone("good.test"),
    key_zone("good.test", "ed", ED25519_RECORD),
    key_zone("good.test", "small", RSA_1024_RECORD),
    key_zone("good.test", "tiny", rsa_record(512)),
    key_zone("good.test", "huge", rsa_record(16384)),
    key_zone("good.test", "wide", rsa_record(4096)),
    key_zone("good.test", "garbage", "v=DKIM1; k=rsa; p=bm90IGEga2V5IGF0IGFsbA=="),
    key_zone("good.test", "notb64", "v=DKIM1; k=rsa; p=%%%\xff\xfe"),
    key_zone("good.test", "revoked", "v=DKIM1; k=rsa; p="),
    # What a key record restricts (RFC 6376 §3.6.1): its hashes (h=) and, with t=s, i= to d= itself.
    key_zone("good.test", "sha1only", RSA_1024_RECORD.replace("k=rsa;", "k=rsa; h=sha1;")),
    key_zone("good.test", "sha256too", RSA_1024_RECORD.replace("k=rsa;", "k=rsa; h=sha1 : SHA256 : future;")),
    key_zone("good.test", "strict", RSA_1024_RECORD.replace("k=rsa;", "k=rsa; t=s;")),
    # t=y, the domain testing DKIM (RFC 6376 §3.6.1), under a DMARC p=reject: what testing changes, and not.
    key_zone("testing.test", "sel", RSA_1024_RECORD.replace("k=rsa;", "k=rsa; t=y;")),
    dmarc_zone("testing.test", "v=DMARC1; p=reject"),
    {"twice._domainkey.good.test": [("TXT", "v=DKIM1; p=a"), ("TXT", "v=DKIM1; p=b")]},
    {"slow._domainkey.good.test": [("TIMEOUT", None)], "broken._domainkey.good.test": [("SERVFAIL", None)]},
)

ZONE_DKIM_TXT = {"sel._domainkey.good.test": "".join(ZONE_DKIM["sel._domainkey.good.test"][0][1]).encode()}


@pytest.fixture(scope="module")
def dkim_dns():
    server = TestDNSServer(ZONE_DKIM).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def engine(dkim_dns):
    return Engine.from_config(parse(message_check_config(dkim_dns)))


def check(engine, raw: bytes) -> dict:
    return check_report(engine, GOOD_IP, "mail.good.test", "alice@good.test", raw)


def dkim_of(engine, raw: bytes) -> list[tuple[str, str, str]]:
    return [(s["result"], s["domain"], s["selector"]) for s in check(engine, raw)["dkim"]]


def dkim_entries(report: dict) -> list[Entry]:
    return entries(report["headers"]["Authentication-Results"], "dkim")


# -- dkimpy's vectors -----------------------------------------------------------------------------------------


def test_rfc_8463_message_passes_with_its_ed25519_and_its_rsa_signature(engine):
    report = check(engine, RFC8463_MESSAGE)
    assert report["dkim"] == [
        {"result": "pass", "domain": "football.example.com", "selector": "brisbane"},
        {"result": "pass", "domain": "football.example.com", "selector": "test"},
    ]
    found = dkim_entries(report)
    assert [(e.result, e.properties) for e in found] == [
        ("pass", {"header.d": "football.example.com", "header.s": "brisbane", "header.b": "9/dsDChY"}),
        ("pass", {"header.d": "football.example.com", "header.s": "test", "header.b": "icKcLSEZ"}),
    ]


@pytest.mark.parametrize("canonicalize", [(b"simple", b"simple"), (b"relaxed", b"relaxed"), (b"relaxed", b"simple"),
                                          (b"simple", b"relaxed")], ids=lambda c: b"/".join(c).decode())  # fmt: skip
def test_messages_dkimpy_signs_pass_in_every_canonicalisation(engine, canonicalize):
    raw = message("alice@good.test", body="Some  text \t\r\n\r\nend\r\n\r\n\r\n", headers="X-Odd:\tx  \r\n")
    assert dkim_of(engine, sign(raw, "good.test", canonicalize=canonicalize)) == [("pass", "good.test", "sel")]


def test_ed25519_and_1024_to_4096_bit_rsa_keys_pass(engine):
    raw = message("alice@good.test")
    signed = sign(sign(raw, "good.test", "ed", ED25519, b"ed25519-sha256"), "good.test", "small", RSA_1024)
    assert dkim_of(engine, signed) == [("pass", "good.test", "small"), ("pass", "good.test", "ed")]
    assert dkim_entries(check(engine, signed))[0].comment == "1024-bit key, rsa-sha256"


def test_a_changed_body_or_signed_field_fails_and_dkimpy_agrees(engine):
    signed = sign(message("alice@good.test", body="Pay 10 EUR.\r\n"), "good.test")
    for tampered, reason in [
        (signed.replace(b"Pay 10", b"Pay 99"), "body hash did not verify"),
        (signed.replace(b"Subject: Hello", b"Subject: Hellp"), "signature did not verify"),
    ]:
        (entry,) = dkim_entries(check(engine, tampered))
        assert (entry.result, entry.comment) == ("fail", reason)
        assert not dkim.verify(tampered, dnsfunc=lambda *a, **k: None)


@pytest.mark.parametrize("canonicalize", [(b"simple", b"simple"), (b"relaxed", b"relaxed")],
                         ids=lambda c: b"/".join(c).decode())  # fmt: skip
def test_a_signature_over_two_instances_of_a_field_passes(engine, canonicalize):
    """h=x-tag:x-tag signs both X-Tag fields, the lower one first (RFC 6376 §5.4.2). The fields selected for
    the signature were once selected again from that selection, which reversed the pair: fail."""
    raw = message("alice@good.test", headers="X-Tag: one\r\nX-Tag: two\r\n")
    twice = [b"from", b"x-tag", b"x-tag", b"subject"]
    signed = sign(raw, "good.test", include_headers=twice, canonicalize=canonicalize)
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: ZONE_DKIM_TXT[name.decode().rstrip(".")])
    assert dkim_of(engine, signed) == [("pass", "good.test", "sel")]


def test_a_body_length_limit_lets_text_appended_below_it_pass(engine):
    signed = sign(message("alice@good.test", body="Original.\r\n"), "good.test", length=True)
    assert dkim_of(engine, signed + b"-- \r\nappended by a list\r\n") == [("pass", "good.test", "sel")]


def test_folded_and_unfolded_headers_read_from_a_file_with_bare_lf_still_verify(engine):
    signed = sign(message("alice@good.test", headers="X-Long: one\r\n two\r\n"), "good.test",
                  canonicalize=(b"simple", b"simple"))  # fmt: skip
    assert dkim_of(engine, signed.replace(b"\r\n", b"\n")) == [("pass", "good.test", "sel")]


# -- what mailwarden decides where dkimpy would not ----------------------------------------------------------------


def signed_with(engine, selector: str, key: bytes = RSA_1024, **options) -> tuple[str, str]:
    (entry,) = dkim_entries(check(engine, sign(message("alice@good.test"), "good.test", selector, key, **options)))
    return entry.result, entry.comment


def test_rsa_sha1_fails_rfc_8301(engine):
    assert signed_with(engine, "small", algorithm=b"rsa-sha1") == ("fail", "rsa-sha1 is not acceptable (RFC 8301)")


@pytest.mark.parametrize("selector, result, comment", [
    ("missing", "permerror", "no key record at missing._domainkey.good.test"),
    ("revoked", "permerror", "unusable key record: KeyFormatError"),
    ("garbage", "permerror", "unusable key record: KeyFormatError"),
    ("notb64", "permerror", "unusable key record: KeyFormatError"),
    ("twice", "permerror", "2 key records at twice._domainkey.good.test"),
    ("tiny", "permerror", "512-bit RSA key refused (accepted: 1024-4096)"),
    ("huge", "permerror", "16384-bit RSA key refused (accepted: 1024-4096)"),
    ("slow", "temperror", None),
    ("broken", "temperror", None),
])  # fmt: skip
def test_key_problems_are_permerror_and_dns_trouble_temperror(engine, selector, result, comment):
    got = signed_with(engine, selector)
    assert got[0] == result
    assert comment is None or got[1] == comment


def test_a_key_whose_h_does_not_list_the_signatures_hash_fails(engine):
    """RFC 6376 §3.6.1 and §6.1.2: h= in the key record lists the hash algorithms the key may be used with;
    a signature with another is PERMFAIL (inappropriate hash algorithm). Unknown names in h= are ignored,
    names are matched without regard to case. OpenDKIM: fail, "signature-key hash mismatch"."""
    assert signed_with(engine, "sha1only") == ("fail", "the key's h= does not allow sha256 (RFC 6376 section 3.6.1)")
    assert signed_with(engine, "sha256too") == ("pass", "1024-bit key, rsa-sha256")


def test_a_key_with_t_s_fails_a_signature_whose_i_is_a_subdomain_of_d(engine):
    """RFC 6376 §3.6.1, t=s: the i= domain must be d= itself, not a subdomain. OpenDKIM: fail, "unauthorized
    subdomain". The same key passes i= in d= itself, and a key without t=s the subdomain."""
    subdomain = b"alice@mail.good.test"
    assert signed_with(engine, "strict", identity=subdomain) == (
        "fail", "i= is a subdomain of d=, which the key's t=s forbids (RFC 6376 section 3.6.1)")  # fmt: skip
    same = sign_with_tags(message("alice@good.test"), "good.test", {b"i": b"alice@Good.Test"}, "strict", RSA_1024)
    assert [e.result for e in dkim_entries(check(engine, same))] == ["pass"]  # domains compare without case
    assert signed_with(engine, "small", identity=subdomain)[0] == "pass"


def test_a_signature_past_its_x_expiry_is_policy(engine):
    """RFC 6376 §3.5, §6.1.1: past x= the signature may be ignored with PERMFAIL (signature expired); in RFC
    8601's words `policy` (the dkim.py docstring says why not fail, neutral or permerror). An hour past x=
    (dkimpy's 10-hour leeway would pass it) and a week past (dkimpy: a syntax error, once neutral) alike;
    before x= it passes."""
    now = int(time.time())
    raw = message("alice@good.test")

    def expiring(x: int) -> tuple[str, str]:
        tags = {b"t": str(now - 8 * 86400).encode(), b"x": str(x).encode()}
        (entry,) = dkim_entries(check(engine, sign_with_tags(raw, "good.test", tags, "small", RSA_1024)))
        return entry.result, entry.comment

    for past in (now - 3600, now - 7 * 86400):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(past))
        assert expiring(past) == ("policy", f"signature expired at {stamp} (x=)")
    assert expiring(now + 3600) == ("pass", "1024-bit key, rsa-sha256")


def test_a_4096_bit_key_is_fetched_and_used(engine):
    # The published 4096-bit modulus is not the signing key's: the signature is checked (and fails) against it.
    assert signed_with(engine, "wide", RSA_1024) == ("fail", "signature length does not fit the 4096-bit key")


def test_a_signature_that_does_not_cover_from_is_neutral(engine):
    raw = message("alice@good.test")
    signed = dkim.sign(raw, b"small", b"good.test", RSA_1024, include_headers=[b"subject", b"from"])
    signed = signed.replace(b"h=subject : from", b"h=subject").replace(b"h=subject:from", b"h=subject")
    (entry,) = dkim_entries(check(engine, signed + raw))
    assert (entry.result, entry.comment) == ("neutral", "From is not signed (RFC 6376 section 5.4)")


def test_unsigned_mail_is_an_empty_list_and_dkim_none(engine):
    report = check(engine, message("alice@good.test"))
    assert report["dkim"] == []
    assert [(e.result, e.comment) for e in dkim_entries(report)] == [("none", "message not signed")]


def test_every_signature_is_reported_and_at_most_ten_verified(engine, dkim_dns):
    raw = sign(message("alice@good.test"), "good.test", "small", RSA_1024)
    many = b"".join(raw.split(b"From:")[0] for _ in range(999)) + raw
    before = len(dkim_dns.queries)
    results = dkim_of(engine, many)
    assert results[:MAX_SIGNATURES] == [("pass", "good.test", "small")] * MAX_SIGNATURES
    assert results[MAX_SIGNATURES:] == [("policy", "", "")]
    assert len(dkim_dns.queries) - before <= 1  # one key, looked up once


# -- t=y: the signer is testing DKIM (RFC 6376 §3.6.1) -------------------------------------------------------
# Reported as verified, the testing noted in the comment (what OpenDKIM's documentation says it writes); DMARC
# counts a pass as any pass, and a fail, as any fail, for nothing: that message fares as an unsigned one. The
# dkim.py docstring says why.


@pytest.fixture(scope="module")
def enforcing(dkim_dns):
    return Engine.from_config(parse(message_check_config(dkim_dns) + "[policy]\ndmarc_enforce = true\n"))


def relayed(engine: Engine, raw: bytes) -> tuple[Edits, dict]:
    """What the milter does with a message that a host of another domain relays (SPF cannot align with the
    author's domain: DMARC rests on DKIM alone), and `mailwarden check --json`'s report of it."""
    session = Session(ip="192.0.2.1", helo="mail.relay.test")
    engine.connect(session)
    envelope = Envelope(sender="list@relay.test")
    engine.mail(session, envelope)
    engine.rcpt(session, envelope, "bob@example.org")
    fields, body = split_message(raw)
    for name, value in fields:
        engine.header(envelope, name, value)
    engine.body(envelope, body)
    return engine.end(session, envelope), check_report(engine, "192.0.2.1", "mail.relay.test", "list@relay.test", raw)


def decision(edits: Edits) -> tuple[str, str, str]:
    return edits.decision.action, edits.decision.code, edits.decision.xcode


def test_a_signature_verified_with_a_testing_key_passes_noted_and_counts_for_dmarc(enforcing):
    """A pass is reported as pass with the testing noted (OpenDKIM's documentation: the A-R indicates the test
    mode), and DMARC counts it: the key proves that the domain signed the message whatever it is testing."""
    edits, report = relayed(enforcing, sign(message("alice@testing.test"), "testing.test", "sel", RSA_1024))
    (entry,) = dkim_entries(report)
    assert (entry.result, entry.comment) == ("pass", "1024-bit key, rsa-sha256; key in testing mode (t=y)")
    assert (report["dmarc"]["result"], report["dmarc"]["dkim_aligned"]) == ("pass", True)
    assert decision(edits) == ("accept", "", "")


def test_a_signature_failing_with_a_testing_key_is_fail_noted_and_fares_as_unsigned_mail(enforcing):
    """RFC 6376 §3.6.1: verifiers MUST NOT treat a testing signer's mail differently from unsigned mail, even
    should the signature fail. The A-R says what happened (fail, the testing noted); DMARC's result, its
    report and the enforcement of p=reject are those of the same message unsigned."""
    raw = message("alice@testing.test")
    tampered = sign(raw, "testing.test", "sel", RSA_1024).replace(b"Hello.", b"Tampered.")
    edits, report = relayed(enforcing, tampered)
    (entry,) = dkim_entries(report)
    assert (entry.result, entry.comment) == ("fail", "body hash did not verify; key in testing mode (t=y)")
    unsigned_edits, unsigned = relayed(enforcing, raw.replace(b"Hello.", b"Tampered."))
    assert [e.result for e in dkim_entries(unsigned)] == ["none"]
    assert report["dmarc"] == unsigned["dmarc"]
    assert report["dmarc"]["result"] == "fail"
    dmarc_entry = entries(report["headers"]["Authentication-Results"], "dmarc")
    assert dmarc_entry == entries(unsigned["headers"]["Authentication-Results"], "dmarc")
    assert decision(edits) == decision(unsigned_edits) == ("reject", "550", "5.7.1")
