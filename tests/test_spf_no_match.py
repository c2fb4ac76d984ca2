"""RFC 7208's lookups whose failure means "no match", not an error for the whole check: the PTR lookup of a
`ptr` mechanism and the address lookup of each of its names (§5.5), the validated name of the `%{p}` macro
("unknown", §7.3) and the `exp=` text (§6.2). pyspf 2.0.14 alone answers temperror for the first three."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import spf as pyspf

from mailwarden.config import Config, DnsConfig
from mailwarden.dns import Resolver
from mailwarden.engine import Engine

from .dnsserver import TestDNSServer, reverse_name

BUDGET = 2.0
ZONE = {
    reverse_name("192.0.2.1"): [("SERVFAIL", None)],  # PTR lookup: DNS error
    reverse_name("192.0.2.2"): [("TIMEOUT", None)],  # PTR lookup: no answer
    reverse_name("192.0.2.3"): [("PTR", "hang.test"), ("PTR", "mx.ptr.test")],  # first name's A lookup fails
    "hang.test": [("TIMEOUT", None)],
    "mx.ptr.test": [("A", "192.0.2.3")],
    "ptr.test": [("TXT", "v=spf1 ptr -all")],
    "ptr-neutral.test": [("TXT", "v=spf1 ptr ?all")],
    "ptr-then-ip.test": [("TXT", "v=spf1 ptr ip4:192.0.2.0/24 -all")],
    "macro.test": [("TXT", "v=spf1 exists:%{p}.names.macro.test -all")],
    "unknown.names.macro.test": [("A", "127.0.0.2")],
    "exp.test": [("TXT", "v=spf1 -all exp=why.exp.test")],
    "why.exp.test": [("SERVFAIL", None)],
}


@pytest.fixture(scope="module")
def server() -> Iterator[TestDNSServer]:
    server = TestDNSServer(ZONE).start()
    yield server
    server.stop()


def mailfrom(server: TestDNSServer, ip: str, domain: str):
    config = Config(trusted_networks=(), dns=DnsConfig(timeout=0.3, budget=BUDGET))
    engine = Engine(config, Resolver([server.nameserver()], timeout=0.3))
    _, envelope = engine.check(ip, "helo.test", f"someone@{domain}")
    return envelope.results["spf-mailfrom"]


@pytest.mark.parametrize(
    ("ip", "domain", "result"),
    [("192.0.2.1", "ptr.test", "fail"),  # the PTR lookup fails: ptr does not match, -all does
     ("192.0.2.2", "ptr.test", "fail"),
     ("192.0.2.1", "ptr-neutral.test", "neutral"),
     ("192.0.2.1", "ptr-then-ip.test", "pass"),  # evaluation goes on with the next mechanism, which matches
     ("192.0.2.3", "ptr.test", "pass")],  # the name whose A lookup fails is skipped, the next one validates
)  # fmt: skip
def test_a_failed_ptr_lookup_makes_the_mechanism_not_match(server, ip, domain, result):
    start = time.monotonic()
    assert mailfrom(server, ip, domain).result == result
    assert time.monotonic() - start < BUDGET + 0.5


def test_p_macro_is_unknown_when_the_ptr_lookup_fails(server):
    result = mailfrom(server, "192.0.2.1", "macro.test")
    assert (result.result, result.mechanism) == ("pass", "exists:%{p}.names.macro.test")


def test_a_failed_exp_lookup_leaves_the_default_explanation(server):
    result = mailfrom(server, "192.0.2.1", "exp.test")
    assert (result.result, result.explanation) == ("fail", pyspf.EXPLANATIONS["fail"])
