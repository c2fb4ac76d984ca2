"""The milter callbacks: they only gather the session from the MTA and hand it to the engine.

Every round trip to the milter is paid in each SMTP session's latency and in the MTA's CPU, so mailwarden
asks for as few as it can. Nothing is decided before RCPT (policy acts per recipient), so the connect, HELO,
MAIL FROM and header stages take no reply, and the stages it has no use for (end of headers, unknown
commands) are not negotiated; the body is skipped as soon as it is not needed (SMFIR_SKIP). Postfix keeps
the commands that get no reply in its buffer and sends them with the next one it waits for, so a message
costs three round trips on a unix socket (RCPT, body, end of message) and four on TCP, where DATA is also
answered (see `PostfixTcpMilter`). Sendmail writes every milter command at once, so on TCP it gets
`MailwardenMilter`, which answers every stage (config `mta = "sendmail"`).

An exception anywhere here is turned into a temporary failure, so mail is never lost to a bug: at once where
the stage is answered, else at the next stage that is (RCPT or end of message); it then holds for the rest
of the connection.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from email.utils import parseaddr
from types import TracebackType
from typing import TypeVar

import Milter

from . import metrics
from .config import Config, unix_path
from .engine import MAX_BOUNCE_BYTES, Engine, bare_address
from .headers import LIMIT_NAME, authserv_id_of, clean
from .log import event
from .policy import ACCEPT
from .session import Envelope, Session

AR_HEADER = "Authentication-Results"
Callback = TypeVar("Callback", bound=Callable[..., int])


Reply = tuple[str, str, str]  # SMTP code, enhanced status code, text
INTERNAL_ERROR: Reply = ("451", "4.3.0", "mailwarden: internal error, try again later")
SHUTTING_DOWN: Reply = ("421", "4.3.2", "mailwarden is shutting down, try again later")


def callback(stage: str, timed: bool = True) -> Callable[[Callback], Callback]:
    """Turn any exception of a milter callback into a temporary failure; time it (mailwarden_stage_seconds)
    unless it runs per header or body chunk, where the histogram would cost more than the callback.

    Exceptions are trapped here, in Python, because the daemon sets pymilter's own exception policy to
    CONTINUE: the only errors that reach pymilter are those raised before our code runs, and the one known
    is a HELO that is not UTF-8 (see `recover_undecodable_helo`). Once a session has failed, its callbacks
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

        guarded.redecorate = wrap  # type: ignore[attr-defined]  # for without_reply
        # pymilter's *_bytes glue looks this up on every call: decoding as its default does, but found rather
        # than missed (a missed getattr raises and catches an AttributeError, ~0.9 µs per header).
        return Milter.decode("surrogateescape")(guarded)  # type: ignore[return-value]

    return wrap


def without_reply(method: Callback) -> Callback:
    """The same callback, negotiated as a stage the MTA expects no reply to (pymilter reads the method's
    `milter_protocol` bits when it computes what to ask for; `callback` then returns NOREPLY). It is a new
    guarded wrapper around the same method, not a wrapper around the wrapper: one Python frame less on each
    of these calls, which come once per header."""
    quiet = method.redecorate(method.__wrapped__)  # type: ignore[attr-defined]
    quiet.milter_protocol = Milter.OPTIONAL_CALLBACKS[method.__name__][0]
    return quiet


# pymilter runs each session on a Python thread state of its own, created on one libmilter worker thread and
# deleted on whichever thread closes the session; the creating thread's PyGILState slot is then left pointing
# at the deleted state. Extensions that take the GIL through PyGILState (onnxruntime via pybind11) crash on
# such a thread (seen: a segfault on the first bounce after an ordinary message). The bounce classifier
# therefore runs on a thread that Python itself owns.
_classifier_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bounce-classifier")

ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], object]


class _UndecodedHelo(threading.local):
    raw: bytes | None = None


_undecoded_helo = _UndecodedHelo()


def recover_undecodable_helo(previous: ExceptHook) -> ExceptHook:
    """A sys.excepthook that keeps the bytes of a HELO pymilter could not decode, for the session that sent it.

    pymilter builds hello()'s argument as strict UTF-8 in C, so a HELO that is not UTF-8 (Postfix passes one
    when smtputf8_enable = no) never reaches hello(): the UnicodeDecodeError, raised with no Python frame, goes
    to sys.excepthook. It still carries the raw bytes, and pymilter runs every milter context in its own
    Python thread state, so a threading.local keeps them for that session alone until envfrom() reads them.
    """

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> object:
        if isinstance(exc, UnicodeDecodeError) and tb is None and isinstance(exc.object, bytes):
            _undecoded_helo.raw = exc.object
            return None
        return previous(kind, exc, tb)

    return hook


class Gate:
    """Counts open sessions, and turns new ones away while the daemon drains them before a stop."""

    def __init__(self) -> None:
        self._idle = threading.Condition()
        self.open = 0
        self.draining = False

    def enter(self) -> bool:
        with self._idle:
            if self.draining:
                return False
            self.open += 1
        metrics.SESSIONS_OPEN.inc()
        return True

    def leave(self) -> None:
        with self._idle:
            self.open -= 1
            self._idle.notify_all()
        metrics.SESSIONS_OPEN.dec()

    def drain(self, timeout: float) -> bool:
        """Refuse new sessions; wait until the open ones have closed. False if `timeout` ran out first."""
        with self._idle:
            self.draining = True
            return self._idle.wait_for(lambda: self.open == 0, timeout)


class MailwardenMilter(Milter.Base):
    """Every stage negotiated and answered: for Sendmail on TCP. Sendmail writes each milter command as it
    comes and, on Linux, leaves Nagle's algorithm on, so a command that follows one with no reply would wait
    for the milter's delayed ACK (~40 ms)."""

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
        `protocol_mask` names, keep every action on offer."""
        self._actions = opts[0]
        opts[1] = self._protocol = opts[1] & ~self.protocol_mask()
        opts[2] = opts[3] = 0
        return Milter.CONTINUE

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
        _undecoded_helo.raw = None
        self.session.helo = heloname or ""
        return Milter.CONTINUE

    @callback("mail")
    def envfrom(self, mailfrom: str, *params: str) -> int:
        if _undecoded_helo.raw is not None:
            self.session.helo = _undecoded_helo.raw.decode("utf-8", "surrogateescape")
            _undecoded_helo.raw = None
            event("helo-not-utf8", logging.WARNING, client=self.session.ip, helo=clean(self.session.helo, LIMIT_NAME))
        self.envelope = Envelope(
            sender=bare_address(mailfrom),
            auth=self.getsymval("{auth_authen}") or "",
            queue_id=self.getsymval("i") or "",
        )
        if self.engine.may_be_bounce(self.envelope.sender):
            self.envelope.body = bytearray()
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
        envelope = self.envelope
        if envelope is None:
            return Milter.CONTINUE
        lower = name.lower()
        if lower == AR_HEADER.lower():
            envelope.ar_seen += 1
            if authserv_id_of(value) == self.engine.authserv_key:
                envelope.forged.append(envelope.ar_seen)
        if self.engine.classifier is not None:
            envelope.headers.append((name, value))
            if lower == "from" and self.engine.may_be_bounce(parseaddr(value)[1] or value):
                envelope.body = bytearray()
        return Milter.CONTINUE

    @callback("body", timed=False)
    def body(self, chunk: bytes) -> int:
        collected = self.envelope.body if self.envelope is not None else None
        if collected is None or len(collected) >= MAX_BOUNCE_BYTES:
            return Milter.SKIP  # nothing more to read: the MTA sends the rest of the body to nobody
        collected += chunk[: MAX_BOUNCE_BYTES - len(collected)]
        return Milter.CONTINUE

    @callback("eom")
    def eom(self) -> int:
        envelope = self.envelope
        assert envelope is not None
        envelope.queue_id = self.getsymval("i") or envelope.queue_id
        # Delete from the last so that the indexes of the earlier ones stay valid, then prepend ours:
        # index 0 lands above the MTA's own Received:, so the last one inserted ends on top.
        for index in reversed(envelope.forged):
            self.chgheader(AR_HEADER, index, "")
        if envelope.forged:
            metrics.FORGED_AR_REMOVED.inc(len(envelope.forged))
        for name, value in reversed(self.engine.result_headers(self.session, envelope)):
            self.addheader(name, value, 0)
        if envelope.body is not None:  # collected: the message may be a bounce
            for name, value in _classifier_thread.submit(self.engine.bounce_headers, self.session, envelope).result():
                self.addheader(name, value)
        self.engine.log(self.session, envelope, ACCEPT, forged_ar_removed=len(envelope.forged))
        return Milter.CONTINUE

    def abort(self) -> int:
        self.envelope = None
        return Milter.CONTINUE

    def close(self) -> int:
        if self.entered:
            self.entered = False
            self.gate.leave()
        return Milter.CONTINUE

    # Stages mailwarden has no use for, defined only so that they are negotiated (pymilter leaves out the
    # stages whose methods a class does not define; UnixMilter goes back to pymilter's).
    def data(self) -> int:
        return Milter.CONTINUE

    def eoh(self) -> int:
        return Milter.CONTINUE

    def unknown(self, command: str) -> int:
        return Milter.CONTINUE


class UnixMilter(MailwardenMilter):
    """For a unix socket, with either MTA: DATA, end-of-headers and unknown commands are not negotiated
    (pymilter's defaults for these are marked as not wanted), and connect, HELO, MAIL FROM and each header
    take no reply, so the MTA waits for mailwarden only at RCPT, body and end of message."""

    connect = without_reply(MailwardenMilter.connect)
    hello = without_reply(MailwardenMilter.hello)
    envfrom = without_reply(MailwardenMilter.envfrom)
    header = without_reply(MailwardenMilter.header)
    data = Milter.Base.data
    eoh = Milter.Base.eoh
    unknown = Milter.Base.unknown


class PostfixTcpMilter(UnixMilter):
    """For Postfix on TCP: the unix socket's stages, and DATA answered.

    Postfix's side of a TCP milter connection runs Nagle's algorithm. Commands that get no reply wait in its
    buffer (milter8.c) and leave with the next command it reads a reply to, so they cost no round trip and
    no stall. One flush has no reply after it: at DATA the Postfix SMTP server hands the milter connection
    to the cleanup server and flushes it first (milter8_send). Were DATA not answered, its macros would
    leave alone there, and cleanup's first write (the headers and body) would wait for the milter's delayed
    ACK: measured 44 ms per connection instead of 3. Answered, DATA costs one round trip and the buffer is
    empty then (docs/benchmarks.md has the capture)."""

    data = MailwardenMilter.data


def milter_class(config: Config) -> type[MailwardenMilter]:
    """The protocol for this socket and MTA: the fewest round trips that stall neither side."""
    if unix_path(config.socket) is not None:
        return UnixMilter
    return PostfixTcpMilter if config.mta == "postfix" else MailwardenMilter


# pymilter caches the negotiated protocol mask in a class attribute on first use, which a subclass would
# inherit if its parent's were computed first: compute each subclass's own before its parent's.
for _kind in (PostfixTcpMilter, UnixMilter, MailwardenMilter):
    _kind.protocol_mask()
