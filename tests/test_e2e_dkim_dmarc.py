"""End to end through the real Postfix (unix, TCP, TCP every-stage): DKIM and DMARC on the delivered message,
and DMARC enforced per recipient domain at end of data: strict.test sets `dmarc_enforce = true`, example.org
does not. signed.test publishes a DKIM key and DMARC p=reject, held.test p=quarantine (conftest.ZONE)."""

from __future__ import annotations

import json
import subprocess

from .conftest import GOOD_IP
from .postfix import POSTFIX, wait_for
from .results import entries
from .signing import message, sign
from .smtp import send

SENDER = "alice@good.test"  # SPF passes for good.test, which aligns with neither signed.test nor held.test


def signed(author: str, tamper: bool = False, body: str = "Pay 10 EUR.\r\n", **options):
    """`send`'s compose: a message from `author` signed by its domain, its body changed after signing."""

    def compose(marker: str) -> bytes:
        raw = sign(message(author, subject=marker, body=body), author.rpartition("@")[2], **options)
        return raw.replace(b"Pay 10", b"Pay 99") if tamper else raw

    return compose


def our_entries(delivered, method: str):
    (ours,) = [v for v in delivered.get_all("Authentication-Results") if v.startswith("mx.mailwarden.test;")]
    return entries(ours, method)


def decision_line(mta) -> str:
    return [line for line in mta.daemon.log().splitlines() if line.startswith("info decision")][-1]


def test_a_signed_message_gets_dkim_pass_and_dmarc_pass(mta):
    sent = send(mta.smtp_port, SENDER, ["bob@example.org"], ip=GOOD_IP, compose=signed("alice@signed.test"))
    assert sent.data_reply[0] == 250
    delivered = mta.delivered(sent.marker)
    (dkim,) = our_entries(delivered, "dkim")
    assert (dkim.result, dkim.properties["header.d"], dkim.properties["header.s"]) == ("pass", "signed.test", "sel")
    assert len(dkim.properties["header.b"]) == 8
    (dmarc,) = our_entries(delivered, "dmarc")
    assert (dmarc.result, dmarc.comment, dmarc.properties) == ("pass", "p=reject sp=reject",
                                                              {"header.from": "signed.test"})  # fmt: skip


def test_header_white_space_reaches_dkim_as_it_was_sent_so_simple_canonicalisation_verifies(mta):
    """P_HDR_LEADSPC: without it the MTA cuts the space after each colon, and c=simple/... would fail."""

    def compose(marker: str) -> bytes:
        raw = message("alice@signed.test", subject=marker, headers="X-Tab:\tvalue\r\nX-None:value\r\n")
        return sign(raw, "signed.test", canonicalize=(b"simple", b"simple"),
                    include_headers=[b"from", b"subject", b"x-tab", b"x-none"])  # fmt: skip

    sent = send(mta.smtp_port, SENDER, ["bob@example.org"], ip=GOOD_IP, compose=compose)
    assert [e.result for e in our_entries(mta.delivered(sent.marker), "dkim")] == ["pass"]


def test_a_large_signed_body_is_hashed_in_chunks_and_passes(mta):
    body = "".join(f"line {i:06d} of a long message, with  double  spaces\r\n" for i in range(40000))  # 2 MB
    sent = send(mta.smtp_port, SENDER, ["bob@example.org"], ip=GOOD_IP, compose=signed("alice@signed.test", body=body))
    assert [e.result for e in our_entries(mta.delivered(sent.marker, timeout=60), "dkim")] == ["pass"]


def test_a_tampered_message_gets_dkim_fail_and_dmarc_fail_and_is_only_tagged_without_enforcement(mta):
    sent = send(mta.smtp_port, SENDER, ["bob@example.org"], ip=GOOD_IP,
                compose=signed("alice@signed.test", tamper=True))  # fmt: skip
    assert sent.data_reply[0] == 250
    delivered = mta.delivered(sent.marker)
    assert [(e.result, e.comment) for e in our_entries(delivered, "dkim")] == [("fail", "body hash did not verify")]
    assert [e.result for e in our_entries(delivered, "dmarc")] == ["fail"]


def test_with_enforcement_a_tampered_message_from_a_p_reject_domain_is_refused_550_5_7_1(mta):
    sent = send(mta.smtp_port, SENDER, ["carol@strict.test"], ip=GOOD_IP,
                compose=signed("alice@signed.test", tamper=True))  # fmt: skip
    code, text = sent.data_reply
    assert (code, text.split()[0]) == (550, "5.7.1")
    assert "rejected by the DMARC policy of the From domain (dmarc_enforce): signed.test publishes p=reject" in text
    line = decision_line(mta)
    for part in ("dkim=fail", "dmarc=fail", "action=reject", "decided_by=strict.test"):
        assert part in line


def test_when_recipient_domains_disagree_the_strictest_wins_and_the_log_names_the_domain(mta):
    sent = send(mta.smtp_port, SENDER, ["bob@example.org", "carol@strict.test"], ip=GOOD_IP,
                compose=signed("alice@signed.test", tamper=True))  # fmt: skip
    assert sent.rcpt_replies == {"bob@example.org": (250, "2.1.5 Ok"), "carol@strict.test": (250, "2.1.5 Ok")}
    assert sent.data_reply[0] == 550
    assert "decided_by=strict.test" in decision_line(mta)


def held(mta) -> list[dict]:
    result = subprocess.run([POSTFIX.replace("postfix", "postqueue"), "-c", str(mta.etc), "-j"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    return [json.loads(line) for line in result.stdout.splitlines() if '"queue_name": "hold"' in line]


def test_with_enforcement_a_failing_message_from_a_p_quarantine_domain_lands_in_the_hold_queue(mta):
    sent = send(mta.smtp_port, SENDER, ["carol@strict.test"], ip=GOOD_IP,
                compose=signed("alice@held.test", tamper=True))  # fmt: skip
    assert sent.data_reply[0] == 250
    queue_id = sent.data_reply[1].rsplit(" ", 1)[-1]
    (entry,) = wait_for(lambda: [e for e in held(mta) if e["queue_id"] == queue_id], 20, "the held message")
    assert entry["recipients"][0]["address"] == "carol@strict.test"
    line = decision_line(mta)
    assert "action=quarantine" in line and "decided_by=strict.test" in line
    assert f"{queue_id}: milter-hold: END-OF-MESSAGE" in mta.log()
