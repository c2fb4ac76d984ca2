"""End to end over DNS over TLS: real Postfix, `mailwarden run` whose only nameserver is a tls:// upstream (the
tests' relay in front of the loopback DNS server, its certificate from the tests' CA in [dns] tls_ca_file).
The delivered messages carry the verdicts they carry over UDP; with the upstream killed, mail still flows,
tagged temperror, and the daemon reconnects when it is back."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import GOOD_IP, GOOD_IP6, LIAR_IP, daemon_config, milter_sockets
from .dnsserver import TestDNSServer
from .dotserver import DoTRelay
from .postfix import POSTFIX, Daemon, Postfix, make_base_dir
from .smtp import send
from .test_e2e_postfix import our_ar, results_by_property
from .tlscerts import TestCA

AUTH_NAME = "dns.mailwarden.test"


@pytest.fixture(scope="module")
def stack(dns_server: TestDNSServer, test_ca: TestCA) -> Iterator[tuple[Postfix, Daemon, DoTRelay]]:
    if not Path(POSTFIX).exists():
        pytest.fail("Postfix is not installed: .ci/run installs it (apt-get install postfix)")
    relay = DoTRelay(dns_server.port, test_ca.issue(AUTH_NAME)).start()
    base = make_base_dir()
    ours, postfix_side = milter_sockets(base)
    plain = f'nameservers = ["127.0.0.1:{dns_server.port}"]'
    config = daemon_config(base, dns_server, ours)
    assert plain in config
    config = config.replace(plain, f'nameservers = ["tls://127.0.0.1:{relay.port}#{AUTH_NAME}"]\n'
                                   f'tls_ca_file = "{test_ca.pem}"')  # fmt: skip
    daemon = Daemon(config, base).start()
    postfix = Postfix(base, milter=postfix_side).start()
    yield postfix, daemon, relay
    postfix.stop()
    daemon.stop()
    relay.close()
    if not os.environ.get("MAILWARDEN_KEEP_E2E"):
        shutil.rmtree(base, ignore_errors=True)


def delivered_results(postfix: Postfix, sender: str, ip: str) -> dict[str, tuple[str, str]]:
    sent = send(postfix.smtp_port, sender, ["bob@example.org"], ip=ip)
    assert sent.data_reply is not None and sent.data_reply[0] == 250, sent
    (ar,) = our_ar(postfix.delivered(sent.marker))
    return results_by_property(ar)


def test_mail_checked_over_tls_carries_the_verdicts_it_carries_over_udp(stack):
    postfix, _, relay = stack
    assert delivered_results(postfix, "alice@good.test", GOOD_IP) == {
        "iprev": ("pass", GOOD_IP), "smtp.helo": ("pass", "mail.good.test"), "smtp.mailfrom": ("pass", "good.test"),
        "header.from": ("none", "good.test"),
    }  # fmt: skip
    assert delivered_results(postfix, "mallory@bad.test", LIAR_IP) == {
        "iprev": ("fail", LIAR_IP), "smtp.helo": ("fail", "mail.good.test"), "smtp.mailfrom": ("fail", "bad.test"),
        "header.from": ("none", "bad.test"),
    }  # fmt: skip
    assert relay.queries > 0 and relay.handshakes == 1


def test_a_killed_tls_upstream_costs_a_temperror_never_a_message(stack):
    postfix, daemon, relay = stack
    relay.stop()
    try:
        results = delivered_results(postfix, "someone@soft.test", GOOD_IP6)  # names never looked up before
        assert (results["iprev"][0], results["smtp.mailfrom"][0]) == ("temperror", "temperror")
    finally:
        relay.start()
    assert delivered_results(postfix, "someone@soft.test", GOOD_IP)["smtp.mailfrom"] == ("softfail", "soft.test")
    assert daemon.log().count("dns-tls-unreachable") == 1
    assert "dns-tls-connected" in daemon.log()
