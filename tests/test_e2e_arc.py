"""End to end through the real Postfix: ARC. mailwarden trusts forwarder.test as a sealer and seals what it
passes on as mailwarden.test. A mailing list at forwarder.test (or at other.test, which is not trusted) has
changed a message from signed.test (DKIM key, DMARC p=reject) and sealed it with dkimpy's own ARC signer; the
message reaches strict.test, which enforces DMARC. Downstream, what we sealed is verified with dkimpy's
verifier and with mailwarden's own `check`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import dkim
import pytest

from mailwarden.cli import check_report
from mailwarden.config import Config, DnsConfig
from mailwarden.dns import Resolver
from mailwarden.engine import Engine

from .conftest import GOOD_IP, ZONE, daemon_config, milter_sockets
from .dnsserver import TestDNSServer, merge
from .postfix import Daemon, Postfix, make_base_dir
from .results import entries
from .signing import RSA_1024, RSA_1024_RECORD, RSA_2048, RSA_2048_RECORD, key_zone, message, sign
from .smtp import send

SEALERS = {"forwarder.test": RSA_1024, "other.test": RSA_1024}
ARC_ZONE = merge(ZONE, *(key_zone(domain, "arc", RSA_1024_RECORD) for domain in SEALERS),
                 key_zone("mailwarden.test", "arc", RSA_2048_RECORD))  # fmt: skip
ARC_CONFIG = """
[arc]
trusted_sealers = ["forwarder.test"]
sign = true
domain = "mailwarden.test"
selector = "arc"
key_file = "{key_file}"
"""


@pytest.fixture(scope="module")
def forwarding_mta(dns_server: TestDNSServer) -> Iterator[Postfix]:
    """Postfix with mailwarden (unix socket) configured with the [arc] table above."""
    dns_server.load(ARC_ZONE)
    base = make_base_dir()
    ours, postfix_side = milter_sockets(base)
    key_file = base / "arc.key"
    key_file.write_bytes(RSA_2048)
    daemon = Daemon(daemon_config(base, dns_server, ours) + ARC_CONFIG.format(key_file=key_file), base).start()
    postfix = Postfix(base, milter=postfix_side).start()
    postfix.daemon = daemon  # type: ignore[attr-defined]
    yield postfix
    postfix.stop()
    daemon.stop()
    shutil.rmtree(base, ignore_errors=True)
    dns_server.load(ZONE)


def listed(sealer: str, dmarc: str = "pass"):
    """`send`'s compose: signed.test's signed message as the list at `sealer` passes it on: subject tagged
    (DKIM breaks), its own A-R saying `dmarc`, and an ARC set of dkimpy's over it."""

    def compose(marker: str) -> bytes:
        original = sign(message("alice@signed.test", subject=marker), "signed.test")
        changed = original.replace(f"Subject: {marker}".encode(), f"Subject: [list] {marker}".encode())
        ar = f"Authentication-Results: mx.{sealer}; dkim=pass header.d=signed.test; dmarc={dmarc}\r\n".encode()
        with_ar = ar + changed
        arc_set = dkim.arc_sign(with_ar, b"arc", sealer.encode(), SEALERS[sealer], f"mx.{sealer}".encode())
        return b"".join(arc_set) + with_ar

    return compose


def raw_delivered(mta: Postfix, marker: str) -> bytes:
    mta.delivered(marker)  # waits for it
    return next(p.read_bytes() for p in (mta.maildir / "new").iterdir() if marker.encode() in p.read_bytes())


def our_ar(raw: bytes) -> str:
    values = [v for n, v in dkim.rfc822_parse(raw)[0] if n.lower() == b"authentication-results"]
    (ours,) = [v.decode().strip() for v in values if v.strip().startswith(b"mx.mailwarden.test;")]
    return ours.replace("\r\n", "\n")


def downstream_dns(name: bytes, timeout: float = 5) -> bytes | None:
    """dkimpy's key lookups, answered from the same zone."""
    records = ARC_ZONE.get(name.decode().rstrip("."), [])
    return "".join(records[0][1]).encode() if records else None  # type: ignore[arg-type]


def test_a_trusted_forwarders_chain_saves_a_dmarc_fail_from_a_p_reject_domain(forwarding_mta: Postfix) -> None:
    sent = send(forwarding_mta.smtp_port, "alice@good.test", ["carol@strict.test"], ip=GOOD_IP,
                compose=listed("forwarder.test"))  # fmt: skip
    assert sent.data_reply[0] == 250, sent.data_reply
    ar = our_ar(raw_delivered(forwarding_mta, sent.marker))
    assert [e.result for e in entries(ar, "dkim")] == ["fail"]  # the list changed the subject
    (arc,) = entries(ar, "arc")
    assert (arc.result, arc.comment) == ("pass", "i=1, trusted sealer forwarder.test saw dmarc=pass")
    (dmarc,) = entries(ar, "dmarc")
    assert dmarc.result == "fail"
    assert dmarc.comment.endswith("not enforced: trusted ARC sealer forwarder.test saw dmarc=pass")


@pytest.mark.parametrize(("sealer", "dmarc"), [("other.test", "pass"), ("forwarder.test", "fail")],
                         ids=["untrusted-sealer", "sealer-saw-dmarc-fail"])  # fmt: skip
def test_without_a_trusted_sealers_dmarc_pass_the_fail_is_refused_550_5_7_1(forwarding_mta, sealer, dmarc) -> None:
    sent = send(forwarding_mta.smtp_port, "alice@good.test", ["carol@strict.test"], ip=GOOD_IP,
                compose=listed(sealer, dmarc))  # fmt: skip
    code, text = sent.data_reply
    assert (code, text.split()[0]) == (550, "5.7.1")
    assert "rejected by the DMARC policy of the From domain" in text


def test_a_forwarded_chain_we_seal_verifies_as_arc_pass_i_2_downstream(forwarding_mta: Postfix) -> None:
    sent = send(forwarding_mta.smtp_port, "alice@good.test", ["bob@example.org"], ip=GOOD_IP,
                compose=listed("forwarder.test"))  # fmt: skip
    raw = raw_delivered(forwarding_mta, sent.marker)
    cv, sets, reason = dkim.arc_verify(raw, dnsfunc=downstream_dns)
    assert cv == dkim.CV_Pass, reason
    assert [(s["instance"], s["as-domain"]) for s in sets] == [(2, b"mailwarden.test"), (1, b"forwarder.test")]


def test_a_message_we_seal_verifies_as_arc_pass_downstream_and_carries_our_verdicts(
    forwarding_mta: Postfix, dns_server: TestDNSServer
) -> None:
    sent = send(forwarding_mta.smtp_port, "alice@good.test", ["bob@example.org"], ip=GOOD_IP)
    raw = raw_delivered(forwarding_mta, sent.marker)
    cv, sets, reason = dkim.arc_verify(raw, dnsfunc=downstream_dns)
    assert (cv, len(sets)) == (dkim.CV_Pass, 1), reason
    # The ARC-Authentication-Results is our Authentication-Results, behind i=1.
    (aar,) = [v for n, v in dkim.rfc822_parse(raw)[0] if n.lower() == b"arc-authentication-results"]
    assert " ".join(aar.decode().split()) == " ".join(f"i=1; {our_ar(raw)}".split())
    assert "spf=pass" in our_ar(raw)
    # A downstream mailwarden (`mailwarden check --message`) says the same.
    config = Config(authserv_id="downstream.test", trusted_networks=(), dns=DnsConfig(timeout=0.5))
    engine = Engine(config, Resolver([dns_server.nameserver()], timeout=0.5))
    report = check_report(engine, "192.0.2.99", "mx.mailwarden.test", "alice@good.test", raw)
    assert report["arc"] == {"result": "pass", "instances": 1}


def test_the_key_file_is_read_at_start_and_a_bad_one_stops_the_daemon(dns_server: TestDNSServer) -> None:
    base = make_base_dir()
    try:
        (base / "arc.key").write_text("not a key")
        daemon = Daemon(daemon_config(base, dns_server) + ARC_CONFIG.format(key_file=base / "arc.key"), base)
        with pytest.raises(RuntimeError, match="arc.key_file: cannot seal with it"):
            daemon.start()
    finally:
        shutil.rmtree(base, ignore_errors=True)
