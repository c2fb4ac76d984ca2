"""POSTing events to a webhook, one per request, in the shape listmonk's bounce webhook takes.

listmonk (POST /webhooks/bounce) wants {"email", "source", "type": hard|soft, "meta": "<JSON string>"} and HTTP
basic auth; `meta` carries the whole event, id included, so that any other receiver has all of it and can
dedupe. Credentials in the URL (https://user:password@host/...) become the Authorization header and are never
logged. HTTPS certificates are checked against the system store plus `webhook_ca_file`; plain http:// is only
accepted to loopback (config). With a secret, X-Mailwarden-Signature carries "sha256=" and the hex HMAC-SHA256
of the body. A 2xx takes the event; 408, 429, 5xx, a timeout or no connection mean the receiver is down (the
outbox retries with backoff); any other answer refuses that event for good (logged, counted, the next goes on).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import ssl
import urllib.error
import urllib.request
from urllib.parse import unquote, urlsplit

from .events import Event
from .log import event as log_event
from .sinks import Sent, SinkDown, redacted, url_secrets
from .version import __version__

TIMEOUT = 10.0  # seconds for one request: a receiver that hangs is down
SOURCE = "mailwarden"
LISTMONK_TYPES = {"hard": "hard"}  # everything else (soft, transient, unknown) is listmonk's "soft"
SIGNATURE_HEADER = "X-Mailwarden-Signature"
RETRIED = {408, 429}  # 4xx answers that mean "later", not "never"


def body_of(event: Event) -> bytes:
    return json.dumps({"email": event.recipient, "source": SOURCE, "type": LISTMONK_TYPES.get(event.type, "soft"),
                       "meta": event.json()}, ensure_ascii=False).encode()  # fmt: skip


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not followed: urllib would carry the Authorization header to wherever it points
    (and turn the POST into a GET). It refuses the event like any other 3xx/4xx, and the log says where."""

    def redirect_request(self, *args: object) -> None:
        return None


class WebhookSink:
    name = "webhook"

    def __init__(self, url: str, secret: str = "", ca_file: str = "", timeout: float = TIMEOUT) -> None:
        parts = urlsplit(url)
        self.url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # credentials go in a header
        self.headers = {"Content-Type": "application/json", "User-Agent": f"mailwarden/{__version__}"}
        if parts.username is not None:
            login = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(login.encode()).decode()
        self.secret = secret
        self.timeout = timeout
        self.target = redacted(url)
        self.secrets = (*url_secrets(url), secret)
        context = ssl.create_default_context()
        if ca_file:
            context.load_verify_locations(ca_file)
        self._opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), NoRedirect())

    def send(self, events: list[Event]) -> Sent:
        refused = 0
        for taken, event in enumerate(events):
            status = self._post(event, Sent(taken, refused))
            if not 200 <= status < 300:
                refused += 1
                log_event("webhook-refused", logging.WARNING, target=self.target, status=status, event_id=event.id,
                          consequence="this event is not sent again")  # fmt: skip
        return Sent(len(events), refused)

    def _post(self, event: Event, sent: Sent) -> int:
        """The receiver's status for one event; raises SinkDown when it is down."""
        body = body_of(event)
        headers = dict(self.headers)
        if self.secret:
            headers[SIGNATURE_HEADER] = signature(self.secret, body)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            if exc.code in RETRIED or exc.code >= 500:
                raise SinkDown(f"HTTP {exc.code}", sent) from exc
            return exc.code
        except (OSError, ValueError) as exc:  # URLError, timeouts, TLS failures, a broken answer
            raise SinkDown(f"{type(exc).__name__}: {exc}", sent) from exc

    def idle(self) -> None:
        """Nothing to keep: a connection per request."""

    def close(self) -> None:
        self._opener.close()
