"""A byte-exact SMTP client: commands go on the wire exactly as given (NUL, bare CR, 8-bit bytes and all),
with the time each reply took, so that tests can send what smtplib refuses to and time each stage."""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from dataclasses import dataclass, field

from ..smtp import xtext


@dataclass
class Reply:
    code: int  # 0: the connection closed without a reply
    text: bytes
    seconds: float

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500


@dataclass
class Transcript:
    marker: str
    replies: dict[str, Reply] = field(default_factory=dict)  # by stage: greeting, xclient, mail, rcpt:<n>, data

    def waited(self, first: str, last: str) -> float:
        """Seconds the client waited for the replies from stage `first` to stage `last`. On a unix socket the
        milter answers connect, HELO and MAIL FROM with nothing, so Postfix replies to them at once and the
        milter's work there (the DNS) is paid at the next stage that waits for it, the first RCPT: time a span
        that ends there."""
        stages = list(self.replies)
        return sum(self.replies[stage].seconds for stage in stages[stages.index(first) : stages.index(last) + 1])

    def outcome(self) -> int:
        """The code that decided the fate of the message: the first non-2xx/3xx reply, else the DATA one."""
        for reply in self.replies.values():
            if not 200 <= reply.code < 400:
                return reply.code
        return self.replies["data"].code if "data" in self.replies else 0


class RawSMTP:
    def __init__(self, port: int, timeout: float = 60) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def reply(self) -> Reply:
        start = time.monotonic()
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                return Reply(0, b"".join(lines), time.monotonic() - start)
            lines.append(line)
            if line[3:4] != b"-":
                break
        code = int(lines[0][:3]) if lines[0][:3].isdigit() else 0
        text = b"".join(line[4:] for line in lines).rstrip(b"\r\n")
        return Reply(code, text, time.monotonic() - start)

    def command(self, line: bytes) -> Reply:
        start = time.monotonic()
        self.sock.sendall(line + b"\r\n")
        reply = self.reply()
        reply.seconds = time.monotonic() - start
        return reply

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"QUIT\r\n")
        self.file.close()
        self.sock.close()


def transaction(
    port: int,
    sender: bytes,
    recipients: list[bytes],
    ip: str | None = None,
    helo: bytes = b"mail.good.test",
    headers: bytes = b"",
    body: bytes = b"Hello.\r\n",
    timeout: float = 60,
) -> Transcript:
    """One message on one connection. With `ip`, XCLIENT sets the client address and HELO (xtext-encoded);
    then `helo` goes raw in EHLO (the milter learns the HELO name from EHLO, not from XCLIENT). Stops at the
    first refusal."""
    marker = f"mw-{uuid.uuid4().hex}"
    out = Transcript(marker)
    smtp = RawSMTP(port, timeout)
    try:
        out.replies["greeting"] = smtp.reply()
        if ip is not None:
            addr = f"IPV6:{ip}" if ":" in ip else ip
            attrs = f"ADDR={addr} NAME={xtext('[UNAVAILABLE]')} HELO={xtext(helo.decode('latin-1'))}"
            out.replies["xclient"] = smtp.command(b"XCLIENT " + attrs.encode())
            if out.replies["xclient"].code != 220:
                return out
        out.replies["ehlo"] = smtp.command(b"EHLO " + helo)
        out.replies["mail"] = smtp.command(b"MAIL FROM:<" + sender + b">")
        if out.replies["mail"].code != 250:
            return out
        for n, rcpt in enumerate(recipients):
            out.replies[f"rcpt:{n}"] = smtp.command(b"RCPT TO:<" + rcpt + b">")
        if not any(out.replies[f"rcpt:{n}"].code == 250 for n in range(len(recipients))):
            return out
        out.replies["data-start"] = smtp.command(b"DATA")
        if out.replies["data-start"].code != 354:
            return out
        message = (
            b"From: <sender@example.net>\r\nTo: <bob@example.org>\r\nSubject: " + marker.encode() + b"\r\n"
            b"Message-ID: <" + marker.encode() + b"@test>\r\n" + headers + b"\r\n" + body
        )
        message = message.replace(b"\r\n.", b"\r\n..")
        out.replies["data"] = smtp.command(message + b"\r\n.")
    finally:
        smtp.close()
    return out
