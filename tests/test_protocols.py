"""What the milter negotiates with each MTA and socket: which stages are sent, and which wait for a reply."""

from __future__ import annotations

import Milter

from .test_callbacks import NO_REPLY, POSTFIX_TCP, SENDMAIL_TCP, UNIX, make, negotiated


def test_on_a_unix_socket_unused_stages_are_left_out_and_only_rcpt_body_and_eom_are_waited_for():
    """The MTA then sends no DATA, end-of-headers or unknown-command events and does not wait for a reply to
    connect, HELO, MAIL FROM or any header (fewer round trips per message)."""
    skipped, protocol = negotiated(make(UNIX))
    assert skipped == {"data", "eoh", "unknown"}
    assert protocol & NO_REPLY == Milter.P_NR_CONN | Milter.P_NR_HELO | Milter.P_NR_MAIL | Milter.P_NR_HDR
    assert protocol & Milter.P_SKIP


def test_postfix_on_tcp_also_waits_for_data_and_nothing_else_is_added():
    """Unanswered, DATA's macros would be the one write Postfix flushes with no reply to follow, and its
    next write would wait ~40 ms for the milter's delayed ACK."""
    skipped, protocol = negotiated(make(POSTFIX_TCP))
    assert skipped == {"eoh", "unknown"}
    assert protocol & NO_REPLY == Milter.P_NR_CONN | Milter.P_NR_HELO | Milter.P_NR_MAIL | Milter.P_NR_HDR
    assert protocol & Milter.P_SKIP


def test_sendmail_on_tcp_gets_every_stage_negotiated_and_answered():
    """Sendmail writes each command at once, with Nagle on: a command after one with no reply would stall."""
    skipped, protocol = negotiated(make(SENDMAIL_TCP))
    assert skipped == set()
    assert protocol & NO_REPLY == 0
    assert protocol & Milter.P_SKIP


def test_an_mta_without_no_reply_stages_gets_an_answer_at_every_stage():
    """Sendmail before 8.14 (milter protocol 2) knows no P_NR_* bits: mailwarden must answer each command."""
    milter = make(UNIX)
    options = [0x1FF, Milter.P_NODATA | Milter.P_NOEOH | Milter.P_NOUNKNOWN, 0, 0]
    milter.negotiate(options)
    assert milter.connect("client.test", 4, ("192.0.2.1", 25)) == Milter.CONTINUE
    assert milter.hello("client.test") == Milter.CONTINUE


def test_header_values_are_asked_for_verbatim_when_the_mta_offers_it():
    """P_HDR_LEADSPC: DKIM's simple canonicalisation hashes the white space after the colon, which the MTA
    otherwise cuts; our own fields then carry their leading space themselves."""
    for config in (UNIX, POSTFIX_TCP, SENDMAIL_TCP):
        milter = make(config)
        options = [0x1FF, NO_REPLY | Milter.P_SKIP | Milter.P_HDR_LEADSPC, 0, 0]
        milter.negotiate(options)
        assert options[1] & Milter.P_HDR_LEADSPC
    _, protocol = negotiated(make(UNIX))  # not offered: not asked for
    assert not protocol & Milter.P_HDR_LEADSPC
