"""The openspf RFC 7208 and RFC 4408 conformance suites, run through `mailwarden check`'s code path
against the loopback DNS server, every test, no allow-list: over UDP, and over DNS over TLS."""

from __future__ import annotations

from pathlib import Path

import pytest
import spf as spf_lib
import yaml
from dns.nameserver import Nameserver

from mailwarden.cli import check_report
from mailwarden.config import Config, DnsConfig
from mailwarden.dns import Resolver
from mailwarden.dot import TlsNameserver, tls_context
from mailwarden.engine import Engine

from .dnsserver import TestDNSServer, Zone
from .dotserver import DoTRelay
from .tlscerts import TestCA

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


@pytest.fixture(scope="module", params=["udp", "tls"])
def suite_nameserver(request: pytest.FixtureRequest, suite_dns: TestDNSServer, test_ca: TestCA):
    """The suite's DNS server asked over UDP (TCP on truncation), or through a DoT endpoint in front of it over
    one TLS connection that every case shares."""
    if request.param == "udp":
        yield suite_dns.nameserver()
        return
    relay = DoTRelay(suite_dns.port, test_ca.issue("suite.dns.test")).start()
    yield TlsNameserver("127.0.0.1", relay.port, "suite.dns.test", tls_context(str(test_ca.pem)))
    relay.close()
    print(f"suites over TLS: {relay.queries} queries, {relay.handshakes} handshakes")
    # Every lookup went through the endpoint; a new handshake only after a query the suite makes time out.
    assert relay.queries > 1000 and relay.handshakes < 30


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
