"""The shared resolver against the loopback DNS server: answers, CNAMEs, truncation, faults, cache, budget."""

from __future__ import annotations

import time

import pytest
from dns.nameserver import Do53Nameserver
from prometheus_client import REGISTRY

from mailwarden.dns import Budget, DNSTempError, Resolver

from .dnsserver import TestDNSServer

ZONE = {
    "a.test": [("A", "192.0.2.1")],
    "alias.test": [("CNAME", "a.test")],
    "loop1.test": [("CNAME", "loop2.test")],
    "loop2.test": [("CNAME", "loop1.test")],
    "big.test": [("TXT", f"v=spf1 ip4:192.0.2.{i} -all") for i in range(40)],
    "hang.test": [("TIMEOUT", None)],
    "servfail.test": [("SERVFAIL", None)],
    "refused.test": [("REFUSED", None)],
    "garbage.test": [("GARBAGE", None)],
}


@pytest.fixture(scope="module")
def server():
    server = TestDNSServer(ZONE, ttl=300).start()
    yield server
    server.stop()


@pytest.fixture
def resolver(server):
    return Resolver([server.nameserver()], timeout=1.0)


def test_answer_follows_cname_chain(resolver):
    answer = resolver.lookup("alias.test", "A", Budget(5))
    assert answer.values() == ["192.0.2.1"]
    assert answer.values("CNAME") == ["a.test"]


def test_nxdomain_is_an_answer_not_an_error(resolver):
    answer = resolver.lookup("nowhere.test", "A", Budget(5))
    assert answer.nxdomain and answer.values() == []


def test_truncated_udp_answer_is_retried_over_tcp(resolver, server):
    answer = resolver.lookup("big.test", "TXT", Budget(5))
    assert len(answer.values()) == 40


def test_tcp_retry_after_a_slow_truncated_answer_gets_a_query_timeout_of_its_own(server):
    resolver = Resolver([server.nameserver()], timeout=2.0)
    server.resolver.delay = {"udp": 1.4, "tcp": 0.9}
    try:
        answer = resolver.lookup("big.test", "TXT", Budget(5))
    finally:
        server.resolver.delay = {}
    assert len(answer.values()) == 40


@pytest.mark.parametrize("name", ["hang.test", "servfail.test", "refused.test", "garbage.test", "loop1.test"])
def test_faults_are_temporary_errors(resolver, name):
    with pytest.raises(DNSTempError):
        resolver.lookup(name, "A", Budget(5))


def test_answers_are_cached_for_their_ttl(resolver, server):
    before = len(server.queries)
    hits = REGISTRY.get_sample_value("mailwarden_dns_cache_hits_total")
    for _ in range(3):
        resolver.lookup("a.test", "A", Budget(5))
    assert len(server.queries) == before + 1
    assert REGISTRY.get_sample_value("mailwarden_dns_cache_hits_total") == hits + 2


def test_zero_ttl_answers_are_not_reused(server):
    server.load(ZONE, ttl=0)
    try:
        resolver = Resolver([server.nameserver()], timeout=0.3)
        before = len(server.queries)
        resolver.lookup("a.test", "A", Budget(5))
        resolver.lookup("a.test", "A", Budget(5))
        assert len(server.queries) == before + 2
    finally:
        server.load(ZONE, ttl=300)


def test_budget_bounds_the_time_spent_on_a_dead_server(server):
    resolver = Resolver([server.nameserver()], timeout=2.0)
    budget = Budget(0.4)
    start = time.monotonic()
    with pytest.raises(DNSTempError):
        resolver.lookup("hang.test", "A", budget)
    with pytest.raises(DNSTempError, match="budget exhausted"):
        resolver.lookup("hang.test", "TXT", budget)
    assert time.monotonic() - start < 1.5


def test_next_nameserver_is_tried_when_the_first_is_dead(server):
    resolver = Resolver([Do53Nameserver("127.0.0.1", 9), server.nameserver()], timeout=0.2)
    assert resolver.lookup("a.test", "A", Budget(5)).values() == ["192.0.2.1"]
