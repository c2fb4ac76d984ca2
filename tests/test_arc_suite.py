"""ValiMail's ARC test suite (tests/arc-suite, the 2018 draft that became RFC 8617), every case, against the
loopback DNS server: the 175 chain-validation cases through `mailwarden check --message --json`'s code path,
and the 17 sealing cases through the ARC check's sealer over the message as the milter reads it, whose ARC sets
must come out signature for signature as the suite's.

Where the draft and RFC 8617 differ the RFC is tested (tests/arc-suite/README.md lists the differences).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest
import yaml

from mailwarden.checks.arc import ArcCheck, Sealer
from mailwarden.checks.base import DnsContext, Subject
from mailwarden.checks.message import Message, read_message
from mailwarden.cli import check_report
from mailwarden.config import Config, DnsConfig
from mailwarden.dns import Budget, Resolver
from mailwarden.engine import Engine

from .dnsserver import TestDNSServer, Zone

SUITE_DIR = Path(__file__).parent / "arc-suite"
# The draft expects no result for a chain whose most recent ARC-Seal says cv=fail; RFC 8617 §5.2 (steps 3
# and 4) makes it fail. These are the three cases with an empty expected cv.
RFC_8617_FAIL = {"cv_fail_i1_as_cv_fail", "cv_fail_i2_as2_fail", "cv_fail_i2_as1_fail"}


class _AllPairs(yaml.SafeLoader):
    """Mappings as lists of pairs: the validation file repeats four test names, which a dict would merge."""


_AllPairs.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    lambda loader, node: [(loader.construct_object(k, deep=True), loader.construct_object(v, deep=True))
                          for k, v in node.value],  # fmt: skip
)


def suite_zone(records: list[tuple[str, str]]) -> Zone:
    """The suite's key records, each one TXT record in strings of at most 255 octets, as DNS carries them."""
    return {name: [("TXT", [text[i : i + 255] for i in range(0, len(text), 255)])] for name, text in records}


def validation_cases() -> list:
    out = []
    for document in yaml.load_all((SUITE_DIR / "arc-draft-validation-tests.yml").read_text(), Loader=_AllPairs):
        scenario = dict(document)
        zone = suite_zone(scenario["txt-records"])
        for index, (name, test) in enumerate(scenario["tests"]):
            test = dict(test)
            expected = (test["cv"] or "").strip().lower() or ("fail" if name in RFC_8617_FAIL else "")
            out.append(pytest.param(zone, test["message"], expected, id=f"{scenario['description']}-{index}-{name}"))
    return out


def sealing_cases() -> list:
    out = []
    for scenario in yaml.safe_load_all((SUITE_DIR / "arc-draft-sign-tests.yml").read_text()):
        zone = suite_zone(list(scenario["txt-records"].items()))
        for name, test in scenario["tests"].items():
            out.append(pytest.param(zone, scenario, test, id=name))
    return out


def test_every_case_of_the_suite_is_loaded() -> None:
    assert len(validation_cases()) == 175
    assert len(sealing_cases()) == 17


@pytest.fixture(scope="module")
def suite_dns() -> Iterator[TestDNSServer]:
    server = TestDNSServer(ttl=0).start()
    yield server
    server.stop()


def examined(message: str, check: ArcCheck) -> Message:
    """The message as the ARC check gets it at end of data: its fields, and its body streamed and hashed."""
    return read_message(message.encode(), [check]).message(Subject("192.0.2.1"), {})


def dns_context(server: TestDNSServer) -> DnsContext:
    return DnsContext(Resolver([server.nameserver()], timeout=0.5, cache_size=0), Budget(5.0))


@pytest.mark.parametrize(("zone", "message", "expected"), validation_cases())
def test_arc_validation_case(suite_dns: TestDNSServer, zone: Zone, message: str, expected: str) -> None:
    suite_dns.load(zone)
    config = Config(authserv_id="mx.test", trusted_networks=(), dns=DnsConfig(timeout=0.5, budget=5.0))
    engine = Engine(config, Resolver([suite_dns.nameserver()], timeout=0.5, cache_size=0))
    report = check_report(engine, "192.0.2.1", "mail.example.org", "jqd@d1.example.org", message.encode())
    assert report["arc"]["result"] == expected, report["headers"]["Authentication-Results"]


def tags(value: str) -> dict[bytes, bytes]:
    """A signature field's tags with all white space removed (folding is free; the values must be equal)."""
    return {k: b"".join(v.split()) for k, v in dkim.util.parse_tag_value(value.encode()).items()}


def relaxed(value: str) -> str:
    return " ".join(value.split())


def authentication_results(fields: tuple[tuple[bytes, bytes], ...], authserv_id: str) -> str:
    """The suite's Authentication-Results of the sealing ADMD as one field, standing in for our own."""
    entries = []
    for name, value in fields:
        text = value.decode().strip()
        if name.lower() == b"authentication-results" and text.split(";")[0].strip() == authserv_id:
            entries += [part.strip() for part in text.split(";")[1:]]
    return "; ".join([authserv_id, *entries])


@pytest.mark.parametrize(("zone", "scenario", "test"), sealing_cases())
def test_arc_sealing_case(suite_dns: TestDNSServer, tmp_path: Path, zone: Zone, scenario: dict, test: dict) -> None:
    suite_dns.load(zone)
    key_file = tmp_path / "arc.key"
    key_file.write_text(scenario["privatekey"])
    sealer = Sealer.load(scenario["domain"], scenario["sel"], str(key_file))
    check = ArcCheck(sealer=sealer)
    message = examined(test["message"], check)
    chain = check.run(message, dns_context(suite_dns))
    ar = authentication_results(message.fields, test["srv-id"])
    claimed = next((part.split("=")[1] for part in ar.split("; ") if part.startswith("arc=")), None)
    assert claimed in (None, chain.result), chain.reason  # the sealing ADMD's verdict is the one we reach
    signed = [name.encode() for name in test["sig-headers"].split(":")]
    sealed = dict(sealer.seal(message.fields, message.digests, ar, chain, test["t"], signed))
    if not test["AS"].strip():
        assert sealed == {}  # RFC 8617 §5.1: a chain whose last seal says cv=fail is not sealed again
        return
    assert tags(sealed["ARC-Seal"]) == tags(test["AS"])
    assert tags(sealed["ARC-Message-Signature"]) == tags(test["AMS"])
    assert relaxed(sealed["ARC-Authentication-Results"]) == relaxed(test["AAR"])
