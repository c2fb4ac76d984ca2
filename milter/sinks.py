"""What every event sink (amqp.py, webhook.py) promises the outbox, and what the [events] settings may name.

The checks live here, apart from the sinks, so that the configuration can check them without opening anything.
URLs may carry credentials (amqp://user:password@host, https://user:password@host/webhooks/bounce): they are
shown through `redacted()` wherever they are logged or reported.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple, Protocol
from urllib.parse import unquote, urlsplit

from .events import Event
from .upstreams import tls_ca_problem

AMQP_SCHEMES = ("amqp", "amqps")
_EXCHANGE = re.compile(r"^[A-Za-z0-9_.:-]{1,255}$")  # AMQP 0-9-1's exchange-name characters


class Sent(NamedTuple):
    """How many of a batch's events, from its start, a sink is done with, and how many of those it refused."""

    taken: int
    refused: int = 0


class SinkDown(Exception):
    """The sink cannot take events now; `sent` says what it took of the batch before it failed."""

    def __init__(self, reason: str, sent: Sent | None = None) -> None:
        super().__init__(reason)
        self.sent = sent or Sent(0)


class Sink(Protocol):
    name: str
    target: str  # where it sends, without credentials: what the log says
    secrets: tuple[str, ...]  # never to appear in a log line

    def send(self, events: list[Event]) -> Sent:
        """Send in order, each taken before the next is sent; raises SinkDown."""

    def idle(self) -> None:
        """Nothing to send for a while: keep the connection alive."""

    def close(self) -> None:
        """Close the connection (a later send opens a new one)."""


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """The text with every secret replaced by "***": error messages may quote what they were given."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def redacted(url: str) -> str:
    """The URL with its password replaced by "***": what may be logged. One urlsplit refuses keeps only its
    scheme: whatever follows may hold a password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{url.partition('://')[0]}://***"
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{parts.username}:***@{netloc[2]}").geturl()


def url_secrets(url: str) -> tuple[str, ...]:
    """The URL's password as written and as decoded: either may turn up in an error message."""
    password = urlsplit(url).password
    return (password, unquote(password)) if password else ()


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def scheme_and_host(url: str) -> tuple[str | None, str | None]:
    """A URL's scheme and host name; (None, None) for one urlsplit refuses (a bad port, an unclosed bracket)."""
    try:
        parts = urlsplit(url)
        return parts.scheme, parts.hostname
    except ValueError:
        return None, None


def sink_problems(settings: dict[str, str]) -> dict[str, str]:
    """The problem with each [events] string setting that has one (by key)."""
    problems = {}
    store = settings["store"]
    if store and not store.startswith("/"):
        problems["store"] = f'{store!r} is not an absolute path (or "" for no store)'
    amqp = settings["amqp_url"]
    scheme, host = scheme_and_host(amqp)
    if amqp and (scheme not in AMQP_SCHEMES or not host):
        problems["amqp_url"] = f"{redacted(amqp)!r} is not amqp://[user:password@]host[:port][/vhost] (or amqps://)"
    if not _EXCHANGE.match(settings["amqp_exchange"]):
        problems["amqp_exchange"] = f"{settings['amqp_exchange']!r} is not an exchange name"
    webhook = settings["webhook_url"]
    scheme, host = scheme_and_host(webhook)
    if webhook and not (host and (scheme == "https" or (scheme == "http" and is_loopback(host)))):
        problems["webhook_url"] = f"{redacted(webhook)!r} is not an https:// URL (http:// only to a loopback address)"
    if settings["webhook_ca_file"] and (problem := tls_ca_problem(settings["webhook_ca_file"])):
        problems["webhook_ca_file"] = problem
    if (amqp or webhook) and not store:
        key = "amqp_url" if amqp else "webhook_url"
        problems[key] = 'needs the store: events are sent from it (store = "" turns events off)'
    return problems
