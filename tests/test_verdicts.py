"""Check results are reused while the DNS answers they were computed from are valid, and never a temperror."""

from __future__ import annotations

import time

import pytest

from mailwarden.config import Config, DnsConfig
from mailwarden.dns import Resolver
from mailwarden.engine import Engine
from mailwarden.session import Envelope, Session

from .dnsserver import TestDNSServer, reverse_name

ZONE = {
    reverse_name("192.0.2.1"): [("PTR", "mx.sender.test")],
    "mx.sender.test": [("A", "192.0.2.1"), ("TXT", "v=spf1 a -all")],
    "sender.test": [("TXT", "v=spf1 include:provider.test -all")],
    "provider.test": [("TXT", "v=spf1 ip4:192.0.2.0/24 -all")],
    "down.test": [("TIMEOUT", None)],
}


@pytest.fixture
def server():
    server = TestDNSServer(ZONE, ttl=1).start()
    yield server
    server.stop()


def engine_for(server: TestDNSServer, cache_size: int = 1000) -> Engine:
    dns = DnsConfig(timeout=0.3, budget=1.0, cache_size=cache_size)
    config = Config(trusted_networks=(), dns=dns)
    return Engine(config, Resolver([server.nameserver()], timeout=dns.timeout, cache_size=0))


def results_of(engine: Engine, sender: str) -> dict[str, str]:
    session = Session(ip="192.0.2.1", helo="mx.sender.test")
    engine.connect(session)
    envelope = Envelope(sender=sender)
    engine.mail(session, envelope)
    return {check.name: result.result for check, result in engine.results(session, envelope)}


def test_a_repeat_client_gets_the_same_results_without_dns_until_the_first_answer_expires(server):
    engine = engine_for(server)  # the resolver caches nothing: every query not saved reaches the server
    first = results_of(engine, "alice@sender.test")
    asked = len(server.queries)
    assert first == {"iprev": "pass", "spf-helo": "pass", "spf-mailfrom": "pass"}
    assert asked >= 5
    assert results_of(engine, "alice@sender.test") == first
    assert len(server.queries) == asked
    time.sleep(1.1)  # the zone's TTL
    assert results_of(engine, "alice@sender.test") == first
    assert len(server.queries) == 2 * asked


def test_another_sender_is_checked_again(server):
    engine = engine_for(server)
    results_of(engine, "alice@sender.test")
    asked = len(server.queries)
    assert results_of(engine, "bob@provider.test")["spf-mailfrom"] == "pass"
    assert ("provider.test", "TXT") in server.queries[asked:]


def test_a_temperror_is_never_reused(server):
    engine = engine_for(server)
    assert results_of(engine, "alice@down.test")["spf-mailfrom"] == "temperror"
    asked = len(server.queries)
    assert results_of(engine, "alice@down.test")["spf-mailfrom"] == "temperror"
    assert ("down.test", "TXT") in server.queries[asked:]


def test_a_cache_size_of_zero_turns_reuse_off(server):
    engine = engine_for(server, cache_size=0)
    results_of(engine, "alice@sender.test")
    asked = len(server.queries)
    results_of(engine, "alice@sender.test")
    assert len(server.queries) == 2 * asked
