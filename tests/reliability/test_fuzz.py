"""Property-based fuzzing (hypothesis) of everything that parses or writes attacker-controlled text: the header
builders and sanitisers, the authserv-id extraction of incoming A-R fields, the configuration loader and the
bounce parser/extractor. Short in CI; MAILWARDEN_NIGHTLY=1 runs >= 10^5 generated inputs in all (the figures
are in docs/reliability.md)."""

from __future__ import annotations

import logging
import random
import re
from logging.handlers import BufferingHandler
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mailwarden.checks.base import CheckResult
from mailwarden.checks.iprev import IprevResult
from mailwarden.checks.spf import SpfResult, received_spf
from mailwarden.classifier import BounceClassifier, header_value
from mailwarden.config import ACTIONS, Config, ConfigError, parse, policy_keys, policy_options
from mailwarden.headers import (
    LIMIT_ADDRESS,
    LIMIT_NAME,
    LIMIT_TEXT,
    authentication_results,
    authserv_id_of,
    clean,
)

from .conftest import parse_ar, received_spf_pairs, scale, unquote, well_formed_field

SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}
CORPUS = Path(__file__).resolve().parents[1] / "data" / "dsn-corpus" / "eml"
SPF_WORDS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
IPREV_WORDS = ("pass", "fail", "temperror", "permerror")

# Text an attacker would try: header syntax, folding, controls, 8-bit, and lone surrogates (U+DC80..U+DCFF are
# how pymilter's surrogateescape hands over bytes that are not UTF-8; clean() raised on the others until 289201c).
hostile = st.text(
    alphabet=st.one_of(
        st.sampled_from(list(';=()"\\\r\n\t\x00 .@<>:,[]%')),
        st.characters(codec="ascii"),
        st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"]),
    ),
    max_size=400,
)
addresses = st.one_of(st.ip_addresses().map(str), hostile)
domains = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?){1,3}\Z")


# -- header builders and sanitisers ------------------------------------------------------------------------------


@st.composite
def spf_results(draw, identity: str):
    return SpfResult("spf", draw(st.sampled_from(SPF_WORDS)), draw(hostile), identity, draw(hostile), draw(hostile),
                     draw(hostile), draw(hostile), draw(hostile))  # fmt: skip


@st.composite
def iprev_results(draw):
    """pass only ever comes with a real IP address (the check parses it first); other results with anything."""
    word = draw(st.sampled_from(IPREV_WORDS))
    ip = draw(st.ip_addresses().map(str) if word == "pass" else addresses)
    return IprevResult("iprev", word, draw(hostile), ip=ip, names=tuple(draw(st.lists(hostile, min_size=1,
                                                                                       max_size=3))))  # fmt: skip


@given(value=hostile, limit=st.integers(4, 400))
@settings(max_examples=scale(500, 30_000), **SETTINGS)
def test_clean_gives_bounded_printable_ascii_and_keeps_every_character(value, limit):
    out = clean(value, limit)
    assert len(out) <= limit and all(0x20 <= ord(c) < 0x7F for c in out)
    full = clean(value, 10**6)
    assert out == full or (out.endswith("...") and full.startswith(out[:-3]))
    try:
        raw = value.encode("utf-8", "surrogateescape")  # pymilter's undecodable bytes: back as they were
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogatepass")  # any other lone surrogate: its three bytes
    # nothing dropped: each input byte is itself (printable ASCII) or its %XX, in order
    assert full == "".join(chr(b) if 0x20 <= b < 0x7F else f"%{b:02X}" for b in raw)


@given(mailfrom=spf_results("mailfrom"), helo=hostile, ip=addresses, receiver=domains)
@settings(max_examples=scale(500, 20_000), **SETTINGS)
def test_received_spf_is_one_field_whose_pairs_parse_back_to_the_clean_values(mailfrom, helo, ip, receiver):
    value = received_spf(mailfrom, ip, helo, receiver)
    well_formed_field("Received-SPF", value)
    word, pairs = received_spf_pairs(value)
    assert word == mailfrom.result
    expected = {"client-ip": clean(ip, 64), "envelope-from": clean(mailfrom.sender, LIMIT_ADDRESS),
                "helo": clean(helo, LIMIT_NAME), "receiver": receiver, "identity": "mailfrom"}  # fmt: skip
    if mailfrom.mechanism:
        expected["mechanism"] = clean(mailfrom.mechanism)
    if mailfrom.problem:
        expected["problem"] = clean(mailfrom.problem)
    assert pairs == expected


def assert_authentication_results_reads_back(iprev, helo, mailfrom, authserv_id) -> None:
    value = authentication_results(authserv_id, [iprev, helo, mailfrom])
    well_formed_field("Authentication-Results", value)
    parsed = parse_ar(value)
    assert parsed.authserv_id == authserv_id
    assert [(r.method, r.result) for r in parsed.results] == [
        ("iprev", iprev.result), ("spf", helo.result), ("spf", mailfrom.result)]  # fmt: skip
    props = [[(p.type, p.name, unquote(p.value)) for p in r.properties] for r in parsed.results]
    expected = [("policy", "iprev", clean(iprev.ip, 64)), ("smtp", "helo", clean(helo.domain, LIMIT_NAME)),
                ("smtp", "mailfrom", clean(mailfrom.domain, LIMIT_NAME))]  # fmt: skip
    # authres leaves out a property whose value is empty (a client that sent no HELO): see docs/reliability.md
    assert props == [[p] if p[2] else [] for p in expected]
    assert authserv_id_of(value) == authserv_id


@given(iprev=iprev_results(), helo=spf_results("helo"), mailfrom=spf_results("mailfrom"), authserv_id=domains)
@settings(max_examples=scale(300, 10_000), **SETTINGS)
def test_authentication_results_is_one_field_that_authres_reads_back(iprev, helo, mailfrom, authserv_id):
    assert_authentication_results_reads_back(iprev, helo, mailfrom, authserv_id)


@pytest.mark.parametrize("domain", ["x;spf=pass smtp.mailfrom=paypal.com@evil.test", "a b@c", "a(b)@c", 'a"b@c', ":@"])
def test_authentication_results_reads_back_for_domains_with_at_signs(domain):
    """authres writes a value with '@' verbatim (local-part@domain form): these escaped it until aefee12."""
    iprev = IprevResult("iprev", "pass", "ok", ip="192.0.2.1", names=("h.test",))
    helo = SpfResult("spf", "none", "r", "helo", f"postmaster@{domain}", domain)
    mailfrom = SpfResult("spf", "pass", "r", "mailfrom", "a@b.test", "b.test")
    assert_authentication_results_reads_back(iprev, helo, mailfrom, "mx.example.org")


@given(authserv_id=domains, skipped=hostile, method=st.from_regex(r"\A[a-z][a-z0-9-]{0,15}\Z"), reason=hostile)
@settings(max_examples=scale(300, 10_000), **SETTINGS)
def test_skipped_and_other_results_are_one_field_too(authserv_id, skipped, method, reason):
    for value in (authentication_results(authserv_id, [], skipped),
                  authentication_results(authserv_id, [CheckResult(method, "temperror", reason)])):  # fmt: skip
        well_formed_field("Authentication-Results", value)
        assert parse_ar(value).authserv_id == authserv_id
        assert authserv_id_of(value) == authserv_id


# -- authserv-id of incoming fields --------------------------------------------------------------------------------

OUR_ID = "mx.mailwarden.test"
ctext = st.text(alphabet=st.characters(codec="ascii", exclude_characters="()\\\r\n"), max_size=20)


@st.composite
def comments(draw, quoted_pairs: bool = False, depth: int = 2):
    parts = [draw(ctext)]
    for _ in range(draw(st.integers(0, 2))):
        if depth and draw(st.booleans()):
            parts.append(draw(comments(quoted_pairs, depth - 1)))
        if quoted_pairs and draw(st.booleans()):
            parts.append("\\" + draw(st.sampled_from(list("()\\x"))))
        parts.append(draw(ctext))
    return "(" + "".join(parts) + ")"


fws = st.sampled_from(["", " ", "  ", "\t", "\r\n ", "\r\n\t", " \r\n  "])


@st.composite
def claims(draw, quoted_pairs: bool = False):
    """An incoming A-R value that claims our id, however it is dressed up."""
    prefix = "".join(draw(fws) + draw(comments(quoted_pairs)) for _ in range(draw(st.integers(0, 3))))
    spelled = "".join(c.upper() if draw(st.booleans()) else c for c in OUR_ID)
    version = draw(st.sampled_from(["", " 1", " (v) 1", "  2 "]))
    delimiter = draw(st.sampled_from([";", " ;", "\t;", "(", " (x);", "\r\n\t;", ""]))
    rest = draw(hostile) if delimiter else ""
    return prefix + draw(fws) + spelled + version + delimiter + rest


@given(value=hostile)
@settings(max_examples=scale(1000, 30_000), **SETTINGS)
def test_authserv_id_extraction_never_raises(value):
    assert isinstance(authserv_id_of(value), str)


@given(value=claims())
@settings(max_examples=scale(500, 20_000), **SETTINGS)
def test_every_dressing_of_our_id_is_recognised(value):
    assert authserv_id_of(value) == OUR_ID


@given(value=claims(quoted_pairs=True))
@settings(max_examples=scale(500, 20_000), **SETTINGS)
def test_every_dressing_of_our_id_with_quoted_pairs_in_comments_is_recognised(value):
    assert authserv_id_of(value) == OUR_ID


@given(other=domains, rest=hostile, prefix=comments())
@settings(max_examples=scale(500, 10_000), **SETTINGS)
def test_other_ids_are_not_taken_for_ours(other, rest, prefix):
    assume(other.lower() != OUR_ID)
    assert authserv_id_of(f"{prefix} {other}; {rest}") != OUR_ID


# -- configuration loader --------------------------------------------------------------------------------------------

EXAMPLE = (Path(__file__).resolve().parents[2] / "conf" / "mailwarden.toml").read_text()
toml_scalars = st.one_of(
    st.integers(-(2**70), 2**70).map(str), st.floats(allow_nan=True).map(lambda f: repr(f).replace("inf", "inf")),
    st.booleans().map(lambda b: str(b).lower()), hostile.map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"')
    + '"'), st.sampled_from(['"0660"', '"0999"', '"unix:/x"', '"inet:1@h"', '"127.0.0.1:53"', '"[::1]:53"',
                             '"::1"', '"10.0.0.0/8"', '"accept"', '"reject"', '"defer"', "1979-05-27", "[]", "{}"]),
)  # fmt: skip
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.dictionaries(st.from_regex(r"\A[a-z_]{1,12}\Z"), inner, max_size=3).map(
        lambda d: "{" + ", ".join(f"{k} = {v}" for k, v in d.items()) + "}")), max_leaves=8)  # fmt: skip
LINES = EXAMPLE.splitlines()
TABLES = [
    "dns",
    "policy",
    "bounce",
    "metrics",
    'domains."x.test".policy',
    'domains."bad domain".policy',
    "domains",
    "x",
]


@st.composite
def mutated_config(draw):
    """The documented example with some values replaced, lines dropped, duplicated or garbled."""
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["value", "value", "drop", "dup", "garble", "key", "table"]))
        if action == "value" and " = " in lines[i]:
            lines[i] = lines[i].split(" = ")[0] + " = " + draw(toml_values)
        elif action == "drop":
            del lines[i]
        elif action == "dup":
            lines.insert(i, lines[i])
        elif action == "garble":
            lines[i] = draw(hostile)
        elif action == "key":
            lines.insert(i, draw(st.from_regex(r"\A[a-z_.\"]{1,20}\Z")) + " = " + draw(toml_values))
        else:
            lines.insert(i, "[" + draw(st.sampled_from(TABLES)) + "]")
    return "\n".join(lines) + "\n"


def assert_config_or_config_error(text: str) -> None:
    try:
        config = parse(text, "fuzz.toml")
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        assert str(exc).startswith("fuzz.toml: invalid configuration:")
        return
    assert isinstance(config, Config)
    assert set(config.policy) == {*policy_keys(), *policy_options()}
    for policy in (config.policy, *config.domains.values()):
        assert {policy[key] for key in policy_keys()} <= set(ACTIONS)
        assert all(isinstance(policy[key], bool) for key in policy_options())
    assert 0.01 <= config.dns.timeout <= 60 and 0.01 <= config.dns.budget <= 300


@given(text=st.one_of(hostile, st.text(max_size=2000)))
@settings(max_examples=scale(500, 20_000), **SETTINGS)
def test_config_loader_gives_config_or_config_error_for_any_text(text):
    assert_config_or_config_error(text)


@given(text=mutated_config())
@settings(max_examples=scale(500, 20_000), **SETTINGS)
def test_config_loader_gives_config_or_config_error_for_mutated_example(text):
    assert_config_or_config_error(text)


# -- bounce parser and extractor ------------------------------------------------------------------------------------

FIELD = re.compile(r"^[^;\s]+; category=[a-z-]+; type=[a-z]+; status=(?:[0-9.]+|none); confidence=[01]\.\d\d; "
                   r"model=[0-9a-f]{12}$")  # fmt: skip
CORPUS_FILES = sorted(CORPUS.glob("*.eml"))
INSERTS = [b"\r\n--", b"\n\n", b"Content-Type: multipart/mixed; boundary=x\n", b"=?utf-8?b?", b"\x00\xff",
           b"Final-Recipient: rfc822; <", b";"]  # fmt: skip


@pytest.fixture(scope="module")
def classifier() -> BounceClassifier:
    return BounceClassifier.load()


def analyse_safely(classifier: BounceClassifier, raw: bytes) -> None:
    """analyse() never raises, and its safety net never has to catch anything: a parser exception would cost
    the message its bounce labels. The safety net answers "not a bounce", as for a message that parsed and held
    nothing, and logs a WARNING ("bounce analysis failed"): that line is what tells a crash from an empty result.
    Every X-Mailwarden-Bounce value is one well-formed field."""
    watcher = BufferingHandler(capacity=100)
    watcher.setLevel(logging.WARNING)
    logger = logging.getLogger("mailwarden.classifier")
    assert logger.isEnabledFor(logging.WARNING), "the safety net's warning would be dropped before the watcher"
    logger.addHandler(watcher)
    try:
        report = classifier.analyse(raw)
    finally:
        logger.removeHandler(watcher)
    assert not watcher.buffer, [record.getMessage() for record in watcher.buffer]
    for verdict in report.recipients:
        value = header_value(verdict, classifier.model_id)
        assert FIELD.match(value), value
        well_formed_field("X-Mailwarden-Bounce", value)


@pytest.mark.parametrize("recipient", ["\u0080", "\u00fc\u00fc\u00fc", "<\u00fc>"])
def test_bounce_label_of_a_non_ascii_recipient_is_printable_ascii(classifier, recipient):
    """Raw 8-bit characters reached X-Mailwarden-Bounce until aefee12."""
    raw = (DSN_TEMPLATE % recipient).encode()
    report = classifier.analyse(raw)
    assert report.bounce and report.recipients
    for verdict in report.recipients:
        value = header_value(verdict, classifier.model_id)
        assert all(0x20 <= ord(c) < 0x7F for c in value), value


DSN_TEMPLATE = (
    "From: MAILER-DAEMON@mx.test\nSubject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
    'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n--b\nContent-Type: text/plain\n\n'
    "Your message could not be delivered.\n\n--b\nContent-Type: message/delivery-status\n\n"
    "Reporting-MTA: dns; mx.test\n\nFinal-Recipient: rfc822; %s\nAction: failed\nStatus: 5.1.1\n"
    "Diagnostic-Code: smtp; 550 5.1.1 user unknown\n\n"
    "--b--\n"
)


dsn_field = st.text(alphabet=st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]), max_size=120)
body_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]))


@st.composite
def dsns(draw):
    """A delivery-status notification with hostile field values, boundaries and structure."""
    boundary = draw(st.text(alphabet=st.characters(codec="ascii", exclude_characters='"\r\n'), min_size=1,
                            max_size=70))  # fmt: skip
    used = boundary if draw(st.booleans()) else draw(body_text)[:10]
    recipients = draw(st.lists(dsn_field, min_size=0, max_size=4))
    blocks = "".join(
        f"Final-Recipient: {draw(st.sampled_from(['rfc822; ', '', 'x-unknown; ']))}{r}\n"
        f"Action: {draw(st.sampled_from(['failed', 'delayed', 'delivered', '']))}{draw(dsn_field)}\n"
        f"Status: {draw(st.sampled_from(['5.1.1', '4.2.2', '9.9.9', '']))}{draw(dsn_field)}\n"
        f"Diagnostic-Code: smtp; {draw(dsn_field)}\n\n"
        for r in recipients
    )
    text = (
        f"From: {draw(st.sampled_from(['MAILER-DAEMON@mx.test', 'postmaster@x', draw(dsn_field)]))}\n"
        f"Subject: {draw(st.sampled_from(['Undelivered Mail Returned to Sender', 'Delivery Status Notification', draw(dsn_field)]))}\n"  # noqa: E501
        f'MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\n\n'
        f"--{used}\nContent-Type: text/plain; charset={draw(st.sampled_from(['utf-8', 'x-bogus', 'iso-8859-1']))}\n"
        f"Content-Transfer-Encoding: {draw(st.sampled_from(['7bit', 'base64', 'quoted-printable', 'x-bad']))}\n\n"
        f"{draw(body_text)[:300]}\n--{used}\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; {draw(dsn_field)}\n\n{blocks}--{used}\nContent-Type: message/rfc822\n\n"
        f"{draw(body_text)[:200]}\n--{used}--\n"
    )
    return text.encode("utf-8", "surrogateescape")


@st.composite
def mutated_corpus(draw):
    raw = bytearray(CORPUS_FILES[draw(st.integers(0, len(CORPUS_FILES) - 1))].read_bytes())
    rng = random.Random(draw(st.integers(0, 2**32)))
    for _ in range(draw(st.integers(1, 8))):
        op = rng.choice(["flip", "cut", "insert", "dup", "delete"])
        at = rng.randrange(len(raw) + 1)
        if op == "flip" and raw:
            raw[min(at, len(raw) - 1)] = rng.randrange(256)
        elif op == "cut":
            del raw[at:]
        elif op == "insert":
            raw[at:at] = draw(st.sampled_from(INSERTS))
        elif op == "dup":
            raw[at:at] = raw[at : at + rng.randrange(2000)]
        else:
            del raw[at : at + rng.randrange(500)]
    return bytes(raw)


@given(raw=st.binary(max_size=3000))
@settings(max_examples=scale(200, 10_000), **SETTINGS)
def test_bounce_analysis_of_random_bytes(classifier, raw):
    analyse_safely(classifier, raw)


@given(raw=dsns())
@settings(max_examples=scale(200, 10_000), **SETTINGS)
def test_bounce_analysis_of_hostile_dsns(classifier, raw):
    analyse_safely(classifier, raw)


@given(raw=mutated_corpus())
@settings(max_examples=scale(200, 10_000), **SETTINGS)
def test_bounce_analysis_of_mutated_real_bounces(classifier, raw):
    analyse_safely(classifier, raw)


def test_limits_are_what_the_fuzzers_assume():
    assert (LIMIT_NAME, LIMIT_ADDRESS, LIMIT_TEXT) == (255, 320, 200)
