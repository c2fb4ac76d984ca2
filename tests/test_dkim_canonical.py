"""mailwarden's DKIM header hash input is dkimpy's, octet for octet: the same fields selected (bottom up, one
instance per h= name, names as each canonicalisation writes them), the same relaxed and simple
canonicalisation, the same signature field with b= emptied, on arbitrary fields, names and signatures."""

from __future__ import annotations

import re

import dkim
from dkim.canonicalization import Relaxed, Simple
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwarden.checks.dkim import _BTAG, header_hash_input, relaxed_value
from mailwarden.checks.message import field_of

# Octets that matter to canonicalisation and to b= removal, and a few that do not.
OCTETS = b"ab=;/+ \t\r\n\x0b\x0cZ9\xff:"
VALUE = st.binary(max_size=80).map(lambda b: bytes(OCTETS[x % len(OCTETS)] for x in b))
NAME = st.sampled_from([b"From", b"from", b"FROM ", b"To", b"to\t", b"X-Tag", b"x-tag", b"Subject", b"DKIM-Signature"])
SIGNED = st.lists(st.sampled_from([b"from", b"to", b"x-tag", b"subject", b"cc", b"dkim-signature"]), max_size=8)
# A signature field's value: tags around a b= written in the ways RFC 6376's FWS allows, and garbage.
B_VALUE = st.lists(st.sampled_from([b"b", b"b=", b" b =", b";b=\r\n\t", b"abc+/=", b" ", b"\r\n ", b";", b"bh=x",
                                    b"\tb\r\n =ab", b"=", b"\n", b"\r\n"]), max_size=12).map(b"".join)  # fmt: skip


class Collected:
    """A hasher that keeps what it is given."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def update(self, data: bytes) -> None:
        self.parts.append(data)


def dkimpy_input(fields, signed, relaxed, header) -> bytes:
    """What dkimpy's verification hashes: every field canonicalised, then hash_headers."""
    policy = dkim.CanonicalizationPolicy(Relaxed if relaxed else Simple, Relaxed)
    collected = Collected()
    dkim.hash_headers(collected, policy, policy.canonicalize_headers(list(fields)), signed, header, {})
    return b"".join(collected.parts)


@settings(max_examples=3000)
@given(VALUE | B_VALUE)
def test_b_tag_removal_is_dkimpys(value):
    assert _BTAG.sub(b"\\1", value) == dkim.RE_BTAG.sub(b"\\1", value)


@settings(max_examples=3000)
@given(VALUE)
def test_relaxed_value_is_dkimpys(value):
    assert relaxed_value(value) + b"\r\n" == Relaxed.canonicalize_headers([(b"x", value)])[0][1]


@settings(max_examples=3000)
@given(st.lists(st.tuples(NAME, VALUE), max_size=10), SIGNED, st.booleans(), NAME, VALUE | B_VALUE)
def test_header_hash_input_is_dkimpys(fields, signed, relaxed, signature_name, signature_value):
    fields = tuple(fields)
    header = (signature_name, signature_value)
    assert header_hash_input(fields, signed, relaxed, header) == dkimpy_input(fields, signed, relaxed, header)


def test_a_repeated_field_is_taken_bottom_up_once_per_name():
    fields = ((b"X-Tag", b" one\r\n"), (b"From", b" a@b.example\r\n"), (b"X-Tag", b" two\r\n"))
    signed = [b"x-tag", b"x-tag", b"x-tag", b"from"]
    got = header_hash_input(fields, signed, True, (b"DKIM-Signature", b" b=abc"))
    assert got == b"x-tag:two\r\nx-tag:one\r\nfrom:a@b.example\r\ndkim-signature:b="
    assert got == dkimpy_input(fields, signed, True, (b"DKIM-Signature", b" b=abc"))


@settings(max_examples=2000)
@given(VALUE)
def test_a_field_value_gets_crlf_line_ends_as_re_sub_gives_them(value):
    text = value.decode("utf-8", "surrogateescape")
    assert field_of("X", text)[1] == re.sub(rb"\r?\n", b"\r\n", value) + b"\r\n"
