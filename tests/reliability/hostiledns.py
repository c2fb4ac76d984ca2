"""The loopback test DNS server (tests/dnsserver.py) with the faults a hostile or broken network adds:

- ("WRONGID", None): the only answer carries another query id (a blind spoofing attempt; the client must
  ignore it, so the lookup times out);
- ("SPOOF", None): over UDP, two forged packets arrive first (a wrong id saying "v=spf1 +all" / a PTR to
  spoofed.evil.test, then the right id for another question), then the real answer;
- every query is recorded with its transport (udp/tcp), so tests can see the TCP retry after truncation.

`Blackhole` is a DNS server that is entirely down without saying so: UDP datagrams and TCP connections are
taken in and never answered.
"""

from __future__ import annotations

import socket

from dnslib import PTR, QTYPE, RR, TXT, DNSLabel, DNSRecord
from dnslib.server import DNSServer

from ..dnsserver import TestDNSServer, Zone, ZoneResolver, _Handler, _Quiet, free_port


class HostileResolver(ZoneResolver):
    def __init__(self, zone: Zone, ttl: int) -> None:
        super().__init__(zone, ttl)
        self.transports: list[tuple[str, str, str]] = []  # (name, type, "udp"/"tcp")

    def resolve(self, request: DNSRecord, handler) -> DNSRecord:
        qname = b".".join(request.q.qname.label).decode("utf-8", "replace").lower()
        self.transports.append((qname, QTYPE[request.q.qtype], handler.protocol))
        reply = super().resolve(request, handler)
        # dnslib writes an owner name given as text with 8-bit characters in IDNA form (xn--...): answer with the
        # name as asked, as a real server does (the resolver ignores records of a name it did not ask for)
        asked = DNSLabel(qname)
        for record in reply.rr:
            if record.rname == asked:
                record.rname = request.q.qname
        return reply

    def special(self, request: DNSRecord) -> str | None:
        qname = b".".join(request.q.qname.label).decode("utf-8", "replace").lower()
        kinds = {rtype for rtype, value in self.zone.get(qname, []) if value is None}
        return next((kind for kind in ("WRONGID", "SPOOF") if kind in kinds), None)


class HostileHandler(_Handler):
    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        special = self.server.resolver.special(request)
        if special == "WRONGID":
            self.server.resolver.transports.append((str(request.q.qname).rstrip(".").lower(), "?", self.protocol))
            reply = request.reply()
            reply.header.id = (request.header.id + 1) % 65536
            reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT("v=spf1 +all"), ttl=300))
            return bytes(reply.pack())
        if special == "SPOOF" and self.protocol == "udp":
            _, connection = self.request
            forged = request.reply()
            forged.header.id = (request.header.id + 1) % 65536
            if request.q.qtype == QTYPE.PTR:
                forged.add_answer(RR(request.q.qname, QTYPE.PTR, rdata=PTR("spoofed.evil.test"), ttl=300))
            else:
                forged.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT("v=spf1 +all"), ttl=300))
            other = DNSRecord.question("other.evil.test", "TXT")
            other.header.id = request.header.id
            mismatched = other.reply()
            mismatched.add_answer(RR("other.evil.test", QTYPE.TXT, rdata=TXT("v=spf1 +all"), ttl=300))
            for packet in (forged, mismatched):
                connection.sendto(bytes(packet.pack()), self.client_address)
        return super().get_reply(data)


class HostileDNSServer(TestDNSServer):
    __test__ = False

    def __init__(self, zone: Zone | None = None, ttl: int = 300) -> None:
        self.resolver = HostileResolver(zone or {}, ttl)
        self.port = free_port()
        self._servers = [
            DNSServer(
                self.resolver, address="127.0.0.1", port=self.port, tcp=tcp, handler=HostileHandler, logger=_Quiet()
            )  # fmt: skip
            for tcp in (False, True)
        ]

    @property
    def transports(self) -> list[tuple[str, str, str]]:
        return self.resolver.transports


class Blackhole:
    """A nameserver address that swallows every query: UDP is read and dropped, TCP is accepted by the kernel
    (listen backlog) and never answered."""

    def __init__(self) -> None:
        self.port = free_port()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", self.port))
        self.tcp.listen(1024)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()
