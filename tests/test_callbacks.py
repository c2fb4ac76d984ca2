"""What the milter negotiates with the MTA, and when it lets the MTA stop sending the body."""

from __future__ import annotations

import Milter
import pytest

from mailwarden.callbacks import Gate, MailwardenMilter, TcpMailwardenMilter
from mailwarden.config import Config
from mailwarden.engine import MAX_BOUNCE_BYTES, Engine
from mailwarden.session import Envelope

NO = {"connect": Milter.P_NOCONNECT, "helo": Milter.P_NOHELO, "mail": Milter.P_NOMAIL, "rcpt": Milter.P_NORCPT,
      "data": Milter.P_NODATA, "headers": Milter.P_NOHDRS, "eoh": Milter.P_NOEOH, "body": Milter.P_NOBODY,
      "unknown": Milter.P_NOUNKNOWN}  # fmt: skip
NO_REPLY = (Milter.P_NR_CONN | Milter.P_NR_HELO | Milter.P_NR_MAIL | Milter.P_NR_RCPT | Milter.P_NR_DATA
            | Milter.P_NR_HDR | Milter.P_NR_EOH | Milter.P_NR_BODY | Milter.P_NR_UNKN)  # fmt: skip


@pytest.fixture
def milter() -> MailwardenMilter:
    return MailwardenMilter(Engine(Config(), resolver=None), Gate())  # type: ignore[arg-type]


def negotiated(milter: MailwardenMilter) -> tuple[set[str], int]:
    """(stages the MTA is told to leave out, the protocol bits agreed) when the MTA offers everything."""
    options = [0x1FF, NO_REPLY | Milter.P_SKIP | sum(NO.values()), 0, 0]
    assert milter.negotiate(options) == Milter.CONTINUE
    return {stage for stage, bit in NO.items() if options[1] & bit}, options[1]


def test_on_a_unix_socket_stages_without_use_are_left_out_and_every_other_is_answered(milter):
    """Postfix then sends no DATA, end-of-headers or unknown-command events (fewer round trips per message)
    and never a command that waits for no reply."""
    skipped, protocol = negotiated(milter)
    assert skipped == {"data", "eoh", "unknown"}
    assert protocol & NO_REPLY == 0
    assert protocol & Milter.P_SKIP


def test_on_tcp_every_stage_is_negotiated_and_answered():
    """Leaving stages out, or replies, makes Postfix stall ~40 ms per message on TCP."""
    skipped, protocol = negotiated(TcpMailwardenMilter(Engine(Config(), resolver=None), Gate()))  # type: ignore[arg-type]
    assert skipped == set()
    assert protocol & NO_REPLY == 0
    assert protocol & Milter.P_SKIP


def test_body_of_a_message_that_is_no_bounce_is_skipped_at_once(milter):
    milter.envelope = Envelope(sender="alice@good.test")
    assert milter.body(b"x" * 100) == Milter.SKIP


def test_body_of_a_possible_bounce_is_read_up_to_the_limit_then_skipped(milter):
    milter.envelope = Envelope(sender="", body=bytearray())
    chunk = b"y" * 65536
    replies = [milter.body(chunk) for _ in range(MAX_BOUNCE_BYTES // len(chunk) + 2)]
    assert replies[: MAX_BOUNCE_BYTES // len(chunk)] == [Milter.CONTINUE] * (MAX_BOUNCE_BYTES // len(chunk))
    assert replies[-1] == Milter.SKIP
    assert len(milter.envelope.body) == MAX_BOUNCE_BYTES
