"""Hostile messages for the message checks: each gets a result (neutral, permerror, none, fail), never an
exception, within the DNS budget; a 50 MB body is hashed as it streams, with memory bounded whatever its size.
Through the milter callbacks, as the MTA drives them (header values verbatim, body in 64 KiB chunks)."""

from __future__ import annotations

import tracemalloc

import Milter
import pytest

from mailwarden.checks.message import split_message
from mailwarden.config import parse
from mailwarden.daemon import Gate
from mailwarden.engine import Engine
from mailwarden.protocols import milter_class

from .conftest import GOOD_IP, ZONE, message_check_config
from .dnsserver import TestDNSServer, merge
from .results import entries
from .signing import RSA_1024, RSA_1024_RECORD, dmarc_zone, key_zone, message, sign
from .test_callbacks import NO, NO_REPLY, Recorded

BAD_ENCODING = b"v=DKIM1; k=rsa; p=\xff\xfe\x00\x80garbage"
ZONE_BAD = merge(
    ZONE,
    key_zone("good.test", "small", RSA_1024_RECORD),
    dmarc_zone("good.test", "v=DMARC1; p=reject"),
    {"bad._domainkey.good.test": [("TXT", [BAD_ENCODING[:20], BAD_ENCODING[20:]])]},
    {"_dmarc.badtxt.test": [("TXT", [b"v=DMARC1; p=re", b"ject; pct=\x80\xff"])]},
)


class Quarantining(Recorded):
    def __init__(self) -> None:
        super().__init__()
        self.quarantined: list[str] = []

    def quarantine(self, reason: str) -> None:
        self.quarantined.append(reason)


@pytest.fixture(scope="module")
def bad_dns():
    server = TestDNSServer(ZONE_BAD).start()
    yield server
    server.stop()


@pytest.fixture
def milter(bad_dns):
    config = parse(message_check_config(bad_dns, budget=2.0))
    milter = milter_class(config)(Engine.from_config(config), Gate())
    milter._ctx = Quarantining()
    options = [0x1FF, NO_REPLY | Milter.P_SKIP | Milter.P_HDR_LEADSPC | sum(NO.values()), 0, 0]
    milter.negotiate(options)
    return milter


def deliver(milter, raw: bytes, chunks: list[bytes] | None = None) -> tuple[int, dict[str, list]]:
    """One message through the callbacks: (end of message's answer, our A-R's entries by method)."""
    milter.connect("mail.good.test", 4, (GOOD_IP, 25))
    milter.hello("mail.good.test")
    milter.envfrom("<alice@good.test>")
    assert milter.envrcpt("<bob@example.org>") == Milter.CONTINUE
    fields, body = split_message(raw)
    for name, value in fields:
        milter.header(name, value)
    for chunk in chunks if chunks is not None else [body]:
        if milter.body(chunk) == Milter.SKIP:
            break
    answer = milter.eom()
    (ar,) = [value for name, value, _ in milter._ctx.added if name == "Authentication-Results"]
    found: dict[str, list] = {}
    for entry in entries(ar.lstrip()):
        found.setdefault(entry.method, []).append(entry)
    return answer, found


def results(found: dict[str, list], method: str) -> list[tuple[str, str]]:
    return [(e.result, e.comment) for e in found[method]]


def signed(**options) -> bytes:
    return sign(message("alice@good.test"), "good.test", "small", RSA_1024, **options)


@pytest.mark.parametrize("change, comment", [
    ((b"v=1;", b"v=1; v=1;"), "malformed signature: DuplicateTag b'v'"),
    ((b"a=rsa-sha256", b"a=rsa-sha512"), "unknown signature algorithm: b'rsa-sha512'"),
    ((b"d=good.test", b"d=good.test; d=evil.test"), "malformed signature: DuplicateTag b'd'"),
    ((b"s=small", b"s=sm all"), "s= is not a domain name"),
    ((b"bh=", b"bh; x="), "malformed signature: InvalidTagSpec b'\\r\\n bh'"),
    ((b"c=relaxed/relaxed", b"c=loose/relaxed"), "unknown canonicalisation in c="),
])  # fmt: skip
def test_malformed_or_duplicated_tags_are_neutral(milter, change, comment):
    answer, found = deliver(milter, signed().replace(*change, 1))
    assert answer == Milter.CONTINUE
    assert results(found, "dkim") == [("neutral", comment)]


def test_a_100_kb_signature_is_neutral_without_a_key_lookup(milter, bad_dns):
    huge = signed().replace(b"h=", b"z=" + b"x" * 100_000 + b"; h=", 1)
    before = len(bad_dns.queries)
    _, found = deliver(milter, huge)
    assert results(found, "dkim") == [("neutral", "signature over 16 KiB")]
    assert not [q for q in bad_dns.queries[before:] if "_domainkey" in q[0]]


def test_a_key_record_in_bad_encoding_and_pieces_is_permerror(milter):
    raw = sign(message("alice@good.test"), "good.test", "bad", RSA_1024)
    _, found = deliver(milter, raw)
    assert results(found, "dkim") == [("permerror", "unusable key record: Error")]  # binascii's


def test_a_dmarc_record_in_bad_encoding_and_pieces_still_gives_a_result(milter):
    _, found = deliver(milter, message("alice@badtxt.test"))
    assert [e.result for e in found["dmarc"]] == ["fail"]
    assert found["dmarc"][0].comment == "p=reject sp=reject"  # p= survives, the garbled pct= is 100


def test_non_ascii_and_undecodable_header_bytes_are_hashed_as_they_came(milter):
    raw = message("alice@good.test", subject="caf\xe9 \u2603").replace(b"Subject:", b"X-Raw: \xff\xfe\r\nSubject:")
    signed_raw = sign(raw, "good.test", "small", RSA_1024, include_headers=[b"from", b"subject", b"x-raw"])
    _, found = deliver(milter, signed_raw)
    assert results(found, "dkim")[0][0] == "pass"
    assert [e.result for e in found["dmarc"]] == ["pass"]


def test_1000_signatures_verify_ten_and_cost_one_key_lookup(milter, bad_dns):
    raw = signed()
    head = raw.split(b"From:")[0]
    before = len(bad_dns.queries)
    _, found = deliver(milter, head * 999 + raw)
    got = results(found, "dkim")
    assert got[:10] == [("pass", "1024-bit key, rsa-sha256")] * 10
    assert got[10:] == [("policy", "990 more signatures not verified (at most 10)")]
    assert len([q for q in bad_dns.queries[before:] if "_domainkey" in q[0]]) <= 1


def test_a_50_mb_body_is_hashed_as_it_streams_in_bounded_memory(milter):
    """The body is never kept: tracemalloc's peak while 50 MB stream through stays under 1 MB."""
    line = b"The quick brown fox  jumps over\tthe lazy dog, again and again and again.\r\n"
    chunk = line * (65536 // len(line))
    count = 50 * 1024 * 1024 // len(chunk)
    raw = sign(message("alice@good.test", body=(chunk * count).decode()), "good.test", "small", RSA_1024)
    fields, _ = split_message(raw)
    head = b"".join(f"{n}:{v}\r\n".encode() for n, v in fields) + b"\r\n"
    del raw
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        answer, found = deliver(milter, head, chunks=(chunk for _ in range(count)))  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert answer == Milter.CONTINUE
    assert results(found, "dkim")[0][0] == "pass"
    assert peak < 1024 * 1024, peak


def test_an_unsigned_message_that_is_no_bounce_lets_the_mta_skip_the_body(milter):
    milter.connect("mail.good.test", 4, (GOOD_IP, 25))
    milter.envfrom("<alice@good.test>")
    milter.envrcpt("<bob@example.org>")
    for name, value in split_message(message("alice@good.test"))[0]:
        milter.header(name, value)
    assert milter.body(b"Hello.\r\n") == Milter.SKIP
