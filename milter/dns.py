"""The one DNS resolver shared by every check.

Checks ask `Resolver.lookup(name, rdtype, budget)` and get an `Answer` (records, CNAMEs included) or a
`DNSTempError`. The wire and the messages are dnspython's: its nameserver classes (plain DNS, UDP then TCP on
truncation; DNS over TLS through `dot.TlsNameserver`, which keeps its connection) and its CNAME chaining and
negative TTLs. What dnspython has no part for is here: each nameserver is asked once, in order, within the
per-query timeout and what is left of the caller's per-message `Budget` (so that a slow or dead DNS server
can never hold a message longer than the configured total); answers are cached for their TTL; identical
lookups in flight are shared between threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdata
import dns.rdatatype

from . import metrics
from .expiring import ExpiringLru
from .upstreams import system_nameservers

MAX_TTL = 86400


class DNSTempError(Exception):
    """A lookup could not be completed: timeout, SERVFAIL, REFUSED, budget spent, garbage."""


@dataclass(frozen=True)
class Record:
    name: str  # owner, lower case, no trailing dot
    rdtype: str  # "A", "AAAA", "CNAME", "PTR", "TXT", "MX", ...
    value: object  # str for names/addresses, tuple[bytes, ...] for TXT, (pref, name) for MX


@dataclass(frozen=True)
class Answer:
    name: str
    rdtype: str
    nxdomain: bool
    records: tuple[Record, ...]
    expires: float = float("inf")  # time.monotonic() after which the answer must be asked again

    def values(self, rdtype: str | None = None) -> list[object]:
        """Values of the records of `rdtype` (default: the type asked), after following CNAMEs."""
        want = rdtype or self.rdtype
        return [r.value for r in self.records if r.rdtype == want]


@dataclass
class Budget:
    """Total DNS time one message may spend; shared by every check of that message."""

    seconds: float
    deadline: float = field(init=False)
    queries: int = 0

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.seconds

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


class _Pending:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer: Answer | None = None
        self.error: DNSTempError | None = None


class Resolver:
    """Caching stub resolver over dnspython's nameservers; thread-safe."""

    def __init__(
        self,
        nameservers: Sequence[dns.nameserver.Nameserver] = (),
        timeout: float = 2.0,
        cache_size: int = 10000,
    ) -> None:
        self.nameservers = list(nameservers) or system_nameservers()
        self.timeout = timeout
        self._cache: ExpiringLru[tuple[str, str], Answer] = ExpiringLru(cache_size)
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._lock = threading.Lock()

    def lookup(self, name: str, rdtype: str, budget: Budget) -> Answer:
        key = (name.lower().rstrip("."), rdtype.upper())
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                metrics.DNS_CACHE_HITS.inc()
                return cached
            pending = self._pending.get(key)
            owner = pending is None
            if owner:
                pending = self._pending[key] = _Pending()
        assert pending is not None
        if not owner:
            # Someone else is asking the same question right now: wait for their answer, within our budget.
            if not pending.done.wait(max(budget.remaining(), 0)):
                raise DNSTempError(f"{key[0]}/{key[1]}: DNS budget exhausted")
            if pending.error:
                raise pending.error
            assert pending.answer is not None
            return pending.answer
        try:
            answer = self._query(key[0], key[1], budget)
        except DNSTempError as exc:
            pending.error = exc
            raise
        else:
            pending.answer = answer
            with self._lock:
                self._cache.put(key, answer, answer.expires)
            return answer
        finally:
            with self._lock:
                self._pending.pop(key, None)
            pending.done.set()

    def _query(self, name: str, rdtype: str, budget: Budget) -> Answer:
        try:
            qname = dns.name.from_text(name)
            qtype = dns.rdatatype.from_text(rdtype)
        except (dns.exception.DNSException, ValueError) as exc:
            raise DNSTempError(f"{name}/{rdtype}: cannot build query: {exc}") from exc
        last = "no nameserver answered"
        for nameserver in self.nameservers:
            remaining = budget.remaining()
            if remaining <= 0:
                metrics.DNS_TIMEOUTS.inc()
                raise DNSTempError(f"{name}/{rdtype}: DNS budget exhausted")
            budget.queries += 1
            metrics.DNS_QUERIES.inc()
            try:
                response = _ask(nameserver, dns.message.make_query(qname, qtype), self.timeout, budget)
                return _answer(name, rdtype, response)
            except dns.exception.Timeout:
                metrics.DNS_TIMEOUTS.inc()
                last = f"timeout from {nameserver}"
            except (dns.exception.DNSException, OSError, EOFError, ValueError) as exc:
                metrics.DNS_ERRORS.inc()
                last = f"{exc if isinstance(exc, _Rcode) else type(exc).__name__} from {nameserver}"
        raise DNSTempError(f"{name}/{rdtype}: {last}")


class _Rcode(dns.exception.DNSException):
    """An answer whose rcode is an error (SERVFAIL, REFUSED, ...): the next nameserver is asked."""


def _ask(
    nameserver: dns.nameserver.Nameserver, query: dns.message.QueryMessage, timeout: float, budget: Budget
) -> dns.message.Message:
    """One query to one nameserver over UDP and, if the answer was truncated, again over TCP: each is a query of
    its own with the per-query `timeout` (a slow truncated UDP answer must not leave the TCP retry no time, or a
    large SPF record fails on every nameserver alike), both within what is left of the budget."""
    try:
        return nameserver.query(query, min(timeout, budget.remaining()), None, 0, max_size=False)
    except dns.message.Truncated:
        remaining = budget.remaining()
        if remaining <= 0:
            raise dns.exception.Timeout from None
        return nameserver.query(query, min(timeout, remaining), None, 0, max_size=True)


def _answer(name: str, rdtype: str, response: dns.message.Message) -> Answer:
    """The records of the CNAME chain from `name` and what it ends in (dnspython's chaining: a loop or an overlong
    chain raises), kept for their smallest TTL (for a negative answer: the SOA's, RFC 2308)."""
    rcode = response.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise _Rcode(dns.rcode.to_text(rcode))
    assert isinstance(response, dns.message.QueryMessage)
    chain = response.resolve_chaining()
    records = tuple(
        Record(rrset.name.to_text(omit_final_dot=True).lower(), dns.rdatatype.to_text(rrset.rdtype), _value(rdata))
        for rrset in (*chain.cnames, *([chain.answer] if chain.answer is not None else []))
        for rdata in rrset
    )
    expires = time.monotonic() + min(chain.minimum_ttl, MAX_TTL)
    return Answer(name, rdtype, rcode == dns.rcode.NXDOMAIN, records, expires)


def _value(rdata: dns.rdata.Rdata) -> object:
    rtype = rdata.rdtype
    if rtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        return rdata.address  # type: ignore[attr-defined]
    if rtype in (dns.rdatatype.CNAME, dns.rdatatype.PTR):
        return rdata.target.to_text(omit_final_dot=True)  # type: ignore[attr-defined]
    if rtype in (dns.rdatatype.TXT, dns.rdatatype.SPF):
        return tuple(rdata.strings)  # type: ignore[attr-defined]
    if rtype == dns.rdatatype.MX:
        return (rdata.preference, rdata.exchange.to_text(omit_final_dot=True))  # type: ignore[attr-defined]
    return rdata.to_text()
