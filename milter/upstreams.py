"""The DNS servers mailwarden asks: how `[dns] nameservers` names them, and dnspython's nameserver for each.

A plain address (`192.0.2.1`, `192.0.2.1:5353`, `[2001:db8::1]:53`) is asked over UDP, TCP when an answer is
truncated. `tls://ADDRESS[:PORT]#AUTH-NAME` is DNS over TLS (RFC 7858, port 853 by default) with the strict
privacy profile: the upstream's certificate must be valid for AUTH-NAME, checked against the system CA store
(plus `[dns] tls_ca_file`), or nothing is asked. A preset names the well-known public DoT services.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

import dns.nameserver
import dns.resolver

from .dot import TlsNameserver, tls_context

DNS_PORT = 53
DOT_PORT = 853
_HOST = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")


@dataclass(frozen=True)
class Upstream:
    address: str
    port: int = DNS_PORT
    auth_name: str = ""  # the name the TLS certificate must carry; "" = plain DNS


PRESETS: dict[str, tuple[Upstream, ...]] = {
    "google-tls": (Upstream("8.8.8.8", DOT_PORT, "dns.google"), Upstream("8.8.4.4", DOT_PORT, "dns.google")),
    "cloudflare-tls": (Upstream("1.1.1.1", DOT_PORT, "cloudflare-dns.com"),
                       Upstream("1.0.0.1", DOT_PORT, "cloudflare-dns.com")),  # fmt: skip
    "quad9-tls": (Upstream("9.9.9.9", DOT_PORT, "dns.quad9.net"),
                  Upstream("149.112.112.112", DOT_PORT, "dns.quad9.net")),  # fmt: skip
}


def parse_nameserver(spec: str) -> Upstream:
    """'192.0.2.1', '192.0.2.1:5353', '[2001:db8::1]:53', '2001:db8::1' or 'tls://192.0.2.1[:853]#dns.example'."""
    spec = spec.strip()
    tls = spec.lower().startswith("tls://")
    auth_name = ""
    if tls:
        where, _, auth_name = spec[len("tls://") :].partition("#")
        if not _HOST.match(auth_name) and not _is_address(auth_name):
            raise ValueError(f"nameserver {spec!r}: tls:// needs #AUTH-NAME, the name its certificate carries")
    else:
        where = spec
    if where.startswith("["):
        host, _, port = where[1:].partition("]")
        if port and not port.startswith(":"):
            raise ValueError(f"nameserver {spec!r} has an invalid port")
        port = port[1:]
    elif where.count(":") == 1:
        host, port = where.split(":")
    else:
        host, port = where, ""
    if not host:
        raise ValueError(f"nameserver {spec!r} has no address")
    if not _is_address(host):
        raise ValueError(f"nameserver {spec!r}: {host!r} is not an IP address (nor a preset: {', '.join(PRESETS)})")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"nameserver {spec!r} has an invalid port")
    return Upstream(host, int(port) if port else DOT_PORT if tls else DNS_PORT, auth_name.rstrip("."))


def parse_nameservers(specs: Iterable[str]) -> tuple[Upstream, ...]:
    """Each spec in order, a preset standing for its upstreams."""
    return tuple(upstream for spec in specs for upstream in PRESETS.get(spec.strip()) or (parse_nameserver(spec),))


def nameservers(upstreams: Iterable[Upstream], tls_ca_file: str = "") -> list[dns.nameserver.Nameserver]:
    """dnspython's nameserver for each upstream; TLS upstreams share one context."""
    upstreams = list(upstreams)
    context = tls_context(tls_ca_file) if any(u.auth_name for u in upstreams) else None
    return [
        TlsNameserver(u.address, u.port, u.auth_name, context) if context and u.auth_name
        else dns.nameserver.Do53Nameserver(u.address, u.port)
        for u in upstreams
    ]  # fmt: skip


def tls_ca_problem(path: str) -> str:
    """Why `path` cannot serve as [dns] tls_ca_file ("" when it can): the daemon must not start, or reload,
    with a CA it would only find unreadable at the first query."""
    if not path.startswith("/"):
        return f"{path!r} is not an absolute path"
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        return f"{path!r} is not a readable PEM file of CA certificates: {exc}"
    return ""


def system_nameservers() -> list[dns.nameserver.Nameserver]:
    """The nameservers of /etc/resolv.conf, plain DNS on port 53."""
    try:
        addresses = dns.resolver.Resolver().nameservers
    except dns.resolver.NoResolverConfiguration:
        addresses = ["127.0.0.1"]
    return [dns.nameserver.Do53Nameserver(str(address), DNS_PORT) for address in addresses]


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
