"""A small authoritative DNS server on loopback for the tests (dnslib, UDP and TCP on one port).

Zone data is a dict: lower-case name -> list of (type, value). Values: A/AAAA/CNAME/PTR a string, MX a
(preference, name) pair, TXT/SPF a string or a list of strings (one record of several strings). Faults are
records too: ("TIMEOUT", None) makes the name never answer (for every type), ("TIMEOUT", "TXT") only for that
type; ("SERVFAIL", None) and ("REFUSED", None) answer with that rcode; ("GARBAGE", None) answers with bytes
that are not DNS. CNAMEs are chased inside the zone like an authoritative server does; UDP answers over
512 bytes are truncated so that the client retries over TCP.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterable

import dns.nameserver
from dnslib import AAAA, CNAME, MX, PTR, QTYPE, RCODE, RR, SOA, TXT, A, DNSError, DNSRecord
from dnslib.server import DNSHandler, DNSServer

Zone = dict[str, list[tuple[str, object]]]
MAX_CHASE = 12
FAULTS = ("TIMEOUT", "SERVFAIL", "REFUSED", "GARBAGE")
UDP_LIMIT = 512


class _NoReply(DNSError):
    """Raised by the resolver to make the handler stay silent (a timeout, seen from the client)."""


class _Garbage(DNSError):
    """Raised by the resolver to make the handler send non-DNS bytes."""


class _Quiet:
    def __getattr__(self, _name: str):  # dnslib calls log_request, log_reply, ...
        return lambda *args, **kwargs: None


def _rdata(rtype: str, value: object):
    if rtype == "A":
        return A(value)
    if rtype == "AAAA":
        return AAAA(value)
    if rtype == "CNAME":
        return CNAME(value)
    if rtype == "PTR":
        return PTR(value)
    if rtype == "MX":
        pref, name = value  # type: ignore[misc]
        return MX(name, pref)
    if rtype in ("TXT", "SPF"):
        strings = [value] if isinstance(value, (str, bytes)) else list(value)  # type: ignore[arg-type]
        # A TXT record of no strings cannot be put on the wire; one empty string is the nearest legal form.
        strings = strings or [""]
        return TXT([s.encode() if isinstance(s, str) else s for s in strings])
    raise ValueError(f"unsupported record type {rtype}")


class ZoneResolver:
    def __init__(self, zone: Zone, ttl: int) -> None:
        self.zone = {name.lower().rstrip("."): list(records) for name, records in zone.items()}
        self.ttl = ttl
        self.queries: list[tuple[str, str]] = []
        self.delay: dict[str, float] = {}  # protocol ("udp" / "tcp") -> seconds every answer over it waits

    def _fault(self, name: str, qtype: str) -> str | None:
        """The fault to play for this query, if any. A name-wide fault listed after records of the type
        asked does not apply to that type (the convention of the openspf test suite)."""
        for rtype, value in self.zone.get(name, []):
            if rtype == qtype:
                return None
            if rtype in FAULTS and value in (None, qtype):
                return rtype
        return None

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        qname = b".".join(request.q.qname.label).decode("utf-8", "replace").lower()
        qtype = QTYPE[request.q.qtype]
        self.queries.append((qname, qtype))
        name = qname
        for _ in range(MAX_CHASE):
            fault = self._fault(name, qtype)
            if fault == "TIMEOUT":
                raise _NoReply(f"{name}/{qtype}: timeout")
            if fault == "GARBAGE":
                raise _Garbage(name)
            if fault:
                reply.header.rcode = getattr(RCODE, fault)
                return reply
            records = self.zone.get(name)
            if records is None:
                if name == qname or not reply.rr:
                    reply.header.rcode = RCODE.NXDOMAIN
                self._add_soa(reply, name)
                return reply
            matching = [(t, v) for t, v in records if t == qtype]
            cnames = [v for t, v in records if t == "CNAME"]
            if matching:
                for rtype, value in matching:
                    reply.add_answer(RR(name, getattr(QTYPE, rtype), rdata=_rdata(rtype, value), ttl=self.ttl))
                return reply
            if cnames and qtype != "CNAME":
                reply.add_answer(RR(name, QTYPE.CNAME, rdata=CNAME(cnames[0]), ttl=self.ttl))
                name = str(cnames[0]).lower().rstrip(".")
                continue
            self._add_soa(reply, name)
            return reply
        return reply

    def _add_soa(self, reply: DNSRecord, name: str) -> None:
        soa = SOA("ns.test", "hostmaster.test", (1, 3600, 600, 86400, self.ttl))
        reply.add_auth(RR(name or ".", QTYPE.SOA, rdata=soa, ttl=self.ttl))


class _Handler(DNSHandler):
    """Stays silent for TIMEOUT, sends garbage for GARBAGE, truncates UDP answers over 512 bytes, waits the
    resolver's delay for its protocol before answering."""

    def handle(self) -> None:
        with contextlib.suppress(_NoReply):
            super().handle()

    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        time.sleep(self.server.resolver.delay.get(self.protocol, 0.0))
        try:
            reply = self.server.resolver.resolve(request, self)
        except _Garbage:
            return b"\x00\x01garbage, not a DNS message"
        packed = reply.pack()
        if self.protocol == "udp" and len(packed) > UDP_LIMIT:
            # dnslib's own truncate() drops the question, which clients rightly refuse as a mismatch.
            truncated = request.reply()
            truncated.header.tc = 1
            packed = truncated.pack()
        return packed


class TestDNSServer:
    """Authoritative server for one zone at a time, on 127.0.0.1, UDP and TCP on the same port."""

    __test__ = False  # not a pytest test class

    def __init__(self, zone: Zone | None = None, ttl: int = 300, host: str = "127.0.0.1", port: int = 0) -> None:
        """`port` 0: a free one (a fixed port, such as 53 for programs that read only /etc/resolv.conf, with
        a loopback `host` of its own)."""
        self.resolver = ZoneResolver(zone or {}, ttl)
        self.host = host
        self.port = port or free_port()
        self._servers = [
            DNSServer(self.resolver, address=host, port=self.port, tcp=tcp, handler=_Handler, logger=_Quiet())
            for tcp in (False, True)
        ]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def nameserver(self) -> dns.nameserver.Do53Nameserver:
        """This server as the resolver's plain-DNS nameserver."""
        return dns.nameserver.Do53Nameserver(self.host, self.port)

    def load(self, zone: Zone, ttl: int | None = None) -> None:
        """Serve another zone from now on."""
        self.resolver.zone = {name.lower().rstrip("."): list(recs) for name, recs in zone.items()}
        if ttl is not None:
            self.resolver.ttl = ttl

    @property
    def queries(self) -> list[tuple[str, str]]:
        return self.resolver.queries

    def start(self) -> TestDNSServer:
        for server in self._servers:
            server.start_thread()
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()


def free_port() -> int:
    """A port free for both UDP and TCP on loopback."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port")


def reverse_name(ip: str) -> str:
    """The in-addr.arpa / ip6.arpa name of an address, without trailing dot."""
    import ipaddress

    return ipaddress.ip_address(ip).reverse_pointer


def merge(*zones: Iterable[tuple[str, list[tuple[str, object]]]] | Zone) -> Zone:
    out: Zone = {}
    for zone in zones:
        items = zone.items() if isinstance(zone, dict) else zone
        for name, records in items:
            out.setdefault(name.lower(), []).extend(records)
    return out
