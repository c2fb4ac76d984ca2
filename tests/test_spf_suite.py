"""The openspf RFC 7208 and RFC 4408 conformance suites, run through `mailwarden check`'s code path
against the loopback DNS server, every test, no allow-list: over UDP, and over DNS over TLS (through Debian's
unbound, and through the tests' TLS relay)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import spf as spf_lib
import yaml
from dns.nameserver import Nameserver
from prometheus_client import REGISTRY

from mailwarden.cli import check_report
from mailwarden.config import Config, DnsConfig
from mailwarden.dns import Resolver
from mailwarden.dot import TlsNameserver, tls_context
from mailwarden.engine import Engine

from .dnsserver import TestDNSServer, Zone
from .dotserver import DoTRelay
from .tlscerts import TestCA
from .unbound import UnboundDoT

SUITE_DIR = Path(__file__).parent / "spf-suite"


def suite_zone(zonedata: dict) -> Zone:
    """The suite's zonedata as our server's zone: SPF records are also served as TXT unless the name has
    TXT records of its own (or TXT: NONE); a bare TIMEOUT, or a TIMEOUT value, makes queries hang."""
    zone: Zone = {}
    for name, entries in (zonedata or {}).items():
        records: list[tuple[str, object]] = []
        own_txt = any(isinstance(e, dict) and "TXT" in e for e in entries)
        for entry in entries:
            if entry == "TIMEOUT":
                records.append(("TIMEOUT", None))
                continue
            ((rtype, value),) = entry.items()
            if value == "NONE":
                continue
            if value == "TIMEOUT":
                records.append(("TIMEOUT", rtype))
                continue
            if rtype == "MX":
                value = tuple(value)
            records.append((rtype, value))
            if rtype == "SPF" and not own_txt:
                records.append(("TXT", value))
        zone[name] = records
    return zone


def cases() -> list:
    out = []
    for suite in ("rfc7208", "rfc4408"):
        for scenario in yaml.safe_load_all((SUITE_DIR / f"{suite}-tests.yml").read_text()):
            zone = suite_zone(scenario.get("zonedata"))
            for name, test in scenario["tests"].items():
                out.append(pytest.param(zone, test, id=f"{suite}-{name}"))
    return out


@pytest.fixture(scope="module")
def suite_dns():
    server = TestDNSServer(ttl=0).start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["udp", "tls-unbound", "tls-relay"])
def suite_nameserver(request: pytest.FixtureRequest, suite_dns: TestDNSServer, test_ca: TestCA,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nameserver]:  # fmt: skip
    """The suite's DNS server asked over UDP (TCP on truncation), or over DNS over TLS through Debian's unbound or
    the tests' own TLS relay in front of it, one connection shared by every case."""
    if request.param == "udp":
        yield suite_dns.nameserver()
        return
    cert = test_ca.issue("suite.dns.test")
    if request.param == "tls-unbound":
        endpoint: UnboundDoT | DoTRelay = UnboundDoT(suite_dns.port, cert, tmp_path_factory.mktemp("unbound")).start()
    else:
        endpoint = DoTRelay(suite_dns.port, cert).start()
    connections = REGISTRY.get_sample_value("mailwarden_dns_tls_connections_total")
    yield TlsNameserver("127.0.0.1", endpoint.port, "suite.dns.test", tls_context(str(test_ca.pem)))
    endpoint.close()
    opened = REGISTRY.get_sample_value("mailwarden_dns_tls_connections_total") - connections
    print(f"SPF suites over {request.param}: {opened} TLS connections")
    # One connection for all; a new one only after a query times out with nothing received on the connection.
    assert 0 < opened < 30


@pytest.mark.parametrize(("zone", "test"), cases())
def test_spf_suite_case(suite_dns: TestDNSServer, suite_nameserver: Nameserver, zone: Zone, test: dict) -> None:
    suite_dns.load(zone)
    dns = DnsConfig(timeout=0.2, budget=5.0)
    config = Config(authserv_id="mx.test", trusted_networks=(), dns=dns)
    engine = Engine(config, Resolver([suite_nameserver], timeout=dns.timeout))
    report = check_report(engine, str(test["host"]), test["helo"], test.get("mailfrom", ""))
    expected = test["result"] if isinstance(test["result"], list) else [test["result"]]
    spf = report["spf"]["mailfrom"]
    assert spf["result"] in expected, f"{spf} (expected {expected}: {test.get('description', '')})"
    if "explanation" in test and spf["result"] == "fail":
        # "DEFAULT" in the suite stands for the implementation's own default explanation.
        wanted = spf_lib.EXPLANATIONS["fail"] if test["explanation"] == "DEFAULT" else test["explanation"]
        assert spf["explanation"] == wanted
