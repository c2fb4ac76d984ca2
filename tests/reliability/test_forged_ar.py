"""Forged verdicts through real Postfix: every incoming Authentication-Results that claims our authserv-id is
removed (RFC 8601 §5), whatever its spelling; A-R of other authserv-ids stay byte for byte; an incoming
Received-SPF stays below ours. The variants below are the table in docs/reliability.md."""

from __future__ import annotations

import pytest

from mailwarden.headers import authserv_id_of

from ..conftest import AUTHSERV_ID, LIAR_IP
from .conftest import header_names, our_ar, results_by_key
from .rawsmtp import transaction

# (variant, raw value after "Authentication-Results:"); each carries the token FORGED so we can find it
CLAIMS_OUR_ID = [
    ("exact", b" mx.mailwarden.test; spf=pass smtp.mailfrom=FORGED.test"),
    ("upper case", b" MX.MAILWARDEN.TEST; spf=pass smtp.mailfrom=FORGED.test"),
    ("mixed case", b" Mx.MailWarden.Test; spf=pass smtp.mailfrom=FORGED.test"),
    ("extra spaces", b"    mx.mailwarden.test    ;    spf=pass    smtp.mailfrom=FORGED.test"),
    ("tab before ;", b" mx.mailwarden.test\t; spf=pass smtp.mailfrom=FORGED.test"),
    ("no space after colon", b"mx.mailwarden.test; spf=pass smtp.mailfrom=FORGED.test"),
    ("leading comment", b" (forged) mx.mailwarden.test; spf=pass smtp.mailfrom=FORGED.test"),
    ("nested comment", b" (a (b (c)) d) mx.mailwarden.test; spf=pass smtp.mailfrom=FORGED.test"),
    ("comment with quoted-pair", b" (a \\) b) mx.mailwarden.test; spf=pass smtp.mailfrom=FORGED.test"),
    ("empty comment", b" () mx.mailwarden.test; spf=pass smtp.mailfrom=FORGED.test"),
    ("comment after id", b" mx.mailwarden.test (trust me); spf=pass smtp.mailfrom=FORGED.test"),
    ("comment glued to id", b" mx.mailwarden.test(trust me); spf=pass smtp.mailfrom=FORGED.test"),
    ("version 1", b" mx.mailwarden.test 1; spf=pass smtp.mailfrom=FORGED.test"),
    ("version with comments", b" mx.mailwarden.test (c) 1 (d); spf=pass smtp.mailfrom=FORGED.test"),
    ("unknown version 2", b" mx.mailwarden.test 2; spf=pass smtp.mailfrom=FORGED.test"),
    ("folded results", b" mx.mailwarden.test;\r\n\tspf=pass\r\n\tsmtp.mailfrom=FORGED.test"),
    ("folded before the id", b"\r\n mx.mailwarden.test; spf=pass smtp.mailfrom=FORGED.test"),
    ("folded inside a comment", b" (a\r\n b) mx.mailwarden.test; spf=pass smtp.mailfrom=FORGED.test"),
    ("unparseable after id", b" mx.mailwarden.test;;; this (does not parse FORGED"),
    ("quoted-pair comment, unparseable after id", b" (a \\) b) mx.mailwarden.test;;; this (does not parse FORGED"),
    ("dangling property", b" mx.mailwarden.test; spf=pass smtp.mailfrom= FORGED"),
    ("id only", b" mx.mailwarden.test (FORGED)"),
    ("none", b" mx.mailwarden.test; none (FORGED)"),
    ("8-bit after id", b" mx.mailwarden.test; spf=pass (\xc3\xa9\xff) smtp.mailfrom=FORGED.test"),
    ("very long, folded 40 times", b" mx.mailwarden.test;" + b"\r\n\tspf=pass smtp.mailfrom=FORGED.test;" * 40),
    ("header name lower case", b" mx.mailwarden.test; spf=pass smtp.mailfrom=FORGED.test"),
    ("header name upper case", b" mx.mailwarden.test; spf=pass smtp.mailfrom=FORGED.test"),
    ("trailing dot on the id", b" mx.mailwarden.test.; spf=pass smtp.mailfrom=FORGED.test"),
    ("id as a quoted-string", b' "mx.mailwarden.test"; spf=pass smtp.mailfrom=FORGED.test'),
]
HEADER_NAME = {"header name lower case": b"authentication-results", "header name upper case": b"AUTHENTICATION-RESULTS"}
# Known bugs by variant name (xfail). The trailing dot, quoted-string and quoted-pair variants failed until 47a1c74.
BUGS: dict[str, str] = {}

OTHER_IDS = [
    ("other id", b" other.example; spf=pass smtp.mailfrom=KEPT.test"),
    ("our id plus a suffix", b" mx.mailwarden.test.evil; spf=pass smtp.mailfrom=KEPT.test"),
    ("our id plus a prefix", b" evil-mx.mailwarden.test; spf=pass smtp.mailfrom=KEPT.test"),
    ("a subdomain of our id", b" sub.mx.mailwarden.test; spf=pass smtp.mailfrom=KEPT.test"),
    ("our id inside a comment of another", b" other.example; spf=pass (mx.mailwarden.test) smtp.mailfrom=KEPT.test"),
    ("our id in a comment before another id", b" (mx.mailwarden.test) other.example; spf=pass smtp.mailfrom=KEPT.test"),
    ("our id in a quoted reason", b' other.example 1; spf=pass reason="mx.mailwarden.test; KEPT"'),
    ("other id, folded", b" other.example;\r\n\tspf=pass\r\n\tsmtp.mailfrom=KEPT.test"),
]  # fmt: skip

FORGED_RSPF = b"Received-SPF: pass (mx.mailwarden.test: forged) client-ip=192.0.2.20; RSPF-FORGED\r\n"


def send_with(stack, headers: bytes):
    sent = transaction(stack.port, b"mallory@bad.test", [b"bob@example.org"], ip=LIAR_IP, helo=b"liar.test",
                       headers=headers)  # fmt: skip
    assert sent.replies["data"].code == 250, sent.replies
    delivered = stack.postfix.delivered(sent.marker)
    files = (stack.postfix.maildir / "new").iterdir()
    raw = next(data for data in (p.read_bytes() for p in files) if sent.marker.encode() in data)
    return delivered, raw


def assert_ours_on_top_and_intact(message) -> None:
    names = header_names(message)
    assert names[:3] == ["received-spf", "authentication-results", "received"]
    (ours,) = our_ar(message)
    assert results_by_key(ours)["smtp.mailfrom"] == ("fail", "bad.test")
    assert message.get_all("Received-SPF")[0].startswith("fail (mx.mailwarden.test:")


@pytest.mark.parametrize(
    "variant",
    [pytest.param(v, marks=pytest.mark.xfail(strict=True, reason=BUGS[v[0]])) if v[0] in BUGS else v
     for v in CLAIMS_OUR_ID],
    ids=[v[0] for v in CLAIMS_OUR_ID],
)  # fmt: skip
def test_forged_ar_claiming_our_id_is_removed(stack, variant):
    name, value = variant
    header = HEADER_NAME.get(name, b"Authentication-Results") + b":" + value + b"\r\n"
    message, raw = send_with(stack, header + FORGED_RSPF)
    assert b"FORGED.test" not in raw and b"FORGED" not in raw.replace(b"RSPF-FORGED", b"")
    assert len(message.get_all("Authentication-Results")) == 1
    assert_ours_on_top_and_intact(message)


@pytest.mark.parametrize("variant", OTHER_IDS, ids=[v[0] for v in OTHER_IDS])
def test_ar_of_another_authserv_id_is_kept_byte_for_byte(stack, variant):
    _, value = variant
    header = b"Authentication-Results:" + value + b"\r\n"
    message, raw = send_with(stack, header)
    assert header in raw.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")
    assert len(message.get_all("Authentication-Results")) == 2
    assert_ours_on_top_and_intact(message)


def test_several_forged_among_others_are_all_removed_and_the_others_keep_their_order(stack):
    forged = [v for n, v in CLAIMS_OUR_ID if n not in BUGS and n not in HEADER_NAME]
    kept = [v for _, v in OTHER_IDS]
    headers = b""
    for i in range(max(len(forged), len(kept))):  # interleaved: forged, kept, forged, kept, ...
        if i < len(forged):
            headers += b"Authentication-Results:" + forged[i] + b"\r\n"
        if i < len(kept):
            headers += b"Authentication-Results:" + kept[i] + b"\r\n"
    headers += b"".join(b"Authentication-Results: mx.mailwarden.test; spf=pass (FORGED %d)\r\n" % i for i in range(30))
    message, raw = send_with(stack, FORGED_RSPF + headers)
    assert b"FORGED.test" not in raw and b"(FORGED" not in raw
    values = message.get_all("Authentication-Results")
    assert len(values) == 1 + len(kept)
    assert [v.replace("\r\n", "\n") for v in values[1:]] == [
        k.decode()[1:].replace("\r\n", "\n") if not k.startswith(b"\r\n") else k.decode() for k in kept
    ]
    assert_ours_on_top_and_intact(message)
    assert f"forged_ar_removed={len(forged) + 30}" in stack.daemon.log()


def test_incoming_received_spf_stays_below_ours_and_below_postfix_received(stack):
    message, _ = send_with(stack, FORGED_RSPF + b"Received-SPF: pass (second forged) RSPF-FORGED\r\n")
    names = header_names(message)
    spf_positions = [i for i, n in enumerate(names) if n == "received-spf"]
    assert spf_positions[0] == 0 and len(spf_positions) == 3
    assert all(p > names.index("received") for p in spf_positions[1:])
    values = message.get_all("Received-SPF")
    assert values[0].startswith("fail (mx.mailwarden.test:")
    assert values[1:] == ["pass (mx.mailwarden.test: forged) client-ip=192.0.2.20; RSPF-FORGED",
                          "pass (second forged) RSPF-FORGED"]  # fmt: skip


UNIT_BUGS = BUGS


@pytest.mark.parametrize(
    ("value", "claims"),
    [pytest.param(v.decode("utf-8", "replace"), True, id=n,
                  marks=[pytest.mark.xfail(strict=True, reason=UNIT_BUGS[n])] if n in UNIT_BUGS else [])
     for n, v in CLAIMS_OUR_ID]
    + [pytest.param(v.decode("utf-8", "replace"), False, id=n) for n, v in OTHER_IDS],
)  # fmt: skip
def test_authserv_id_extraction_agrees_with_the_table(value, claims):
    """The unit under the e2e table, so that a regression names the function, not just the message."""
    assert (authserv_id_of(value) == AUTHSERV_ID) is claims
