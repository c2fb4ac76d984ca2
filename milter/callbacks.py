"""The milter callbacks: each translates one pymilter call into the engine's terms and the engine's answer
into pymilter's, and does nothing else.

An exception anywhere here is turned into a temporary failure, so mail is never lost to a bug: at once where
the stage is answered, else at the next stage that is (RCPT or end of message); it then holds for the rest
of the connection. Which stages the MTA sends and waits for is the protocol's business (protocols.py).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import Milter

from . import metrics
from .classifier.addresses import bare_address
from .engine import Engine
from .headers import LIMIT_NAME, clean
from .log import event
from .session import Envelope, Session

if TYPE_CHECKING:
    from .daemon import Gate

Callback = TypeVar("Callback", bound=Callable[..., int])


Reply = tuple[str, str, str]  # SMTP code, enhanced status code, text
INTERNAL_ERROR: Reply = ("451", "4.3.0", "mailwarden: internal error, try again later")
SHUTTING_DOWN: Reply = ("421", "4.3.2", "mailwarden is shutting down, try again later")


def callback(stage: str, timed: bool = True) -> Callable[[Callback], Callback]:
    """Turn any exception of a milter callback into a temporary failure; time it (mailwarden_stage_seconds)
    unless it runs per header or body chunk, where the histogram would cost more than the callback.

    Exceptions are trapped here, in Python, because the daemon sets pymilter's own exception policy to
    CONTINUE: the only errors that reach pymilter are those raised before our code runs, and the one known
    is a HELO that is not UTF-8 (see `daemon.recover_undecodable_helo`). Once a session has failed, its callbacks
    no longer run: every stage that is answered gets the temporary failure.
    """

    def wrap(method: Callback) -> Callback:
        histogram = metrics.STAGE_SECONDS.labels(stage) if timed else None
        no_reply_bit = Milter.OPTIONAL_CALLBACKS.get(method.__name__, (0, 0))[0]

        @functools.wraps(method)
        def guarded(self: MailwardenMilter, *args: object) -> int:
            start = time.perf_counter() if histogram is not None else 0.0
            try:
                if self.failure is None:
                    return self.answer(method(self, *args), no_reply_bit)
            except Exception:
                event("callback-error", logging.ERROR, exc_info=True, stage=stage, client=self.session.ip)
                self.failure = INTERNAL_ERROR
            finally:
                if histogram is not None:
                    histogram.observe(time.perf_counter() - start)
            return self.answer(Milter.TEMPFAIL, no_reply_bit)

        guarded.redecorate = wrap  # type: ignore[attr-defined]  # for protocols.without_reply
        # pymilter's *_bytes glue looks this up on every call: decoding as its default does, but found rather
        # than missed (a missed getattr raises and catches an AttributeError, ~0.9 µs per header).
        return Milter.decode("surrogateescape")(guarded)  # type: ignore[return-value]

    return wrap


class UndecodedHelo(threading.local):
    """The bytes of a HELO that pymilter could not decode, for the session that sent it (see
    daemon.recover_undecodable_helo): pymilter runs every milter context in its own Python thread state, so a
    threading.local holds them for that session alone until envfrom() reads them."""

    raw: bytes | None = None


UNDECODED_HELO = UndecodedHelo()


class MailwardenMilter(Milter.Base):
    """The callbacks mailwarden uses, each negotiated and answered; protocols.py has the variants an MTA and a
    socket call for (stages left out or unanswered)."""

    def __init__(self, engine: Engine, gate: Gate) -> None:
        super().__init__()
        self.engine = engine  # bound for the whole connection: a reload never changes a running session
        self.gate = gate
        self.entered = False
        self.session = Session(ip="")
        self.envelope: Envelope | None = None
        self.failure: Reply | None = None  # the temporary failure every answered stage gets from now on
        self._protocol = 0  # pymilter sets the agreed protocol bits in negotiate(); an MTA may not negotiate

    def negotiate(self, opts: list[int]) -> int:
        """pymilter's negotiation without its per-connection search for @symlist macro lists (mailwarden sets
        none; the search misses seven attributes, ~7 µs per connection): ask the MTA to leave out what
        `protocol_mask` names, keep every action on offer. And header values verbatim (P_HDR_LEADSPC, which
        pymilter turns off): DKIM's simple canonicalisation hashes the white space after the colon, which
        the MTA otherwise cuts (one space, or none when the field had a tab or nothing there)."""
        self._actions = opts[0]
        opts[1] = self._protocol = opts[1] & (~self.protocol_mask() | Milter.P_HDR_LEADSPC)
        opts[2] = opts[3] = 0
        return Milter.CONTINUE

    @property
    def verbatim_headers(self) -> bool:
        return bool(self._protocol & Milter.P_HDR_LEADSPC)

    def answer(self, result: int, no_reply_bit: int) -> int:
        """What the MTA gets: nothing at a stage negotiated without reply (a failure waits for the next stage
        that is answered); otherwise the session's failure if it has one, else the callback's result."""
        if self._protocol & no_reply_bit:
            return Milter.NOREPLY
        if self.failure is not None:
            self.setreply(*self.failure)
            return Milter.TEMPFAIL
        return result

    @callback("connect")
    def connect(self, hostname: str, family: int, hostaddr: tuple | str | None) -> int:
        self.entered = self.gate.enter()
        if not self.entered:
            self.failure = SHUTTING_DOWN
            return Milter.TEMPFAIL
        ip = hostaddr[0] if isinstance(hostaddr, tuple) and hostaddr else ""
        self.session = Session(ip=ip, hostname=hostname or "")
        self.engine.connect(self.session)
        return Milter.CONTINUE

    @callback("helo", timed=False)
    def hello(self, heloname: str) -> int:
        UNDECODED_HELO.raw = None
        self.session.helo = heloname or ""
        return Milter.CONTINUE

    @callback("mail")
    def envfrom(self, mailfrom: str, *params: str) -> int:
        if UNDECODED_HELO.raw is not None:
            self.session.helo = UNDECODED_HELO.raw.decode("utf-8", "surrogateescape")
            UNDECODED_HELO.raw = None
            event("helo-not-utf8", logging.WARNING, client=self.session.ip, helo=clean(self.session.helo, LIMIT_NAME))
        self.envelope = Envelope(
            sender=bare_address(mailfrom),
            auth=self.getsymval("{auth_authen}") or "",
            queue_id=self.getsymval("i") or "",
        )
        self.engine.mail(self.session, self.envelope)
        return Milter.CONTINUE

    @callback("rcpt")
    def envrcpt(self, recipient: str, *params: str) -> int:
        assert self.envelope is not None
        decision = self.engine.rcpt(self.session, self.envelope, bare_address(recipient))
        if decision.accepted:
            return Milter.CONTINUE
        self.setreply(decision.code, decision.xcode, decision.text)
        return Milter.REJECT if decision.action == "reject" else Milter.TEMPFAIL

    @callback("header", timed=False)
    def header(self, name: str, value: str) -> int:
        if self.envelope is not None:
            # Without P_HDR_LEADSPC the MTA cut the space after the colon: as it usually is, it comes back.
            self.engine.header(self.envelope, name, value if self.verbatim_headers else " " + value)
        return Milter.CONTINUE

    @callback("body", timed=False)
    def body(self, chunk: bytes) -> int:
        # SKIP: nothing more to read, the MTA sends the rest of the body to nobody.
        wanted = self.envelope is not None and self.engine.body(self.envelope, chunk)
        return Milter.CONTINUE if wanted else Milter.SKIP

    @callback("eom")
    def eom(self) -> int:
        envelope = self.envelope
        assert envelope is not None
        envelope.queue_id = self.getsymval("i") or envelope.queue_id
        edits = self.engine.end(self.session, envelope)
        decision = edits.decision
        if decision.action in ("reject", "defer"):
            self.setreply(decision.code, decision.xcode, decision.text)
            return Milter.REJECT if decision.action == "reject" else Milter.TEMPFAIL
        if decision.action == "quarantine":
            self.quarantine(decision.text)
        lead = " " if self.verbatim_headers else ""  # with P_HDR_LEADSPC the MTA adds no space after the colon
        for name, index in edits.removed:
            self.chgheader(name, index, "")
        for name, value in reversed(edits.prepended):  # each at index 0: the last inserted ends on top
            self.addheader(name, lead + value, 0)
        for name, value in edits.appended:
            self.addheader(name, lead + value)
        return Milter.CONTINUE

    def abort(self) -> int:
        self.envelope = None
        return Milter.CONTINUE

    def close(self) -> int:
        if self.entered:
            self.entered = False
            self.gate.leave()
        return Milter.CONTINUE
