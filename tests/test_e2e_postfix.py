"""End to end: real Postfix, mailwarden started from its CLI, the loopback DNS server; assertions on the
delivered message and on the SMTP replies."""

from __future__ import annotations

import authres

from .conftest import AUTHSERV_ID, GOOD_IP, LIAR_IP, NOPTR_IP
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
            out[key] = (result.result, prop.value)
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
    }
