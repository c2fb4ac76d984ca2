"""The milter protocol each MTA and socket gets: which stages are sent, and which wait for mailwarden's reply.

Every round trip to the milter is paid in each SMTP session's latency and in the MTA's CPU, so mailwarden
asks for as few as it can. Nothing is decided before RCPT (policy acts per recipient), so the connect, HELO,
MAIL FROM and header stages take no reply, and the stages it has no use for (end of headers, unknown
commands) are not negotiated; the body is skipped as soon as it is not needed (SMFIR_SKIP). Postfix keeps
the commands that get no reply in its buffer and sends them with the next one it waits for, so a message
costs three round trips on a unix socket (RCPT, body, end of message) and four on TCP, where DATA is also
answered (`PostfixTcpMilter`). Sendmail writes every milter command at once, so on TCP it gets
`SendmailTcpMilter`, which answers every stage (config `mta = "sendmail"`).
"""

from __future__ import annotations

import Milter

from .callbacks import Callback, MailwardenMilter
from .config import Config, unix_path


def without_reply(method: Callback) -> Callback:
    """The same callback, negotiated as a stage the MTA expects no reply to (pymilter reads the method's
    `milter_protocol` bits when it computes what to ask for; `callback` then returns NOREPLY). It is a new
    guarded wrapper around the same method, not a wrapper around the wrapper: one Python frame less on each
    of these calls, which come once per header."""
    quiet = method.redecorate(method.__wrapped__)  # type: ignore[attr-defined]
    quiet.milter_protocol = Milter.OPTIONAL_CALLBACKS[method.__name__][0]
    return quiet


class SendmailTcpMilter(MailwardenMilter):
    """Every stage negotiated and answered: for Sendmail on TCP. Sendmail writes each milter command as it
    comes and, on Linux, leaves Nagle's algorithm on, so a command that follows one with no reply would wait
    for the milter's delayed ACK (~40 ms)."""

    # Stages mailwarden has no use for, defined only so that they are negotiated (pymilter leaves out the
    # stages whose methods a class does not define).
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


class PostfixTcpMilter(UnixMilter):
    """For Postfix on TCP: the unix socket's stages, and DATA answered.

    Postfix's side of a TCP milter connection runs Nagle's algorithm. Commands that get no reply wait in its
    buffer (milter8.c) and leave with the next command it reads a reply to, so they cost no round trip and
    no stall. One flush has no reply after it: at DATA the Postfix SMTP server hands the milter connection
    to the cleanup server and flushes it first (milter8_send). Were DATA not answered, its macros would
    leave alone there, and cleanup's first write (the headers and body) would wait for the milter's delayed
    ACK: measured 44 ms per connection instead of 3. Answered, DATA costs one round trip and the buffer is
    empty then (docs/benchmarks.md has the capture)."""

    data = SendmailTcpMilter.data


def milter_class(config: Config) -> type[MailwardenMilter]:
    """The protocol for this socket and MTA: the fewest round trips that stall neither side."""
    if unix_path(config.socket) is not None:
        return UnixMilter
    return PostfixTcpMilter if config.mta == "postfix" else SendmailTcpMilter


# pymilter caches the negotiated protocol mask in a class attribute on first use, which a subclass would
# inherit if its parent's were computed first: compute each subclass's own before its parent's.
for _kind in (PostfixTcpMilter, UnixMilter, SendmailTcpMilter):
    _kind.protocol_mask()
