"""Shared fixtures: the loopback DNS server with the test zones, and a real Postfix with mailwarden in it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .dnsserver import TestDNSServer, Zone, free_port, merge, reverse_name
from .postfix import POSTFIX, Daemon, Postfix, make_base_dir
from .rabbitmq import SERVER as RABBITMQ_SERVER
from .rabbitmq import RabbitMQ
from .signing import dmarc_zone, key_zone
from .tlscerts import TestCA

AUTHSERV_ID = "mx.mailwarden.test"

# Clients, by what their DNS says about them.
GOOD_IP = "192.0.2.10"  # PTR mail.good.test, which maps back; good.test allows it
LIAR_IP = "192.0.2.20"  # PTR liar.test, which does not map back; bad.test forbids everyone
NOPTR_IP = "192.0.2.30"  # no PTR at all
GOOD_IP6 = "2001:db8::10"

ZONE: Zone = {
    reverse_name(GOOD_IP): [("PTR", "mail.good.test")],
    reverse_name(GOOD_IP6): [("PTR", "mail.good.test")],
    "mail.good.test": [("A", GOOD_IP), ("AAAA", GOOD_IP6), ("TXT", "v=spf1 a -all")],
    "good.test": [("TXT", "v=spf1 ip4:192.0.2.10 ip6:2001:db8::10 -all")],
    reverse_name(LIAR_IP): [("PTR", "liar.test")],
    "liar.test": [("A", "198.51.100.1"), ("TXT", "v=spf1 -all")],
    "bad.test": [("TXT", "v=spf1 -all")],
    "soft.test": [("TXT", "v=spf1 ~all")],
    "slow.test": [("TIMEOUT", None)],
    "broken.test": [("TXT", "v=spf1 include:nonexistent.test -all")],
}
# Signed mail: signed.test publishes a DKIM key (selector "sel") and DMARC p=reject, held.test p=quarantine.
ZONE = merge(ZONE, key_zone("signed.test"), dmarc_zone("signed.test", "v=DMARC1; p=reject"),
             key_zone("held.test"), dmarc_zone("held.test", "v=DMARC1; p=quarantine"))  # fmt: skip

DAEMON_CONFIG = """\
socket = "{socket}"
socket_mode = "0666"
mta = "{mta}"
authserv_id = "{authserv_id}"
skip_sender_domains = ["skipped.test"]

[metrics]
address = "127.0.0.1:{metrics_port}"

[dns]
nameservers = ["127.0.0.1:{dns_port}"]
timeout = 0.5
budget = 3.0

[domains."strict.test".policy]
spf_fail = "reject"
spf_temperror = "defer"
spf_permerror = "reject"
iprev_fail = "reject"
dmarc_enforce = true
"""


def milter_sockets(base: Path, kind: str = "unix") -> tuple[str, str]:
    """(mailwarden's socket spec, Postfix's smtpd_milters entry) for a stack rooted at `base`."""
    if kind == "unix":
        return f"unix:{base}/milter.sock", f"unix:{base}/milter.sock"
    port = free_port()
    return f"inet:{port}@127.0.0.1", f"inet:127.0.0.1:{port}"


def message_check_config(dns: TestDNSServer, budget: float = 3.0) -> str:
    """The configuration of in-process message-check tests: no bounce labelling, only the given DNS server."""
    return (f'authserv_id = "mx.test"\ntrusted_networks = []\n[bounce]\nenabled = false\n'
            f'[dns]\nnameservers = ["{dns.address}"]\ntimeout = 0.5\nbudget = {budget}\n')


def daemon_config(base: Path, dns_server: TestDNSServer, socket: str | None = None, mta: str = "postfix") -> str:
    """The e2e daemon configuration, with fresh ports, for a stack rooted at `base` (unix socket by default)."""
    return DAEMON_CONFIG.format(socket=socket or milter_sockets(base)[0], mta=mta, authserv_id=AUTHSERV_ID,
                                dns_port=dns_server.port, metrics_port=free_port())  # fmt: skip


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """A private CA for the DNS-over-TLS endpoints of the tests ([dns] tls_ca_file)."""
    return TestCA(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    """A private RabbitMQ on loopback for the whole run (tests use exchanges of their own); a test that stops it
    starts it again before it ends."""
    if not Path(RABBITMQ_SERVER).exists():
        pytest.fail("RabbitMQ is not installed: .ci/run installs it (apt-get install rabbitmq-server)")
    broker = RabbitMQ(tmp_path_factory.mktemp("rabbitmq")).start()
    yield broker
    broker.destroy()


@pytest.fixture(scope="session")
def dns_server() -> Iterator[TestDNSServer]:
    server = TestDNSServer(ZONE).start()
    yield server
    server.stop()


# The e2e stacks, by test id: (mailwarden's socket kind, its `mta` setting), i.e. the three milter protocols.
PROTOCOLS = {"unix": ("unix", "postfix"), "inet": ("inet", "postfix"), "inet-every-stage": ("inet", "sendmail")}


@pytest.fixture(scope="session", params=list(PROTOCOLS))
def mta(request: pytest.FixtureRequest, dns_server: TestDNSServer) -> Iterator[Postfix]:
    """Postfix on a loopback port with mailwarden (started from the CLI) in smtpd_milters, on a unix socket
    and on a TCP one, where mailwarden negotiates the milter protocol differently; and on TCP with the
    every-stage protocol it keeps for Sendmail (`mta = "sendmail"`), which Postfix speaks as well."""
    if not Path(POSTFIX).exists():
        pytest.fail("Postfix is not installed: .ci/run installs it (apt-get install postfix)")
    base = make_base_dir()
    kind, mta_setting = PROTOCOLS[request.param]
    ours, postfix_side = milter_sockets(base, kind)
    daemon = Daemon(daemon_config(base, dns_server, ours, mta_setting), base)
    daemon.start()
    postfix = Postfix(base, milter=postfix_side).start()
    postfix.daemon = daemon  # type: ignore[attr-defined]
    yield postfix
    postfix.stop()
    daemon.stop()
    if not os.environ.get("MAILWARDEN_KEEP_E2E"):
        shutil.rmtree(base, ignore_errors=True)
