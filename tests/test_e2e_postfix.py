"""End to end: real Postfix, mailwarden started from its CLI, the loopback DNS server; assertions on the
delivered message and on the SMTP replies."""

from __future__ import annotations

import re
import urllib.request

import authres

from .conftest import AUTHSERV_ID, GOOD_IP, GOOD_IP6, LIAR_IP, NOPTR_IP
from .smtp import send

DELIVERY_HEADERS = {"return-path", "x-original-to", "delivered-to"}  # added by virtual(8) on delivery


def header_names(message) -> list[str]:
    """Header names top down, without those the final delivery agent adds."""
    return [name.lower() for name, _ in message.items() if name.lower() not in DELIVERY_HEADERS]


def our_ar(message) -> list[authres.AuthenticationResultsHeader]:
    parsed = [authres.AuthenticationResultsHeader.parse_value(v) for v in message.get_all("Authentication-Results")]
    return [h for h in parsed if h.authserv_id.lower() == AUTHSERV_ID]


def results_by_property(ar: authres.AuthenticationResultsHeader) -> dict[str, tuple[str, str]]:
    """{"iprev": (result, policy.iprev), "smtp.helo": (result, value), "smtp.mailfrom": (result, value)}."""
    out = {}
    for result in ar.results:
        for prop in result.properties:
            key = "iprev" if result.method == "iprev" else f"{prop.type}.{prop.name}"
            out[key] = (result.result, re.sub(r"\\(.)", r"\1", prop.value))  # authres keeps quoted-pairs
    return out


def test_passing_client_gets_received_spf_then_ar_above_postfix_received(mta):
    sent = send(mta.smtp_port, "alice@good.test", ["bob@example.org"], ip=GOOD_IP)
    assert sent.data_reply[0] == 250
    message = mta.delivered(sent.marker)
    names = header_names(message)
    assert names[:3] == ["received-spf", "authentication-results", "received"]
    assert "by mx.mailwarden.test" in message["Received"]
    rspf = " ".join(message["Received-SPF"].split())
    assert rspf.startswith(
        "pass (mx.mailwarden.test: domain of alice@good.test designates 192.0.2.10 as permitted sender)"
    )
    for pair in ('client-ip=192.0.2.10;', 'envelope-from="alice@good.test";', "helo=mail.good.test;",
                 "receiver=mx.mailwarden.test;", "identity=mailfrom;", 'mechanism="ip4:192.0.2.10";'):  # fmt: skip
        assert pair in rspf
    (ar,) = our_ar(message)
    assert results_by_property(ar) == {
        "iprev": ("pass", GOOD_IP),
        "smtp.helo": ("pass", "mail.good.test"),
        "smtp.mailfrom": ("pass", "good.test"),
        "header.from": ("none", "good.test"),  # DMARC: good.test publishes no record
    }


def test_spf_fail_is_rejected_for_a_strict_domain_and_tagged_for_others(mta):
    sent = send(mta.smtp_port, "mallory@bad.test", ["carol@strict.test", "dave@example.org"], ip=GOOD_IP)
    code, text = sent.rcpt_replies["carol@strict.test"]
    assert code == 550
    assert text.startswith("5.7.23 SPF validation failed (spf_fail): domain of mallory@bad.test does not designate")
    assert sent.rcpt_replies["dave@example.org"][0] == 250
    message = mta.delivered(sent.marker)
    assert message["Delivered-To"] == "dave@example.org"
    assert results_by_property(our_ar(message)[0])["smtp.mailfrom"] == ("fail", "bad.test")
    assert message["Received-SPF"].startswith("fail (mx.mailwarden.test: domain of mallory@bad.test does not")


def test_iprev_fail_is_rejected_with_5_7_25_for_a_strict_domain(mta):
    sent = send(mta.smtp_port, "alice@good.test", ["carol@strict.test"], ip=LIAR_IP, helo="liar.test")
    code, text = sent.rcpt_replies["carol@strict.test"]
    assert (code, text.split()[0]) == (550, "5.7.25")
    assert "reverse DNS validation failed (iprev_fail)" in text


def test_spf_temperror_is_deferred_with_4_7_24(mta):
    sent = send(mta.smtp_port, "slowpoke@slow.test", ["carol@strict.test"], ip=GOOD_IP)
    code, text = sent.rcpt_replies["carol@strict.test"]
    assert (code, text.split()[0]) == (451, "4.7.24")


def test_iprev_permerror_and_softfail_are_only_tagged_by_default(mta):
    sent = send(mta.smtp_port, "eve@soft.test", ["bob@example.org"], ip=NOPTR_IP, helo="unknown.host.test")
    assert sent.data_reply[0] == 250
    results = results_by_property(our_ar(mta.delivered(sent.marker))[0])
    assert results["iprev"] == ("permerror", NOPTR_IP)
    assert results["smtp.mailfrom"] == ("softfail", "soft.test")
    assert results["smtp.helo"][0] == "none"


def test_null_sender_is_checked_as_postmaster_at_helo(mta):
    sent = send(mta.smtp_port, "", ["bob@example.org"], ip=GOOD_IP)
    message = mta.delivered(sent.marker)
    assert 'envelope-from="postmaster@mail.good.test";' in message["Received-SPF"]
    assert "identity=mailfrom;" in message["Received-SPF"]
    results = results_by_property(our_ar(message)[0])
    assert results["smtp.mailfrom"] == ("pass", "mail.good.test")
    assert results["smtp.helo"] == ("pass", "mail.good.test")


def test_forged_results_claiming_our_authserv_id_are_removed_and_others_kept(mta):
    forged = (
        "Authentication-Results: MX.MailWarden.Test; spf=pass smtp.mailfrom=bad.test\r\n"
        "Authentication-Results: (sneaky) mx.mailwarden.test 1; iprev=pass policy.iprev=192.0.2.20\r\n"
        "Authentication-Results: mx.mailwarden.test;\r\n\tdkim=pass header.d=bad.test\r\n"
        "Authentication-Results: mx.mailwarden.test;;; this (does not parse\r\n"
        "Authentication-Results: other.example; spf=pass smtp.mailfrom=bad.test\r\n"
        "Received-SPF: pass (forged) client-ip=192.0.2.20;\r\n"
    )
    sent = send(mta.smtp_port, "mallory@bad.test", ["bob@example.org"], ip=LIAR_IP, helo="liar.test", headers=forged)
    message = mta.delivered(sent.marker)
    all_ar = message.get_all("Authentication-Results")
    assert len(all_ar) == 2
    assert all_ar[1] == "other.example; spf=pass smtp.mailfrom=bad.test"
    (ours,) = our_ar(message)
    assert results_by_property(ours)["smtp.mailfrom"] == ("fail", "bad.test")
    spf_fields = message.get_all("Received-SPF")
    assert spf_fields[0].startswith("fail (mx.mailwarden.test:")
    assert spf_fields[1] == "pass (forged) client-ip=192.0.2.20;"
    names = header_names(message)
    assert names.index("received-spf") == 0 and names.index("received") < len(names) - names[::-1].index("received-spf")


def test_trusted_client_skips_checks_and_says_so(mta):
    sent = send(mta.smtp_port, "mallory@bad.test", ["carol@strict.test"])  # from 127.0.0.1 itself
    assert sent.rcpt_replies["carol@strict.test"][0] == 250
    message = mta.delivered(sent.marker)
    assert message["Received-SPF"] is None
    assert message["Authentication-Results"] == (
        "mx.mailwarden.test (checks skipped: client 127.0.0.1 is in trusted_networks); none"
    )
    assert "skipped=" in mta.daemon.log()


def test_authenticated_sender_skips_checks_and_says_so(mta):
    sent = send(mta.smtp_port, "mallory@bad.test", ["carol@strict.test"], ip=LIAR_IP, login="mallory")
    assert sent.rcpt_replies["carol@strict.test"][0] == 250
    message = mta.delivered(sent.marker)
    assert message["Authentication-Results"] == (
        "mx.mailwarden.test (checks skipped: sender authenticated as mallory); none"
    )


def test_listed_sender_domain_skips_checks(mta):
    sent = send(mta.smtp_port, "news@skipped.test", ["carol@strict.test"], ip=LIAR_IP)
    assert sent.rcpt_replies["carol@strict.test"][0] == 250
    message = mta.delivered(sent.marker)
    assert "sender domain skipped.test is in skip_sender_domains" in message["Authentication-Results"]


def test_hostile_helo_and_sender_cannot_inject_headers_or_keys(mta):
    helo = 'evil.test; spf=pass smtp.mailfrom=paypal.com (x) "q" \\ \x01\x7f'
    sender = '"x;y=z\\"(w)"@bad.test'
    sent = send(mta.smtp_port, sender, ["bob@example.org"], ip=GOOD_IP, helo=helo)
    assert sent.data_reply[0] == 250
    message = mta.delivered(sent.marker)
    names = header_names(message)
    assert names.count("received-spf") == 1 and names.count("authentication-results") == 1
    (ours,) = our_ar(message)
    results = results_by_property(ours)
    assert results["smtp.mailfrom"] == ("fail", "bad.test")
    assert results["smtp.helo"] == ("none", 'evil.test; spf=pass smtp.mailfrom=paypal.com (x) "q" \\ %01%7F')
    assert [r.method for r in ours.results] == ["iprev", "spf", "spf", "dkim", "arc", "dmarc"]
    rspf = message["Received-SPF"]
    assert '\thelo="evil.test; spf=pass smtp.mailfrom=paypal.com (x) \\"q\\" \\\\ %01%7F";' in rspf
    assert "\tenvelope-from=" in rspf and rspf.count("identity=") == 1


def test_ipv6_client_is_checked_with_aaaa_and_ip6(mta):
    sent = send(mta.smtp_port, "alice@good.test", ["bob@example.org"], ip=GOOD_IP6)
    message = mta.delivered(sent.marker)
    results = results_by_property(our_ar(message)[0])
    assert results["iprev"] == ("pass", GOOD_IP6)
    assert results["smtp.mailfrom"] == ("pass", "good.test")
    assert f"client-ip={GOOD_IP6};" in " ".join(message["Received-SPF"].split()).replace('"', "")


def test_decision_log_names_client_results_action_and_queue_id(mta):
    sent = send(mta.smtp_port, "mallory@bad.test", ["carol@strict.test"], ip=LIAR_IP, helo="liar.test")
    assert sent.rcpt_replies["carol@strict.test"][0] == 550
    line = next(line for line in mta.daemon.log().splitlines() if "recipient=carol@strict.test" in line
                and f"client={LIAR_IP}" in line)  # fmt: skip
    for part in ("info decision", "iprev=fail", "spf-helo=fail", "spf-mailfrom=fail", "action=reject",
                 'why="iprev_fail: 5.7.25 reverse DNS validation failed'):  # fmt: skip
        assert part in line


def scrape(mta) -> dict[str, float]:
    """The daemon's Prometheus metrics, scraped over HTTP."""
    address = re.search(r'address = "([^"]+)"', mta.daemon.config.read_text())[1]
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {name: float(value) for name, value in re.findall(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.M)}


def test_metrics_count_checks_actions_and_reused_verdicts_after_real_traffic(mta):
    before = scrape(mta)
    send(mta.smtp_port, "mallory@bad.test", ["carol@strict.test"], ip=GOOD_IP)
    sent = send(mta.smtp_port, "alice@good.test", ["bob@example.org"], ip=GOOD_IP)
    mta.delivered(sent.marker)
    after = scrape(mta)

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta('mailwarden_actions_total{action="reject",key="spf_fail"}') == 1
    assert delta('mailwarden_actions_total{action="accept",key="none"}') == 1
    assert delta('mailwarden_check_results_total{check="spf-mailfrom",result="fail"}') == 1
    assert delta('mailwarden_check_results_total{check="spf-mailfrom",result="pass"}') == 1
    assert delta('mailwarden_check_results_total{check="iprev",result="pass"}') == 2
    assert delta("mailwarden_verdict_cache_hits_total") >= 1  # the second message's IPREV: same client
    assert delta('mailwarden_stage_seconds_count{stage="eom"}') == 1
