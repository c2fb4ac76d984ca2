"""Header injection: hostile HELO names, MAIL FROM addresses, recipients and reverse-DNS names (from a hostile
zone) never add a field or a key to what we write. Our fields stay single and well formed (read back with
`email` and authres), and every value is sanitised (non-printable bytes as %XX), not dropped."""

from __future__ import annotations

import json
import re

import dns.name
import pytest

from mailwarden.cli import check_report
from mailwarden.config import parse
from mailwarden.engine import Engine
from mailwarden.headers import LIMIT_ADDRESS, LIMIT_NAME, LIMIT_TEXT, clean

from ..conftest import GOOD_IP
from .conftest import (
    HOSTILE_PTR,
    header_names,
    parse_ar,
    received_spf_pairs,
    results_by_key,
    well_formed_field,
)
from .rawsmtp import transaction

OUR_KEYS = ["client-ip", "envelope-from", "helo", "receiver", "identity", "mechanism"]


def delivered_fields(stack, sent):
    """(message, Received-SPF value, A-R value) of a delivered message, both fields checked well formed."""
    assert sent.replies["data"].code == 250, sent.replies
    message = stack.postfix.delivered(sent.marker)
    names = header_names(message)
    assert names[:3] == ["received-spf", "authentication-results", "received"], names
    assert names.count("received-spf") == 1 and names.count("authentication-results") == 1
    assert "x-injected" not in names
    rspf, ar = message["Received-SPF"], message["Authentication-Results"]
    well_formed_field("Received-SPF", rspf)
    well_formed_field("Authentication-Results", ar)
    return message, rspf, ar


def comment_after(text: str, prefix: str) -> str:
    """The comment that follows `prefix` in a header value, quoted-pairs undone."""
    flat = re.sub(r"\r?\n[ \t]", " ", text)
    start = flat.index(prefix) + len(prefix)
    assert flat[start] == "(", flat[start:]
    depth, out, i = 0, [], start
    while True:
        ch = flat[i]
        if ch == "\\":
            out.append(flat[i + 1])
            i += 2
            continue
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            return "".join(out[1:])
        out.append(ch)
        i += 1


# -- HELO ------------------------------------------------------------------------------------------------------

HELOS = {
    "header syntax": b'evil.test; spf=pass smtp.mailfrom=paypal.com (x) "q" \\ a=b',
    "forged resinfo via @ (fixed in aefee12)": b"x;spf=pass smtp.mailfrom=paypal.com@evil.test",
    "comment via @ (fixed in aefee12)": b"a(b)@c.test",
    "control characters": b"ctl\x01\x02\x1b[31m\x7f.test",
    "bare CR (Postfix makes it a space)": b"cr\rX-Injected: 1.test",
    "utf-8": "b\u00fccher.\u4e2d\u6587.test".encode(),
    "invalid utf-8 (pymilter cannot decode it: recovered from its exception)": b"bad\xff\xfe\xc3.test",
    "255 octets": b"h" * 250 + b".test",
}


@pytest.mark.parametrize("helo", [pytest.param(v, id=k) for k, v in HELOS.items()])
def test_hostile_helo_is_sanitised_in_single_well_formed_fields(stack, helo):
    sent = transaction(stack.port, b"alice@good.test", [b"bob@example.org"], ip=GOOD_IP, helo=helo)
    _, rspf, ar = delivered_fields(stack, sent)
    expected = clean(helo.replace(b"\r", b" ").decode("utf-8", "surrogateescape"), LIMIT_NAME)
    word, pairs = received_spf_pairs(rspf)
    assert (word, list(pairs)) == ("pass", OUR_KEYS)
    assert pairs["helo"] == expected
    parsed = parse_ar(ar)
    assert [r.method for r in parsed.results] == ["iprev", "spf", "spf", "dkim", "arc", "dmarc"]
    assert results_by_key(parsed)["smtp.helo"] == ("none", expected)


def test_helo_that_is_not_utf8_is_logged_and_kept_for_its_own_session_only(stack):
    """The bytes pymilter could not decode go to the session that sent them, and the next session of the same
    worker thread does not inherit them."""
    bad = transaction(stack.port, b"alice@good.test", [b"bob@example.org"], ip=GOOD_IP, helo=b"odd\xe9.test")
    good = transaction(stack.port, b"alice@good.test", [b"bob@example.org"], ip=GOOD_IP, helo=b"mx.good.test")
    assert received_spf_pairs(delivered_fields(stack, bad)[1])[1]["helo"] == "odd%E9.test"
    assert received_spf_pairs(delivered_fields(stack, good)[1])[1]["helo"] == "mx.good.test"
    assert f'warning helo-not-utf8 client={GOOD_IP} helo="odd%E9.test"' in stack.daemon.log()


def test_helo_with_nul_is_cut_by_postfix_before_the_milter_and_the_rest_is_sanitised(stack):
    """The milter protocol carries C strings: what follows a NUL never reaches mailwarden (Postfix's doing)."""
    sent = transaction(stack.port, b"alice@good.test", [b"bob@example.org"], ip=GOOD_IP,
                       helo=b"nul\x01\x00X-Injected: 1.test")  # fmt: skip
    _, rspf, ar = delivered_fields(stack, sent)
    assert received_spf_pairs(rspf)[1]["helo"] == "nul%01"
    assert results_by_key(parse_ar(ar))["smtp.helo"] == ("none", "nul%01")


# -- MAIL FROM -------------------------------------------------------------------------------------------------

SENDERS = {
    "header syntax in a quoted local part": b'"x;y=z\\"w(v)\\\\ identity=helo"@good.test',
    "control characters in a quoted local part": b'"a\x01\x1b\x7fb"@good.test',
    "utf-8 local part": "j\u00fcrgen@good.test".encode(),
    "invalid utf-8": b"bad\xff\xfe@good.test",
    "600-octet local part": b"l" * 600 + b"@good.test",
}


@pytest.mark.parametrize("sender", SENDERS.values(), ids=SENDERS.keys())
def test_hostile_mail_from_is_sanitised_in_single_well_formed_fields(stack, sender):
    sent = transaction(stack.port, sender, [b"bob@example.org"], ip=GOOD_IP)
    _, rspf, ar = delivered_fields(stack, sent)
    word, pairs = received_spf_pairs(rspf)
    assert (word, list(pairs)) == ("pass", OUR_KEYS)
    assert pairs["envelope-from"] == clean(sender.decode("utf-8", "surrogateescape"), LIMIT_ADDRESS)
    assert results_by_key(parse_ar(ar))["smtp.mailfrom"] == ("pass", "good.test")


@pytest.mark.parametrize("sender", [b"a\x00b@good.test", b"a\rb@good.test"], ids=["NUL", "bare CR"])
def test_mail_from_with_nul_or_cr_is_refused_by_postfix_before_the_milter(stack, sender):
    sent = transaction(stack.port, sender, [b"bob@example.org"], ip=GOOD_IP)
    assert sent.replies["mail"].code == 501


# -- recipients ------------------------------------------------------------------------------------------------


def test_hostile_recipients_do_not_reach_our_fields_and_are_sanitised_in_replies_and_log(stack):
    strict = b'"r;x=y\\"\x01\xc3\xa9 action=accept"@strict.test'
    plain = b'"q;r=s\x01\xff"@example.org'
    sent = transaction(stack.port, b"mallory@bad.test", [strict, plain], ip=GOOD_IP)
    reply = sent.replies["rcpt:0"]
    assert (reply.code, reply.text.split()[0]) == (550, b"5.7.23")
    assert b"\r" not in reply.text and b"\n" not in reply.text
    _, rspf, ar = delivered_fields(stack, sent)
    assert "r;x" not in rspf + ar and "q;r" not in rspf + ar
    expected = clean(strict.decode("utf-8", "surrogateescape"), LIMIT_ADDRESS)
    lines = [line for line in stack.daemon.log().splitlines() if "action=reject" in line and "r;x=y" in line]
    assert len(lines) == 1
    value = re.search(r' recipient=("(?:[^"\\]|\\.)*"|\S+)', lines[0]).group(1)
    assert (json.loads(value) if value.startswith('"') else value) == expected  # clean() form, JSON-quoted


# -- reverse DNS names from a hostile zone ------------------------------------------------------------------


@pytest.mark.parametrize("ip", HOSTILE_PTR, ids=[repr(v)[2:30] for v in HOSTILE_PTR.values()])
def test_hostile_ptr_name_is_sanitised_in_the_iprev_comment(stack, ip):
    sent = transaction(stack.port, b"alice@good.test", [b"bob@example.org"], ip=ip)
    _, _, ar = delivered_fields(stack, sent)
    presentation = dns.name.Name([*HOSTILE_PTR[ip].split(b"."), b""]).to_text(omit_final_dot=True)
    assert results_by_key(parse_ar(ar))["iprev"] == ("pass", ip)
    assert comment_after(ar, f"policy.iprev={ip} ") == clean(presentation)
    assert comment_after(ar, "iprev=pass ") == clean(f"{presentation} maps back to {ip}", LIMIT_TEXT)


# -- text from a hostile SPF zone ---------------------------------------------------------------------------------


def test_mechanism_text_from_a_hostile_zone_is_quoted_in_received_spf(stack):
    sent = transaction(stack.port, b"a@hostile-mech.test", [b"bob@example.org"], ip=GOOD_IP)
    _, rspf, _ = delivered_fields(stack, sent)
    word, pairs = received_spf_pairs(rspf)
    assert (word, list(pairs)) == ("pass", OUR_KEYS)
    assert pairs["mechanism"] == 'include:a;b=c"d(e).evil.test'


def test_reject_reply_for_a_hostile_sender_and_record_is_one_sanitised_line(stack):
    sender = b'"x\x01;y=z\xc3\xa9"@hostile-spf.test'
    sent = transaction(stack.port, sender, [b"carol@strict.test", b"bob@example.org"], ip=GOOD_IP)
    reply = sent.replies["rcpt:0"]
    assert (reply.code, reply.text.split()[0]) == (550, b"5.7.24")
    assert b"\n" not in reply.text and b"\r" not in reply.text
    assert clean(sender.decode("utf-8", "surrogateescape")).replace("%", "?").encode() in reply.text
    _, rspf, ar = delivered_fields(stack, sent)
    assert received_spf_pairs(rspf)[0] == "permerror"
    assert results_by_key(parse_ar(ar))["smtp.mailfrom"] == ("permerror", "hostile-spf.test")


def test_hostile_spf_explanation_never_reaches_a_header_or_a_reply(stack):
    sent = transaction(stack.port, b"a@hostile-exp.test", [b"carol@strict.test", b"bob@example.org"], ip=GOOD_IP)
    reply = sent.replies["rcpt:0"]
    assert (reply.code, reply.text.split()[0]) == (550, b"5.7.23")
    assert b"X-Injected" not in reply.text
    message, rspf, ar = delivered_fields(stack, sent)
    assert "X-Injected" not in rspf + ar
    assert received_spf_pairs(rspf)[0] == "fail"


# -- what Postfix never lets through, at the engine: CR, LF, NUL in HELO and MAIL FROM -------------------------

RAW = ["\r\nX-Injected: 1", "a\x00b", "\n\tfolded=1;", "\u2028line separator", "\udcff lone surrogate", "x" * 2000]


@pytest.mark.parametrize("value", RAW, ids=["CRLF", "NUL", "LF TAB", "U+2028", "surrogate", "2000 chars"])
def test_engine_headers_stay_single_fields_for_values_postfix_would_refuse(hostile_dns, value):
    config = parse(f'trusted_networks = []\nauthserv_id = "mx.test"\n[bounce]\nenabled = false\n[dns]\n'
                   f'nameservers = ["127.0.0.1:{hostile_dns.port}"]\ntimeout = 0.5\nbudget = 3.0\n')  # fmt: skip
    fields = check_report(Engine.from_config(config), GOOD_IP, f"helo{value}.test", f"user{value}@good.test")["headers"]
    for name, field in fields.items():
        well_formed_field(name, field)
    word, pairs = received_spf_pairs(fields["Received-SPF"])
    assert list(pairs)[:5] == OUR_KEYS[:5]
    assert pairs["helo"] == clean(f"helo{value}.test", LIMIT_NAME)
    assert pairs["envelope-from"] == clean(f"user{value}@good.test", LIMIT_ADDRESS)
    assert [r.method for r in parse_ar(fields["Authentication-Results"]).results] == ["iprev", "spf", "spf"]
