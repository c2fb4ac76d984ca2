"""The milter callbacks: they only gather the session from the MTA and hand it to the engine.

Every stage is answered (no skipped stages, no no-reply callbacks): over TCP, Postfix stalls ~40 ms on a
milter that leaves a stage out. An exception anywhere here is turned into a temporary failure by the
daemon's exception policy, so mail is never lost to a bug.
"""

from __future__ import annotations

import Milter

from .engine import Engine
from .headers import authserv_id_of
from .policy import ACCEPT
from .session import Envelope, Session

AR_HEADER = "Authentication-Results"


def bare_address(address: str) -> str:
    """MAIL FROM / RCPT TO argument without angle brackets (Postfix's non-SMTP mail comes without)."""
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    return address


class MailwardenMilter(Milter.Base):
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine  # bound for the whole connection: a reload never changes a running session
        self.session = Session(ip="")
        self.envelope: Envelope | None = None

    def connect(self, hostname: str, family: int, hostaddr: tuple | str | None) -> int:
        ip = hostaddr[0] if isinstance(hostaddr, tuple) and hostaddr else ""
        self.session = Session(ip=ip, hostname=hostname or "")
        self.engine.connect(self.session)
        return Milter.CONTINUE

    def hello(self, heloname: str) -> int:
        self.session.helo = heloname or ""
        return Milter.CONTINUE

    def envfrom(self, mailfrom: str, *params: str) -> int:
        self.envelope = Envelope(
            sender=bare_address(mailfrom),
            auth=self.getsymval("{auth_authen}") or "",
            queue_id=self.getsymval("i") or "",
        )
        self.engine.mail(self.session, self.envelope)
        return Milter.CONTINUE

    def envrcpt(self, recipient: str, *params: str) -> int:
        assert self.envelope is not None
        decision = self.engine.rcpt(self.session, self.envelope, bare_address(recipient))
        if decision.accepted:
            return Milter.CONTINUE
        self.setreply(decision.code, decision.xcode, decision.text)
        return Milter.REJECT if decision.action == "reject" else Milter.TEMPFAIL

    def data(self) -> int:
        if self.envelope is not None:
            self.envelope.queue_id = self.getsymval("i") or self.envelope.queue_id
        return Milter.CONTINUE

    def header(self, name: str, value: str) -> int:
        if self.envelope is not None and name.lower() == AR_HEADER.lower():
            self.envelope.ar_seen += 1
            if authserv_id_of(value) == self.engine.config.authserv_id.lower():
                self.envelope.forged.append(self.envelope.ar_seen)
        return Milter.CONTINUE

    def eoh(self) -> int:
        return Milter.CONTINUE

    def body(self, chunk: bytes) -> int:
        return Milter.CONTINUE

    def eom(self) -> int:
        envelope = self.envelope
        assert envelope is not None
        # Delete from the last so that the indexes of the earlier ones stay valid, then prepend ours:
        # index 0 lands above the MTA's own Received:, so the last one inserted ends on top.
        for index in reversed(envelope.forged):
            self.chgheader(AR_HEADER, index, "")
        for name, value in reversed(self.engine.headers(self.session, envelope)):
            self.addheader(name, value, 0)
        self.engine.log(self.session, envelope, ACCEPT, forged_ar_removed=len(envelope.forged))
        return Milter.CONTINUE

    def abort(self) -> int:
        self.envelope = None
        return Milter.CONTINUE

    def unknown(self, command: str) -> int:
        return Milter.CONTINUE

    def close(self) -> int:
        return Milter.CONTINUE
