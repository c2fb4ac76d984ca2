"""ARC beyond the suite: our own seals verify (once and twice forwarded), what breaks a chain breaks it, the
RFC 8617 limits, DNS trouble, hostile keys and fields; through the engine, a trusted forwarder's chain saves a
DMARC fail and our seal signs our own Authentication-Results; the [arc] configuration."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailwarden.checks.arc import ArcCheck, ArcResult, Sealer
from mailwarden.checks.message import split_message
from mailwarden.config import ConfigError, parse
from mailwarden.dns import Resolver
from mailwarden.engine import Edits, Engine
from mailwarden.session import Envelope, Session

from .dnsserver import TestDNSServer, merge
from .results import entries
from .signing import dmarc_zone
from .test_arc_suite import dns_context, examined

MESSAGE = """\
From: Alice <alice@origin.test>
To: list@forwarder.test
Subject: hello
Date: Mon, 7 Dec 2026 10:00:00 +0000
Message-ID: <1@origin.test>

Hello,  there.
"""
NOW = 1796636400  # 2026-12-07


def _key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def key_record(public: rsa.RSAPublicKey) -> str:
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def txt(text: str) -> list[tuple[str, object]]:
    return [("TXT", [text[i : i + 255] for i in range(0, len(text), 255)])]


KEYS = {name: _key(1024) for name in ("forwarder", "second")}
FORWARDER_RECORD = key_record(KEYS["forwarder"].public_key())
ZONE = merge({
    "arc._domainkey.forwarder.test": txt(FORWARDER_RECORD),
    # The forwarder's key again, under what its record restricts (RFC 6376 §3.6.1): h=, the hashes allowed.
    "sha1only._domainkey.forwarder.test": txt(FORWARDER_RECORD.replace("k=rsa;", "k=rsa; h=sha1;")),
    "sha256too._domainkey.forwarder.test": txt(FORWARDER_RECORD.replace("k=rsa;", "k=rsa; h=sha1 : SHA256;")),
    "arc._domainkey.second.test": txt(key_record(KEYS["second"].public_key())),
    "arc._domainkey.slow.test": [("TIMEOUT", None)],
    "arc._domainkey.twice.test": [("TXT", "v=DKIM1; p=AAAA"), ("TXT", "v=DKIM1; p=BBBB")],
}, dmarc_zone("origin.test", "v=DMARC1; p=reject"))  # fmt: skip


@pytest.fixture(scope="module")
def server() -> Iterator[TestDNSServer]:
    server = TestDNSServer(ZONE).start()
    yield server
    server.stop()


def sealer(tmp_path: Path, domain: str, key: rsa.RSAPrivateKey | None = None, selector: str = "arc") -> Sealer:
    pem = (key or KEYS[domain.split(".")[0]]).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path = tmp_path / f"{domain}.pem"
    path.write_bytes(pem)
    return Sealer.load(domain, selector, str(path))


def verify(server: TestDNSServer, message: str, check: ArcCheck | None = None) -> ArcResult:
    check = check or ArcCheck()
    return check.run(examined(message, check), dns_context(server))


def forward(server: TestDNSServer, message: str, by: Sealer, ar: str) -> str:
    """The message as a forwarder that verified its chain and wrote `ar` as its A-R sends it on."""
    check = ArcCheck(sealer=by)
    read = examined(message, check)
    sealed = by.seal(read.fields, read.digests, ar, check.run(read, dns_context(server)), NOW)
    return "".join(f"{name}: {value}\n" for name, value in sealed) + message


def test_a_message_without_arc_fields_has_no_chain(server: TestDNSServer) -> None:
    result = verify(server, MESSAGE)
    assert (result.result, result.instances, result.resinfo()) == ("none", 0, "arc=none")


def test_our_seal_verifies_and_reports_the_chain_length(server: TestDNSServer, tmp_path: Path) -> None:
    ar = "mx.forwarder.test;\n\tspf=pass (alice@origin.test designates it) smtp.mailfrom=origin.test;\n\tdmarc=pass"
    sealed = forward(server, MESSAGE, sealer(tmp_path, "forwarder.test"), ar)
    result = verify(server, sealed)
    assert result.result == "pass", result.reason
    assert (result.instances, result.sealer, result.sealer_dmarc) == (1, "forwarder.test", "pass")
    assert result.resinfo() == "arc=pass (i=1)"
    # The ARC-Authentication-Results is our A-R verbatim, comments included, behind i=1.
    assert "ARC-Authentication-Results: i=1; " + ar in sealed
    seal = sealed.split("ARC-Message-Signature:")[0]
    assert seal.startswith("ARC-Seal: a=rsa-sha256;\n b=") and "cv=none" in seal
    assert max(len(line) for line in seal.splitlines()) <= 78  # folded between tags and inside b=


def test_a_second_forwarder_extends_a_passing_chain(server: TestDNSServer, tmp_path: Path) -> None:
    once = forward(server, MESSAGE, sealer(tmp_path, "forwarder.test"), "mx.forwarder.test; dmarc=pass")
    twice = forward(server, once, sealer(tmp_path, "second.test"), "mx.second.test; arc=pass; dmarc=fail")
    assert "cv=pass" in twice.split("ARC-Message-Signature")[0]
    result = verify(server, twice)
    assert (result.result, result.instances, result.sealer, result.sealer_dmarc) == ("pass", 2, "second.test", "fail")
    assert result.resinfo() == "arc=pass (i=2)"


def test_a_body_changed_after_sealing_fails_the_chain(server: TestDNSServer, tmp_path: Path) -> None:
    sealed = forward(server, MESSAGE, sealer(tmp_path, "forwarder.test"), "mx.forwarder.test; dmarc=pass")
    result = verify(server, sealed.replace("there.", "there!"))
    assert (result.result, result.instances) == ("fail", 1)
    assert "body hash did not verify" in result.reason
    assert result.resinfo().startswith("arc=fail (i=1: Most recent ARC-Message-Signature did not validate")


def test_a_signed_field_changed_after_sealing_fails_the_chain(server: TestDNSServer, tmp_path: Path) -> None:
    sealed = forward(server, MESSAGE, sealer(tmp_path, "forwarder.test"), "mx.forwarder.test; dmarc=pass")
    assert verify(server, sealed.replace("Subject: hello", "Subject: hullo")).result == "fail"


def test_a_changed_arc_authentication_results_fails_the_seal(server: TestDNSServer, tmp_path: Path) -> None:
    sealed = forward(server, MESSAGE, sealer(tmp_path, "forwarder.test"), "mx.forwarder.test; dmarc=fail")
    result = verify(server, sealed.replace("dmarc=fail", "dmarc=pass"))
    assert result.result == "fail"
    assert "ARC-Seal[1] did not validate" in result.reason


def test_a_broken_chain_is_sealed_as_failed_and_then_never_again(server: TestDNSServer, tmp_path: Path) -> None:
    once = forward(server, MESSAGE, sealer(tmp_path, "forwarder.test"), "mx.forwarder.test; dmarc=pass")
    broken = once.replace("there.", "there!")
    twice = forward(server, broken, sealer(tmp_path, "second.test"), "mx.second.test; arc=fail")
    assert "cv=fail" in twice
    result = verify(server, twice)
    # RFC 8617 §5.2: a chain with a cv=fail seal fails (the 2018 draft and dkimpy give no result).
    assert (result.result, result.ended) == ("fail", True)
    assert forward(server, twice, sealer(tmp_path, "forwarder.test"), "mx.forwarder.test; arc=fail") == twice


def test_an_instance_above_fifty_fails_without_any_lookup(server: TestDNSServer) -> None:
    before = len(server.queries)
    message = "ARC-Seal: i=51; a=rsa-sha256; cv=pass; d=forwarder.test; s=arc; b=AAAA\n" + MESSAGE
    result = verify(server, message)
    assert (result.result, result.instances) == ("fail", 51)
    assert len(server.queries) == before


def test_a_key_lookup_that_times_out_fails_but_is_not_sealed_as_failed(server: TestDNSServer, tmp_path: Path) -> None:
    slow = Sealer("slow.test", "arc", sealer(tmp_path, "forwarder.test").key)
    sealed = forward(server, MESSAGE, slow, "mx.slow.test; dmarc=pass")
    result = verify(server, sealed)
    assert (result.result, result.unsure) == ("fail", True)
    assert "key lookup failed" in result.reason
    assert forward(server, sealed, sealer(tmp_path, "second.test"), "mx.second.test; arc=fail") == sealed


def test_a_chain_in_a_header_over_1_mib_fails_but_is_not_sealed_as_failed(server, tmp_path) -> None:
    once = forward(server, MESSAGE, sealer(tmp_path, "forwarder.test"), "mx.forwarder.test; dmarc=pass")
    huge = once.replace("Subject: hello", "X-Filler: " + "x" * (1024 * 1024) + "\nSubject: hello")
    result = verify(server, huge)
    assert (result.result, result.instances, result.unsure) == ("fail", 1, True)
    assert forward(server, huge, sealer(tmp_path, "second.test"), "mx.second.test; arc=fail") == huge
    assert verify(server, MESSAGE.replace("Subject", "X-Filler: " + "x" * (1024 * 1024) + "\nSubject")).result == "none"


def test_two_key_records_are_no_key(server: TestDNSServer, tmp_path: Path) -> None:
    twice = Sealer("twice.test", "arc", sealer(tmp_path, "forwarder.test").key)
    result = verify(server, forward(server, MESSAGE, twice, "mx.twice.test; dmarc=pass"))
    assert (result.result, result.unsure) == ("fail", False)
    assert "2 key records at arc._domainkey.twice.test" in result.reason


def test_a_key_over_4096_bits_is_refused(server: TestDNSServer, tmp_path: Path) -> None:
    # Any odd 8192-bit number parses as a modulus; the check must refuse it before any arithmetic.
    huge = rsa.RSAPublicNumbers(65537, (1 << 8191) | 1).public_key()
    server.load({**ZONE, "arc._domainkey.huge.test": txt(key_record(huge))})
    try:
        hugely = Sealer("huge.test", "arc", sealer(tmp_path, "forwarder.test").key)
        result = verify(server, forward(server, MESSAGE, hugely, "mx.huge.test; dmarc=pass"))
    finally:
        server.load(ZONE)
    assert result.result == "fail"
    assert "8192-bit RSA key refused" in result.reason


@dataclass(frozen=True)
class SplitSealer(Sealer):
    """A sealer whose ARC-Seal names another selector than its ARC-Message-Signature (the same key is published
    under both), so that one of the two meets a key record the other does not."""

    seal_selector: str = "arc"

    def _signature(self, name, tags, covered, headers):  # type: ignore[no-untyped-def]
        if name == b"ARC-Seal":
            tags = [(tag, self.seal_selector.encode() if tag == b"s" else value) for tag, value in tags]
        return super()._signature(name, tags, covered, headers)


def split_sealed(server: TestDNSServer, tmp_path: Path, ams: str, seal: str) -> ArcResult:
    forwarder = sealer(tmp_path, "forwarder.test")
    split = SplitSealer(forwarder.domain, ams, forwarder.key, seal)
    return verify(server, forward(server, MESSAGE, split, "mx.forwarder.test; dmarc=pass"))


@pytest.mark.parametrize(
    ("ams", "seal", "failed"),
    [
        ("sha1only", "arc", "Most recent ARC-Message-Signature did not validate"),
        ("arc", "sha1only", "ARC-Seal[1] did not validate"),
    ],
    ids=["ams-key", "seal-key"],
)
def test_a_key_whose_h_does_not_list_sha256_fails_the_chain(server, tmp_path, ams: str, seal: str, failed: str) -> None:
    """The key record's h= as DKIM honours it (the same helper, checks/dkim.py KeyLimits.forbids): RFC 8617
    §4.1.2 gives the AMS a DKIM-Signature's semantics, and an AS is verified with a key from the same records.
    dkimpy ignores h= in key records and passes both chains."""
    result = split_sealed(server, tmp_path, ams, seal)
    reason = f"{failed} (the key's h= does not allow sha256 (RFC 6376 section 3.6.1))"
    assert (result.result, result.reason, result.unsure) == ("fail", reason, False)
    assert result.resinfo().startswith("arc=fail (i=1: " + failed)


@pytest.mark.parametrize(("ams", "seal"), [("sha256too", "sha256too"), ("arc", "sha256too"), ("sha256too", "arc")])
def test_a_key_whose_h_lists_sha256_among_others_passes(server, tmp_path, ams: str, seal: str) -> None:
    result = split_sealed(server, tmp_path, ams, seal)
    assert (result.result, result.instances) == ("pass", 1), result.reason


SMALL_KEY = """\
-----BEGIN RSA PRIVATE KEY-----
MIIBOwIBAAJBANYkiDQC9Em96iO5Nc9c26zvyB5ZesjKd56mGDQ9lBK9VPTwJJ6C
f3137MaDDFv7HvQeBlkIW39gPShnc9+yBd0CAwEAAQJAIo6irEINyhirwDgTRvNl
P/MyCDPIbL6/rwp+vW9yhdNcNM57bvwbOQrW/HGz7L6ActBIyU1zkuFMV5xbcvkU
AQIhAPp3Ftwt9ozZSNsRRd6An1otZqtea5fVRQF8LtvQ+w4xAiEA2t/2UvU0j162
O78ZJuxXMGlccsJN1RWn1sLcWCum620CIQDal4cHAMJV6OkR8EBHUYBB5q/dTlme
uM4x3pzS0c/acQIhAMx/VHZOA72wkDNiaO2lBBGHX4kZYf8lLJvLlHQM1PhBAiB2
HM1qyEKdPRjqSdw+3PtdgV6Yk0CB4YqzI9MWO+cQCg==
-----END RSA PRIVATE KEY-----
"""  # 512 bits, PKCS#1: the cryptography package will not make one this small


EC_KEY = ec.generate_private_key(ec.SECP256R1()).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


@pytest.mark.parametrize(
    ("content", "problem"),
    [("not a key", "not an RSA private key"), (SMALL_KEY, "512-bit key"), (EC_KEY, "not an RSA private key")],
    ids=["not-a-key", "512-bits", "not-rsa"],
)
def test_a_sealing_key_that_cannot_be_used_is_refused(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "key.pem"
    path.write_text(content)
    with pytest.raises(ValueError, match=problem):
        Sealer.load("forwarder.test", "arc", str(path))


FRAGMENTS = ["i=1", "i=2", "i=", "i=x", "a=rsa-sha256", "a=rsa-sha1", "cv=none", "cv=pass", "cv=fail", "cv=bogus",
             "d=forwarder.test", "d=", "s=arc", "s=", "b=AAAA", "b=!!", "bh=AAAA", "h=from", "h=arc-seal", "c=simple",
             "c=bogus/x", "l=5", "l=x", "t=1", "==", ";", "i=1;i=2", "\n\t", "\xe9"]  # fmt: skip
NAMES = ["ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(NAMES), st.lists(st.sampled_from(FRAGMENTS), max_size=8)), max_size=6))
def test_hostile_arc_fields_get_a_result_never_an_exception(server: TestDNSServer, sets: list) -> None:
    fields = "".join(f"{name}: {'; '.join(parts)}\n" for name, parts in sets)
    result = verify(server, fields + MESSAGE)
    assert result.result in ("none", "fail")


CONFIG = """\
authserv_id = "mx.test"
trusted_networks = []
[dns]
nameservers = ["127.0.0.1:{port}"]
timeout = 0.5
[arc]
trusted_sealers = ["Forwarder.test"]
{arc}
[policy]
dmarc_enforce = true
"""


def engine(server: TestDNSServer, arc: str = "") -> Engine:
    config = parse(CONFIG.format(port=server.port, arc=arc))
    return Engine(config, Resolver([server.nameserver()], timeout=0.5))


def deliver(engine: Engine, raw: str) -> Edits:
    """The message through the engine as the milter passes it: a client that is not origin.test, so that
    SPF cannot align with the author's domain and DMARC fails unless something vouches for the message."""
    session = Session(ip="192.0.2.1", helo="mail.forwarder.test")
    engine.connect(session)
    envelope = Envelope(sender="list-bounces@forwarder.test")
    engine.mail(session, envelope)
    engine.rcpt(session, envelope, "carol@dest.test")
    fields, body = split_message(raw.encode())
    for name, value in fields:
        engine.header(envelope, name, value)
    engine.body(envelope, body)
    return engine.end(session, envelope)


def our_ar(edits: Edits) -> str:
    return dict(edits.prepended)["Authentication-Results"]


def test_a_trusted_forwarders_chain_saves_a_dmarc_fail_and_the_header_says_so(server, tmp_path) -> None:
    sealed = forward(server, MESSAGE, sealer(tmp_path, "forwarder.test"), "mx.forwarder.test; dmarc=pass")
    edits = deliver(engine(server), sealed)
    assert edits.decision.action == "accept"
    (arc,) = entries(our_ar(edits), "arc")
    assert (arc.result, arc.comment) == ("pass", "i=1, trusted sealer forwarder.test saw dmarc=pass")
    (dmarc,) = entries(our_ar(edits), "dmarc")
    assert (dmarc.result, dmarc.comment) == (
        "fail", "p=reject sp=reject; not enforced: trusted ARC sealer forwarder.test saw dmarc=pass")


@pytest.mark.parametrize(
    ("by", "aar", "tamper"),
    [
        ("second.test", "dmarc=pass", False),  # a sealer we do not trust
        ("forwarder.test", "dmarc=fail", False),  # trusted, but it did not see DMARC pass
        ("forwarder.test", "dmarc=pass", True),  # trusted, but the chain no longer verifies
    ],
    ids=["untrusted-sealer", "sealer-saw-dmarc-fail", "broken-chain"],
)
def test_otherwise_a_dmarc_fail_is_enforced(server, tmp_path, by: str, aar: str, tamper: bool) -> None:
    sealed = forward(server, MESSAGE, sealer(tmp_path, by), f"mx.{by}; {aar}")
    edits = deliver(engine(server), sealed.replace("there.", "there!") if tamper else sealed)
    assert (edits.decision.action, edits.decision.code, edits.decision.xcode) == ("reject", "550", "5.7.1")


def test_the_engine_seals_over_its_own_authentication_results(server: TestDNSServer, tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(KEYS["second"].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))  # fmt: skip
    sealing = f'sign = true\ndomain = "second.test"\nselector = "arc"\nkey_file = "{key}"'
    once = forward(server, MESSAGE, sealer(tmp_path, "forwarder.test"), "mx.forwarder.test; dmarc=pass")
    edits = deliver(engine(server, sealing), once)
    names = [name for name, _ in edits.prepended]
    assert names == ["ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results", "Received-SPF",
                     "Authentication-Results"]
    fields = dict(edits.prepended)
    assert fields["ARC-Authentication-Results"] == "i=2; " + fields["Authentication-Results"]
    assert "cv=pass" in fields["ARC-Seal"]
    leaving = "".join(f"{name}: {value}\n" for name, value in edits.prepended) + once
    # Downstream, dkimpy's own verifier and ours agree that the chain of two passes.
    zone = {f"arc._domainkey.{d}.test": key_record(KEYS[d].public_key()).encode() for d in ("forwarder", "second")}
    cv, _, reason = dkim.arc_verify(leaving.encode(), dnsfunc=lambda name, timeout=5: zone.get(name.decode()[:-1]))
    assert cv == dkim.CV_Pass, reason
    result = verify(server, leaving)
    assert (result.result, result.instances, result.sealer) == ("pass", 2, "second.test")


@pytest.mark.parametrize(
    ("arc", "problem"),
    [
        ("sign = true", "arc.key_file: sign = true needs the file of the private key"),
        ('sign = true\ndomain = "x y"\nselector = "arc"\nkey_file = "/nonexistent"', "arc.domain: 'x y' is not"),
        ('sign = true\ndomain = "a.test"\nselector = "arc"\nkey_file = "/nonexistent"', "arc.key_file: cannot seal"),
        ('sealer = "a.test"', "arc.sealer: unknown key"),
    ],
)
def test_an_arc_configuration_that_cannot_work_is_refused(server: TestDNSServer, arc: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        engine(server, arc)


def test_trusted_sealers_are_read_as_lower_case_domains(server: TestDNSServer) -> None:
    check = next(c for c in engine(server).checks if isinstance(c, ArcCheck))
    assert (check.trusted_sealers, check.sealer) == (frozenset({"forwarder.test"}), None)
