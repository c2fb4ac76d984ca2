"""The streamed body hash is dkimpy's body hash: for any body split at any points, each canonicalisation gives
exactly the octets dkimpy's whole-message canonicalisation gives, and l= cuts them where dkimpy does."""

from __future__ import annotations

import hashlib
import re

from dkim.canonicalization import Relaxed, Simple
from hypothesis import given, settings
from hypothesis import strategies as st

from mailwarden.checks.bodyhash import BodyHash, BodyHasher

BODY = st.binary(max_size=300).map(lambda b: bytes(b"ab \t\r\n"[x % 6] for x in b))


def dkimpy_body(body: bytes, canonicalisation: str) -> bytes:
    """What dkimpy hashes: its rfc822_parse turns bare LF into CRLF, then the canonicalisation."""
    normal = re.sub(rb"\r?\n", b"\r\n", body)
    return (Relaxed if canonicalisation == "relaxed" else Simple).canonicalize_body(normal)


def streamed(body: bytes, cuts: list[int], key: BodyHash) -> bytes:
    hasher = BodyHasher([key])
    points = sorted({min(c, len(body)) for c in cuts})
    for start, end in zip([0, *points], [*points, len(body)], strict=True):
        hasher.feed(body[start:end])
    return hasher.finish()[key]


@settings(max_examples=3000)
@given(BODY, st.lists(st.integers(0, 300), max_size=8), st.sampled_from(["simple", "relaxed"]))
def test_any_body_in_any_chunks_hashes_as_dkimpy_hashes_the_whole(body, cuts, canonicalisation):
    expected = hashlib.sha256(dkimpy_body(body, canonicalisation)).digest()
    assert streamed(body, cuts, BodyHash(canonicalisation, "sha256")) == expected


@settings(max_examples=1000)
@given(BODY, st.lists(st.integers(0, 300), max_size=4), st.integers(0, 200))
def test_a_length_limit_hashes_the_first_l_canonical_octets(body, cuts, length):
    expected = hashlib.sha256(dkimpy_body(body, "relaxed")[:length]).digest()
    assert streamed(body, cuts, BodyHash("relaxed", "sha256", length)) == expected


def test_body_edge_cases_match_rfc_6376_examples():
    """RFC 6376 §3.4.5: 'simple' of an empty body is CRLF, 'relaxed' of it is empty; trailing blank lines go."""
    assert dkimpy_body(b"", "simple") == b"\r\n"
    for body, simple, relaxed in [
        (b"", b"\r\n", b""),
        (b"\r\n\r\n", b"\r\n", b""),
        (b" C \r\nD \t E\r\n\r\n\r\n", b" C \r\nD \t E\r\n", b" C\r\nD E\r\n"),
    ]:
        for name, expected in (("simple", simple), ("relaxed", relaxed)):
            assert streamed(body, [1, 5], BodyHash(name, "sha256")) == hashlib.sha256(expected).digest()


def test_the_hasher_stops_wanting_the_body_once_every_length_is_reached():
    hasher = BodyHasher([BodyHash("simple", "sha256", 10), BodyHash("relaxed", "sha1", 4)])
    assert hasher.wanted
    hasher.feed(b"0123456789\r\nmore\r\n")
    assert not hasher.wanted
    assert BodyHasher([]).wanted is False
