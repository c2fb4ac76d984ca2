"""Sending test mail through Postfix as any client: XCLIENT sets the address, name, HELO and login."""

from __future__ import annotations

import smtplib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Sent:
    marker: str  # unique text in the message, to find it in the Maildir
    rcpt_replies: dict[str, tuple[int, str]] = field(default_factory=dict)
    mail_reply: tuple[int, str] = (0, "")
    data_reply: tuple[int, str] | None = None  # None when no recipient was accepted


def xtext(value: str) -> str:
    """RFC 3461 xtext, as XCLIENT wants its values."""
    return "".join(c if 0x21 <= ord(c) <= 0x7E and c not in "+=" else f"+{ord(c):02X}" for c in value)


def send(
    port: int,
    sender: str,
    recipients: list[str],
    ip: str | None = None,
    helo: str = "mail.good.test",
    login: str | None = None,
    headers: str = "",
    body: str = "Hello.\n",
    compose: Callable[[str], bytes] | None = None,
) -> Sent:
    """One message, one connection. Without `ip`, the client is the real one (127.0.0.1). `compose` makes the
    whole message (given the marker to put in it) instead of the From, To, Subject, `headers` and `body` here."""
    marker = f"mw-{uuid.uuid4().hex}"
    sent = Sent(marker)
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.localhost", timeout=30) as smtp:
        if ip is not None:
            addr = f"IPV6:{ip}" if ":" in ip else ip
            attrs = [f"ADDR={addr}", f"NAME={xtext('[UNAVAILABLE]')}", f"HELO={xtext(helo)}"]
            if login:
                attrs.append(f"LOGIN={xtext(login)}")
            code, text = smtp.docmd("XCLIENT", " ".join(attrs))
            assert code == 220, (code, text)
            smtp.ehlo_resp = None
            smtp.does_esmtp = False
            smtp.ehlo(helo)  # ignored by Postfix after XCLIENT HELO=, but smtplib wants the EHLO state
        else:
            smtp.ehlo(helo)
        sent.mail_reply = smtp.docmd("MAIL", f"FROM:<{sender}>")
        if sent.mail_reply[0] != 250:
            return sent
        for rcpt in recipients:
            code, text = smtp.docmd("RCPT", f"TO:<{rcpt}>")
            sent.rcpt_replies[rcpt] = (code, text.decode() if isinstance(text, bytes) else text)
        if not any(code == 250 for code, _ in sent.rcpt_replies.values()):
            return sent
        message = (
            (
                f"From: <{sender or 'mailer-daemon@example.net'}>\r\nTo: <{recipients[0]}>\r\n"
                f"Subject: {marker}\r\nMessage-ID: <{marker}@test>\r\n{headers}\r\n{body}"
            )
            .replace("\r\n", "\n")
            .replace("\n", "\r\n")
        )
        code, text = smtp.data(compose(marker) if compose else message.encode())
        sent.data_reply = (code, text.decode() if isinstance(text, bytes) else text)
    return sent
