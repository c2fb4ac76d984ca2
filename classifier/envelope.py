"""What the MTA knows about a message that its header fields may not say."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EnvelopeFacts:
    """The SMTP envelope and client of one message, as the milter got them from the MTA.

    A milter sees the message before final delivery adds Return-Path, so the envelope sender is the only
    reliable sign of the null reverse path that bounces are sent with. Files analysed on their own (the CLI,
    evaluation) have no envelope; detection then falls back to a Return-Path field.
    """

    sender: str  # MAIL FROM without angle brackets; "" is the null sender
    client_ip: str = ""
    client_name: str = ""  # the MTA's name for the client ("unknown" or [ip] when it has none)
    queue_id: str = ""
