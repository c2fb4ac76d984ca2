"""Per-connection and per-transaction state, gathered by the milter callbacks and read by the engine."""

from __future__ import annotations

from dataclasses import dataclass, field

from .checks.base import CheckResult, Subject
from .checks.message import MessageReader


@dataclass
class Session:
    """One SMTP connection."""

    ip: str
    hostname: str = ""  # the MTA's name for the client ("unknown" or [ip] when it has none)
    helo: str = ""
    skip: str = ""  # why checks are skipped for the whole connection ("" = they are not)
    results: dict[str, CheckResult] = field(default_factory=dict)  # connect-stage checks, by check name


@dataclass
class Envelope:
    """One mail transaction inside a session (MAIL FROM to end of message)."""

    sender: str  # without angle brackets; "" is the null sender
    auth: str = ""  # SASL login name from {auth_authen}
    queue_id: str = ""
    skip: str = ""
    results: dict[str, CheckResult] = field(default_factory=dict)  # mail and message checks, by check name
    recipients: list[str] = field(default_factory=list)  # accepted at RCPT
    message: MessageReader | None = None  # the header and body hashes for the message checks, when they run
    forged: list[int] = field(default_factory=list)  # indexes (1-based) of A-R headers claiming our id
    ar_seen: int = 0  # Authentication-Results headers seen so far
    headers: list[tuple[str, str]] = field(default_factory=list)  # kept while bounce labelling is on
    body: bytearray | None = None  # collected only for a message that may be a bounce

    def raw_message(self) -> bytes:
        """The message as the MTA passed it (headers, then the collected body), for the bounce parser."""
        lines = [f"{name}: {value}".replace("\r\n", "\n").replace("\n", "\r\n") for name, value in self.headers]
        head = "\r\n".join(lines).encode("utf-8", "surrogateescape")
        return head + b"\r\n\r\n" + bytes(self.body or b"")

    def subject(self, session: Session) -> Subject:
        return Subject(ip=session.ip, helo=session.helo, sender=self.sender)
