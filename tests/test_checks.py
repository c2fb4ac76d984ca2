"""IPREV and SPF checks against the loopback DNS server, results exactly as RFC 8601 §2.7.3 / RFC 7208."""

from __future__ import annotations

import pytest
import spf as pyspf

from mailwarden.checks.base import DnsContext, Subject
from mailwarden.checks.iprev import IprevCheck
from mailwarden.checks.spf import SpfCheck, _current_dns
from mailwarden.config import Config, DnsConfig
from mailwarden.dns import Budget, Resolver
from mailwarden.engine import Engine
from mailwarden.upstreams import Upstream

from .dnsserver import TestDNSServer, reverse_name

ZONE = {
    reverse_name("192.0.2.1"): [("PTR", "host.test")],
    "host.test": [("A", "192.0.2.1")],
    reverse_name("192.0.2.2"): [("PTR", "elsewhere.test")],
    "elsewhere.test": [("A", "192.0.2.99")],
    reverse_name("192.0.2.3"): [("PTR", "nxname.test")],
    reverse_name("192.0.2.4"): [("TIMEOUT", None)],
    reverse_name("192.0.2.5"): [("SERVFAIL", None)],
    reverse_name("192.0.2.6"): [("PTR", "hang.test")],
    "hang.test": [("TIMEOUT", None)],
    reverse_name("192.0.2.7"): [("TXT", "no PTR here")],  # the name exists, but has no PTR
    # RFC 7208 §5.5: the first PTR name's A lookup fails, the second validates.
    reverse_name("192.0.2.8"): [("PTR", "hang.test"), ("PTR", "ptr-ok.test")],
    "ptr-ok.test": [("A", "192.0.2.8")],
    "ptr.test": [("TXT", "v=spf1 ptr:ptr-ok.test -all")],
    reverse_name("2001:db8::1"): [("PTR", "v6.test")],
    "v6.test": [("AAAA", "2001:db8::1"), ("TXT", "v=spf1 ip6:2001:db8::/32 -all")],
    "host-spf.test": [("TXT", "v=spf1 ip4:192.0.2.1 -all")],
}


@pytest.fixture(scope="module")
def server():
    server = TestDNSServer(ZONE).start()
    yield server
    server.stop()


@pytest.fixture
def dns(server) -> DnsContext:
    return DnsContext(Resolver([server.nameserver()], timeout=0.3), Budget(5))


@pytest.mark.parametrize(
    ("ip", "result"),
    [
        ("192.0.2.1", "pass"),
        ("192.0.2.2", "fail"),  # PTR name does not map back
        ("192.0.2.3", "fail"),  # PTR name does not exist
        ("192.0.2.4", "temperror"),  # PTR lookup times out
        ("192.0.2.5", "temperror"),  # SERVFAIL
        ("192.0.2.6", "temperror"),  # the only forward lookup times out
        ("192.0.2.7", "permerror"),  # no PTR data
        ("192.0.2.9", "permerror"),  # NXDOMAIN for the reverse name
        ("2001:db8::1", "pass"),
        ("not-an-ip", "permerror"),
    ],
)
def test_iprev_results_follow_rfc_8601(dns, ip, result):
    assert IprevCheck().run(Subject(ip=ip), dns).result == result


def test_iprev_pass_reports_the_confirmed_name(dns):
    result = IprevCheck().run(Subject(ip="192.0.2.1"), dns)
    assert (result.names, result.ip) == (("host.test",), "192.0.2.1")


def test_iprev_looks_up_at_most_ten_names(server, dns):
    many = {reverse_name("192.0.2.50"): [("PTR", f"n{i}.test") for i in range(15)]}
    server.load({**ZONE, **many})
    try:
        before = len(server.queries)
        assert IprevCheck().run(Subject(ip="192.0.2.50"), dns).result == "fail"
        forward = [q for q in server.queries[before:] if q[1] == "A"]
        assert len(forward) == 10
    finally:
        server.load(ZONE)


def test_spf_ptr_skips_a_name_whose_address_lookup_fails(dns):
    """RFC 7208 §5.5; pyspf 2.0.14 alone answers temperror here."""
    subject = Subject(ip="192.0.2.8", helo="ptr.test", sender="user@ptr.test")
    assert SpfCheck("mailfrom").run(subject, dns).result == "pass"
    token = _current_dns.set(dns)
    try:
        assert pyspf.query(i="192.0.2.8", s="user@ptr.test", h="ptr.test").check()[0] == "temperror"
    finally:
        _current_dns.reset(token)


def test_helo_and_mailfrom_results_are_kept_apart(dns):
    subject = Subject(ip="192.0.2.1", helo="host-spf.test", sender="someone@v6.test")
    helo, mailfrom = SpfCheck("helo").run(subject, dns), SpfCheck("mailfrom").run(subject, dns)
    assert (helo.identity, helo.sender, helo.result) == ("helo", "postmaster@host-spf.test", "pass")
    assert (mailfrom.identity, mailfrom.domain, mailfrom.result) == ("mailfrom", "v6.test", "fail")


@pytest.mark.parametrize("helo", ["[192.0.2.1]", "localhost", "a..b", "bad helo; x=y", "x" * 300, ""])
def test_malformed_helo_gives_none_without_a_query(server, dns, helo):
    before = len(server.queries)
    result = SpfCheck("helo").run(Subject(ip="192.0.2.1", helo=helo), dns)
    assert result.result == "none" and result.problem == "malformed helo domain"
    assert len(server.queries) == before


def test_ipv6_client_is_checked_with_aaaa_and_ip6(dns):
    result = SpfCheck("mailfrom").run(Subject(ip="2001:db8::1", helo="v6.test", sender="a@v6.test"), dns)
    assert (result.result, result.mechanism) == ("pass", "ip6:2001:db8::/32")


def test_dns_server_down_gives_temperror_verdicts_within_the_budget():
    dns = DnsConfig(nameservers=(Upstream("127.0.0.1", 9),), timeout=0.2, budget=1.0)
    config = Config(trusted_networks=(), dns=dns)
    session, envelope = Engine.from_config(config).check("192.0.2.1", "host.test", "user@host-spf.test")
    assert session.results["iprev"].result == "temperror"
    assert {r.result for r in envelope.results.values()} == {"temperror"}


def test_an_exception_inside_a_check_becomes_temperror_not_a_crash(dns):
    class Broken(SpfCheck):
        def run(self, subject, dns):
            raise RuntimeError("bug")

    engine = Engine(Config(trusted_networks=()), dns.resolver, checks=(Broken("mailfrom"),))
    _, envelope = engine.check("192.0.2.1", "host.test", "a@host.test")
    result = envelope.results["spf-mailfrom"]
    assert (result.result, result.identity, result.domain) == ("temperror", "mailfrom", "host.test")
    assert result.reason == "internal error: bug"
