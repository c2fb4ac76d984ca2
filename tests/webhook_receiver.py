"""A webhook receiver on loopback for the tests: records every POST, answers as the test tells it (a status per
request, or hanging past the client's timeout), over HTTPS with a certificate of the tests' CA."""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .tlscerts import ServerCert


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def event(self) -> dict:
        """The mailwarden event carried in listmonk's `meta` string."""
        return json.loads(self.json["meta"])


@dataclass
class Behaviour:
    statuses: list[int] = field(default_factory=list)  # answered in turn; 200 once they are used up
    hang: float = 0.0  # seconds to sleep before answering (a receiver that hangs)


class WebhookReceiver:
    def __init__(self, cert: ServerCert | None = None) -> None:
        self.received: list[Received] = []  # the requests answered 2xx
        self.attempts = 0
        self.behaviour = Behaviour()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.attempts += 1
                if receiver.behaviour.hang:
                    time.sleep(receiver.behaviour.hang)
                status = receiver.behaviour.statuses.pop(0) if receiver.behaviour.statuses else 200
                if 200 <= status < 300:
                    receiver.received.append(Received(self.path, dict(self.headers), body))
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if cert is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert.cert, cert.key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, host: str = "127.0.0.1", path: str = "/webhooks/bounce", login: str = "") -> str:
        return f"{self.scheme}://{login + '@' if login else ''}{host}:{self.port}{path}"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
