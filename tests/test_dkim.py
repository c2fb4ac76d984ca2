"""DKIM through `mailwarden check --message`'s code path against a DNS server on loopback: dkimpy's own test
vectors (RFC 8463's Ed25519 + RSA message, its test keys), messages dkimpy signs here, and what mailwarden
decides where dkimpy does not (rsa-sha1, key sizes, key problems as permerror/temperror, From unsigned)."""

from __future__ import annotations

import base64

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailwarden.checks.dkim import MAX_SIGNATURES
from mailwarden.cli import check_report
from mailwarden.config import parse
from mailwarden.engine import Engine

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
    key_zone,
    message,
    sign,
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
