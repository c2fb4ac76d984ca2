"""When the milter lets the MTA stop sending the body, and how a failure at a stage that takes no reply still
reaches the MTA as a temporary failure."""

from __future__ import annotations

import Milter
import pytest

from mailwarden.callbacks import MailwardenMilter
from mailwarden.config import Config
from mailwarden.daemon import Gate
from mailwarden.engine import MAX_BOUNCE_BYTES, Engine
from mailwarden.protocols import milter_class
from mailwarden.session import Envelope

NO = {"connect": Milter.P_NOCONNECT, "helo": Milter.P_NOHELO, "mail": Milter.P_NOMAIL, "rcpt": Milter.P_NORCPT,
      "data": Milter.P_NODATA, "headers": Milter.P_NOHDRS, "eoh": Milter.P_NOEOH, "body": Milter.P_NOBODY,
      "unknown": Milter.P_NOUNKNOWN}  # fmt: skip
NO_REPLY = (Milter.P_NR_CONN | Milter.P_NR_HELO | Milter.P_NR_MAIL | Milter.P_NR_RCPT | Milter.P_NR_DATA
            | Milter.P_NR_HDR | Milter.P_NR_EOH | Milter.P_NR_BODY | Milter.P_NR_UNKN)  # fmt: skip


class Recorded:
    """Stands in for the libmilter context: keeps the replies set with setreply() and the fields added."""

    def __init__(self) -> None:
        self.replies: list[tuple[str, ...]] = []
        self.added: list[tuple[str, str, int]] = []

    def setreply(self, *reply: str) -> None:
        self.replies.append(reply)

    def addheader(self, name: str, value: str, index: int) -> None:
        self.added.append((name, value, index))

    def getsymval(self, name: str) -> None:
        return None


UNIX = Config(socket="unix:/run/mailwarden/milter.sock")
POSTFIX_TCP = Config(socket="inet:8894@127.0.0.1")
SENDMAIL_TCP = Config(socket="inet:8894@127.0.0.1", mta="sendmail")


def make(config: Config, gate: Gate | None = None) -> MailwardenMilter:
    milter = milter_class(config)(Engine(config, resolver=None), gate or Gate())  # type: ignore[arg-type]
    milter._ctx = Recorded()
    return milter


@pytest.fixture
def milter() -> MailwardenMilter:
    return make(UNIX)


def negotiated(milter: MailwardenMilter) -> tuple[set[str], int]:
    """(stages the MTA is told to leave out, the protocol bits agreed) when the MTA offers everything."""
    options = [0x1FF, NO_REPLY | Milter.P_SKIP | sum(NO.values()), 0, 0]
    assert milter.negotiate(options) == Milter.CONTINUE
    return {stage for stage, bit in NO.items() if options[1] & bit}, options[1]


def failing_header(milter: MailwardenMilter, monkeypatch: pytest.MonkeyPatch) -> int:
    """A header callback whose work raises, as a bug would."""
    milter.envelope = Envelope(sender="alice@good.test")
    monkeypatch.setattr("mailwarden.engine.authserv_id_of", lambda value: 1 / 0)
    return milter.header("Authentication-Results", "mx.test; spf=pass")


def test_a_failure_at_a_no_reply_stage_is_given_as_a_temporary_failure_at_end_of_message(milter, monkeypatch):
    negotiated(milter)
    assert failing_header(milter, monkeypatch) == Milter.NOREPLY
    assert milter.eom() == Milter.TEMPFAIL
    assert milter._ctx.replies == [("451", "4.3.0", "mailwarden: internal error, try again later")]


def test_where_headers_are_answered_a_failing_header_is_a_temporary_failure_at_once(monkeypatch):
    milter = make(SENDMAIL_TCP)
    negotiated(milter)
    assert failing_header(milter, monkeypatch) == Milter.TEMPFAIL
    assert milter._ctx.replies == [("451", "4.3.0", "mailwarden: internal error, try again later")]


def test_a_session_opened_while_draining_is_refused_at_its_first_answered_stage():
    gate = Gate()
    gate.drain(0)
    milter = make(UNIX, gate)
    negotiated(milter)
    assert milter.connect("client.test", 4, ("192.0.2.1", 25)) == Milter.NOREPLY
    assert milter.hello("client.test") == Milter.NOREPLY
    assert milter.envfrom("<alice@good.test>") == Milter.NOREPLY
    assert milter.envrcpt("<bob@example.test>") == Milter.TEMPFAIL
    assert milter._ctx.replies == [("421", "4.3.2", "mailwarden is shutting down, try again later")]
    assert gate.open == 0


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
