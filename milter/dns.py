"""The one DNS resolver shared by every check.

Checks ask `Resolver.lookup(name, rdtype, budget)` and get an `Answer` (records, CNAMEs included) or a
`DNSTempError`. The resolver talks to the configured nameservers directly (UDP, TCP on truncation), caches
answers for their TTL (negative answers for the SOA minimum), shares identical in-flight lookups between
threads, and charges every wire query to the caller's per-message `Budget` so that a slow or dead DNS
server can never hold a message longer than the configured total.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from . import metrics
from .expiring import ExpiringLru

NEGATIVE_TTL_DEFAULT = 60
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


def parse_nameserver(spec: str) -> tuple[str, int]:
    """'192.0.2.1', '192.0.2.1:5353', '[2001:db8::1]:53' or '2001:db8::1' -> (host, port)."""
    spec = spec.strip()
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif spec.count(":") == 1:
        host, port = spec.split(":")
    else:
        host, port = spec, ""
    if not host:
        raise ValueError(f"nameserver {spec!r} has no address")
    ipaddress.ip_address(host)  # raises ValueError with a clear message for names and garbage
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"nameserver {spec!r} has an invalid port")
    return host, int(port) if port else 53


def system_nameservers() -> list[tuple[str, int]]:
    """The nameservers of /etc/resolv.conf (port 53)."""
    try:
        return [(ns, 53) for ns in dns.resolver.Resolver().nameservers]
    except dns.resolver.NoResolverConfiguration:
        return [("127.0.0.1", 53)]


class _Pending:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer: Answer | None = None
        self.error: DNSTempError | None = None


class Resolver:
    """Caching stub resolver over dnspython's wire functions; thread-safe."""

    def __init__(
        self,
        nameservers: list[tuple[str, int]] | None = None,
        timeout: float = 2.0,
        cache_size: int = 10000,
    ) -> None:
        self.nameservers = nameservers or system_nameservers()
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
        for host, port in self.nameservers:
            remaining = budget.remaining()
            if remaining <= 0:
                metrics.DNS_TIMEOUTS.inc()
                raise DNSTempError(f"{name}/{rdtype}: DNS budget exhausted")
            query = dns.message.make_query(qname, qtype)
            budget.queries += 1
            metrics.DNS_QUERIES.inc()
            try:
                response, _ = dns.query.udp_with_fallback(
                    query,
                    host,
                    timeout=min(self.timeout, remaining),
                    port=port,
                    ignore_unexpected=True,
                    ignore_errors=True,
                )
            except dns.exception.Timeout:
                metrics.DNS_TIMEOUTS.inc()
                last = f"timeout from {host}:{port}"
                continue
            except (dns.exception.DNSException, OSError, EOFError, ValueError) as exc:
                metrics.DNS_ERRORS.inc()
                last = f"{type(exc).__name__} from {host}:{port}"
                continue
            rcode = response.rcode()
            if rcode == dns.rcode.NXDOMAIN:
                expires = time.monotonic() + _negative_ttl(response)
                return Answer(name, rdtype, True, self._records(response), expires)
            if rcode != dns.rcode.NOERROR:
                metrics.DNS_ERRORS.inc()
                last = f"{dns.rcode.to_text(rcode)} from {host}:{port}"
                continue
            records = self._records(response)
            if _cname_loop(name, records):
                metrics.DNS_ERRORS.inc()
                raise DNSTempError(f"{name}/{rdtype}: CNAME loop")
            ttl = min((rrset.ttl for rrset in response.answer), default=None)
            return Answer(name, rdtype, False, records, time.monotonic() + _clamp_ttl(ttl, response))
        raise DNSTempError(f"{name}/{rdtype}: {last}")

    @staticmethod
    def _records(response: dns.message.Message) -> tuple[Record, ...]:
        out: list[Record] = []
        for rrset in response.answer:
            owner = rrset.name.to_text(omit_final_dot=True).lower()
            rtype = dns.rdatatype.to_text(rrset.rdtype)
            for rdata in rrset:
                out.append(Record(owner, rtype, _value(rtype, rdata)))
        return tuple(out)


def _value(rtype: str, rdata: object) -> object:
    if rtype in ("A", "AAAA"):
        return rdata.address  # type: ignore[attr-defined]
    if rtype in ("CNAME", "PTR"):
        return rdata.target.to_text(omit_final_dot=True)  # type: ignore[attr-defined]
    if rtype in ("TXT", "SPF"):
        return tuple(rdata.strings)  # type: ignore[attr-defined]
    if rtype == "MX":
        return (rdata.preference, rdata.exchange.to_text(omit_final_dot=True))  # type: ignore[attr-defined]
    return rdata.to_text()  # type: ignore[attr-defined]


def _cname_loop(name: str, records: tuple[Record, ...]) -> bool:
    """Whether the CNAME chain from `name` in this answer comes back on itself (RFC 1034 §3.6.2)."""
    targets = {r.name: str(r.value).lower() for r in records if r.rdtype == "CNAME"}
    seen = {name}
    while name in targets:
        name = targets[name]
        if name in seen:
            return True
        seen.add(name)
    return False


def _negative_ttl(response: dns.message.Message) -> float:
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            return float(min(rrset.ttl, rrset[0].minimum, MAX_TTL))
    return NEGATIVE_TTL_DEFAULT


def _clamp_ttl(ttl: int | None, response: dns.message.Message) -> float:
    if ttl is None:  # NOERROR, no data
        return _negative_ttl(response)
    return float(min(ttl, MAX_TTL))
