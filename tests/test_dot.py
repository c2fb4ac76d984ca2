"""DNS over TLS against real DoT endpoints on loopback in front of the test DNS server, with certificates the
tests make: Debian's unbound (tests/unbound.py) and the tests' TLS relay (tests/dotserver.py), which also
plays a broken upstream. The same answers and verdicts as over UDP, one handshake for many lookups,
pipelining, refused certificates, a killed upstream reconnected, and every fault ending in a result within
the budget, never an exception."""

from __future__ import annotations

import gc
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dns.nameserver import Do53Nameserver
from prometheus_client import REGISTRY

from mailwarden.checks.base import DnsContext, Subject
from mailwarden.checks.iprev import IprevCheck
from mailwarden.dns import Budget, DNSTempError, Resolver
from mailwarden.dot import TlsNameserver, tls_context

from .dnsserver import TestDNSServer, free_port, reverse_name
from .dotserver import DoTRelay
from .reliability.hostiledns import Blackhole
from .tlscerts import TestCA
from .unbound import UnboundDoT

AUTH_NAME = "dns.test"
TIMEOUT = 0.4

ZONE = {
    "a.test": [("A", "192.0.2.1"), ("AAAA", "2001:db8::1")],
    "alias.test": [("CNAME", "a.test")],
    "dangling.test": [("CNAME", "nowhere.test")],
    "loop1.test": [("CNAME", "loop2.test")],
    "loop2.test": [("CNAME", "loop1.test")],
    "text.test": [("TXT", ["v=spf1 ", "ip4:192.0.2.1 -all"]), ("MX", (10, "a.test"))],
    "big.test": [("TXT", f"v=spf1 ip4:192.0.2.{i} -all") for i in range(40)],  # over 512 bytes: TCP over UDP
    "hang.test": [("TIMEOUT", None)],
    "servfail.test": [("SERVFAIL", None)],
    # IPREV, one client per RFC 8601 result
    reverse_name("192.0.2.1"): [("PTR", "a.test")],
    reverse_name("192.0.2.2"): [("PTR", "a.test")],  # a.test does not map back to .2
    reverse_name("192.0.2.3"): [("PTR", "nowhere.test")],
    reverse_name("192.0.2.4"): [("TIMEOUT", None)],
    reverse_name("192.0.2.5"): [("SERVFAIL", None)],
    reverse_name("192.0.2.6"): [("PTR", "hang.test")],
    reverse_name("192.0.2.7"): [("TXT", "no PTR here")],
    reverse_name("192.0.2.8"): [("PTR", "hang.test"), ("PTR", "back.test")],
    "back.test": [("A", "192.0.2.8")],
    reverse_name("2001:db8::1"): [("PTR", "a.test")],
}
LOOKUPS = [("a.test", "A"), ("a.test", "AAAA"), ("alias.test", "A"), ("dangling.test", "A"), ("nowhere.test", "A"),
           ("a.test", "TXT"), ("text.test", "TXT"), ("text.test", "MX"), ("big.test", "TXT"),
           (reverse_name("192.0.2.8"), "PTR")]  # fmt: skip
IPREV = {"192.0.2.1": "pass", "192.0.2.2": "fail", "192.0.2.3": "fail", "192.0.2.4": "temperror",
         "192.0.2.5": "temperror", "192.0.2.6": "temperror", "192.0.2.7": "permerror", "192.0.2.9": "permerror",
         "192.0.2.8": "pass", "2001:db8::1": "pass"}  # fmt: skip


@pytest.fixture(scope="module")
def server() -> Iterator[TestDNSServer]:
    server = TestDNSServer(ZONE, ttl=60).start()
    yield server
    server.stop()


@pytest.fixture
def relay(server: TestDNSServer, test_ca: TestCA) -> Iterator[DoTRelay]:
    """A fresh DoT endpoint for each test: its counters are the test's own."""
    relay = DoTRelay(server.port, test_ca.issue(AUTH_NAME)).start()
    yield relay
    relay.close()


@pytest.fixture(params=["unbound", "relay"])
def endpoint(request: pytest.FixtureRequest, server: TestDNSServer, test_ca: TestCA,
             tmp_path: Path) -> Iterator[UnboundDoT | DoTRelay]:  # fmt: skip
    """A real DoT server (Debian's unbound, forwarding to the test server) or the tests' relay."""
    cert = test_ca.issue(AUTH_NAME)
    endpoint = UnboundDoT(server.port, cert, tmp_path) if request.param == "unbound" else DoTRelay(server.port, cert)
    yield endpoint.start()
    endpoint.close()


def tls_connections() -> float:
    return REGISTRY.get_sample_value("mailwarden_dns_tls_connections_total") or 0.0


def tls(relay: UnboundDoT | DoTRelay | int, ca: TestCA | None, name: str = AUTH_NAME) -> TlsNameserver:
    port = relay if isinstance(relay, int) else relay.port
    return TlsNameserver("127.0.0.1", port, name, tls_context(str(ca.pem) if ca else ""))


@pytest.fixture
def log() -> Iterator[list[str]]:
    """The event names mailwarden logs during the test."""
    events: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: events.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("mailwarden")
    logger.addHandler(handler)
    yield events
    logger.removeHandler(handler)


def test_answers_over_tls_are_the_answers_over_udp(server, endpoint, test_ca):
    over_udp = Resolver([server.nameserver()], timeout=TIMEOUT)
    over_tls = Resolver([tls(endpoint, test_ca)], timeout=TIMEOUT)
    for name, rdtype in LOOKUPS:
        udp, dot = over_udp.lookup(name, rdtype, Budget(5)), over_tls.lookup(name, rdtype, Budget(5))
        assert dot.records == udp.records, (name, rdtype)
        # The test server leaves NOERROR on a CNAME to a name that does not exist; unbound, chasing the CNAME
        # itself, says NXDOMAIN as RFC 6604 has it. Either way: no address.
        assert dot.nxdomain == udp.nxdomain or name == "dangling.test", (name, rdtype)
    assert len(over_tls.lookup("big.test", "TXT", Budget(5)).values()) == 40
    for name in ("hang.test", "servfail.test", "loop1.test"):
        with pytest.raises(DNSTempError):
            over_tls.lookup(name, "A", Budget(5))


def test_iprev_verdicts_over_tls_are_the_verdicts_over_udp(server, endpoint, test_ca):
    for nameserver in (server.nameserver(), tls(endpoint, test_ca)):
        resolver = Resolver([nameserver], timeout=TIMEOUT)
        verdicts = {ip: IprevCheck().run(Subject(ip=ip), DnsContext(resolver, Budget(5))).result for ip in IPREV}
        assert verdicts == IPREV, nameserver


def test_one_handshake_serves_every_lookup_in_turn(relay, test_ca):
    resolver = Resolver([tls(relay, test_ca)], timeout=TIMEOUT)
    connections = tls_connections()
    for i in range(50):
        resolver.lookup(f"n{i}.test", "A", Budget(5))
    assert (relay.handshakes, relay.queries) == (1, 50)
    assert tls_connections() == connections + 1


def test_one_connection_to_unbound_serves_lookups_in_turn_and_at_once(endpoint, test_ca):
    resolver = Resolver([tls(endpoint, test_ca)], timeout=2.0)
    connections = tls_connections()
    for i in range(20):
        assert resolver.lookup(f"n{i}.test", "A", Budget(5)).nxdomain
    threads = [threading.Thread(target=resolver.lookup, args=(f"p{i}.test", "A", Budget(5))) for i in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tls_connections() == connections + 1


def test_concurrent_lookups_are_pipelined_on_one_connection(relay, test_ca):
    resolver = Resolver([tls(relay, test_ca)], timeout=2.0)
    relay.delay = 0.05  # every answer late, so that the queries of all threads are on the wire together
    answers: dict[int, list[object]] = {}

    def lookup(i: int) -> None:
        answers[i] = resolver.lookup("a.test" if i % 2 else f"n{i}.test", "A", Budget(5)).values()

    threads = [threading.Thread(target=lookup, args=(i,)) for i in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == {i: ["192.0.2.1"] if i % 2 else [] for i in range(30)}
    assert relay.handshakes == 1
    assert relay.most_in_flight > 10
    assert relay.queries == 16  # a.test asked once: the other 14 threads shared the lookup in flight


@pytest.mark.parametrize("bad", ["other name", "expired", "unknown CA"])
def test_a_refused_certificate_is_logged_once_and_the_next_upstream_answers(server, test_ca, tmp_path, log, bad):
    if bad == "unknown CA":
        cert = TestCA(tmp_path, "someone else's CA").issue(AUTH_NAME)
    else:
        cert = test_ca.issue("other.test" if bad == "other name" else AUTH_NAME, expired=bad == "expired")
    impostor = DoTRelay(server.port, cert).start()
    good = DoTRelay(server.port, test_ca.issue(AUTH_NAME)).start()
    try:
        resolver = Resolver([tls(impostor, test_ca), tls(good, test_ca)], timeout=TIMEOUT)
        for i in range(5):
            assert resolver.lookup(f"n{i}.test", "A", Budget(5)).nxdomain
        assert impostor.queries == 0 and impostor.handshakes == 0  # not a single query reached it
        assert (good.handshakes, good.queries) == (1, 5)
        assert log.count("dns-tls-refused") == 1
    finally:
        impostor.close()
        good.close()


def test_without_the_private_ca_the_upstream_is_refused(relay):
    resolver = Resolver([tls(relay, None)], timeout=TIMEOUT)
    with pytest.raises(DNSTempError, match="SSLCertVerificationError"):
        resolver.lookup("a.test", "A", Budget(5))
    assert relay.queries == 0


@pytest.mark.parametrize("fault", ["close-mid-answer", "wrong-id", "slow"])
def test_a_broken_upstream_gives_a_temporary_error_within_the_budget(relay, test_ca, fault):
    relay.fault, relay.delay = (fault, 0.0) if fault != "slow" else ("", 5.0)
    resolver = Resolver([tls(relay, test_ca)], timeout=TIMEOUT)
    budget = Budget(1.0)
    start = time.monotonic()
    with pytest.raises(DNSTempError):
        resolver.lookup("a.test", "A", budget)
    with pytest.raises(DNSTempError):
        resolver.lookup("a.test", "AAAA", budget)
    assert time.monotonic() - start < budget.seconds + 0.3
    relay.fault, relay.delay = "", 0.0
    assert resolver.lookup("a.test", "TXT", Budget(5)).values() == []  # the same resolver works again


@pytest.mark.parametrize("fault", ["close-mid-answer", "wrong-id", "slow", "down", "blackhole"])
def test_the_next_upstream_answers_when_the_first_is_broken(server, relay, test_ca, fault):
    blackhole = Blackhole()
    first = {"down": free_port(), "blackhole": blackhole.port}.get(fault, relay)
    if fault in ("close-mid-answer", "wrong-id"):
        relay.fault = fault
    elif fault == "slow":
        relay.delay = 5.0
    try:
        resolver = Resolver([tls(first, test_ca), server.nameserver()], timeout=TIMEOUT)
        start = time.monotonic()
        assert resolver.lookup("a.test", "A", Budget(2)).values() == ["192.0.2.1"]
        assert time.monotonic() - start < TIMEOUT + 0.3
    finally:
        blackhole.close()


def test_a_killed_upstream_is_reconnected_when_it_is_back(endpoint, test_ca):
    resolver = Resolver([tls(endpoint, test_ca)], timeout=TIMEOUT)
    connections = tls_connections()
    assert resolver.lookup("a.test", "A", Budget(5)).values() == ["192.0.2.1"]
    endpoint.stop()
    with pytest.raises(DNSTempError):
        resolver.lookup("a.test", "AAAA", Budget(5))
    endpoint.start()
    assert resolver.lookup("a.test", "AAAA", Budget(5)).values() == ["2001:db8::1"]
    assert tls_connections() == connections + 2


def test_a_connection_that_stopped_answering_is_replaced(relay, test_ca):
    relay.fault = "mute"  # the connection opened now takes queries and never answers, and is never closed
    resolver = Resolver([tls(relay, test_ca)], timeout=TIMEOUT)
    with pytest.raises(DNSTempError, match="timeout"):
        resolver.lookup("a.test", "A", Budget(5))
    relay.fault = ""
    assert resolver.lookup("a.test", "A", Budget(5)).values() == ["192.0.2.1"]
    assert relay.handshakes == 2


def test_an_upstream_closing_a_kept_connection_costs_no_lookup(relay, test_ca, log):
    relay.fault = "one-answer"  # each connection's second query finds it closing (an idle close crossing it)
    resolver = Resolver([tls(relay, test_ca)], timeout=TIMEOUT)
    for i in range(10):
        assert resolver.lookup(f"n{i}.test", "A", Budget(5)).nxdomain
    assert relay.handshakes == 10
    assert [e for e in log if e.startswith("dns-tls")] == []


def test_a_discarded_resolver_closes_its_connection(relay, test_ca):
    resolver = Resolver([tls(relay, test_ca)], timeout=TIMEOUT)
    resolver.lookup("a.test", "A", Budget(5))
    reader = next(t for t in threading.enumerate() if t.name.startswith("dot-reader") and str(relay.port) in t.name)
    del resolver
    gc.collect()
    reader.join(2)
    assert not reader.is_alive()


def test_plain_and_tls_upstreams_are_asked_in_order(server, relay, test_ca):
    resolver = Resolver([Do53Nameserver("127.0.0.1", free_port()), tls(relay, test_ca)], timeout=TIMEOUT)
    assert resolver.lookup("a.test", "A", Budget(5)).values() == ["192.0.2.1"]
    assert relay.queries == 1


def test_check_command_asks_a_tls_upstream_and_reports_what_udp_gives(server, endpoint, test_ca, tmp_path):
    config = tmp_path / "mailwarden.toml"
    config.write_text(f'[dns]\ntls_ca_file = "{test_ca.pem}"\n')
    reports = []
    for dns in (server.address, f"tls://127.0.0.1:{endpoint.port}#{AUTH_NAME}"):
        proc = subprocess.run([sys.executable, "-m", "mailwarden.cli", "check", "--ip", "192.0.2.1", "--helo", "a.test",
                               "--sender", "someone@text.test", "--dns", dns, "--config", str(config), "--json"],
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        reports.append(json.loads(proc.stdout))
    assert reports[1] == reports[0]
    assert (reports[1]["iprev"]["result"], reports[1]["spf"]["mailfrom"]["result"]) == ("pass", "pass")
