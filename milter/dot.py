"""DNS over TLS (RFC 7858) upstreams that keep their connection: what dnspython's DoTNameserver does not do.

dnspython's `DoTNameserver.query` opens a connection and pays a TCP and TLS handshake for every query.
`TlsNameserver` is that class with one long-lived connection per upstream instead: every thread writes its
query on it as it comes (pipelined, RFC 7766 §6.2.1.1) and one reader thread hands each answer to the query
with its id, so answers may come in any order. A connection the upstream closed is re-opened by the next
query; a query whose connection closed under it is sent once more on a new one. Certificate failures and
other connection failures are logged once per outage, not once per query.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
import weakref

import dns.entropy
import dns.exception
import dns.message
import dns.nameserver
import dns.query

from . import metrics
from .log import event


class ConnectionLost(dns.exception.DNSException):
    """The TLS connection closed (or broke) before the answer arrived."""


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    """dnspython's DoT context (TLS 1.2 or later, the system CA store, host name checked, ALPN "dot"), with a
    private CA added to the system store rather than replacing it."""
    context = dns.query.make_ssl_context(True, True, ["dot"])
    if ca_file:
        context.load_verify_locations(ca_file)
    return context


class TlsNameserver(dns.nameserver.DoTNameserver):
    """A DoT upstream whose certificate must name `hostname`, queried over one kept-open connection."""

    def __init__(self, address: str, port: int, hostname: str, context: ssl.SSLContext) -> None:
        super().__init__(address, port, hostname, verify=True)
        self._link = _Link(address, port, hostname, context)
        weakref.finalize(self, self._link.close)  # a replaced configuration's resolver leaves no socket behind

    def query(
        self,
        request: dns.message.QueryMessage,
        timeout: float,
        source: str | None,
        source_port: int,
        max_size: bool = False,
        one_rr_per_rrset: bool = False,
        ignore_trailing: bool = False,
    ) -> dns.message.Message:
        return self._link.query(request, time.monotonic() + timeout)


class _Link:
    """The current connection to one upstream, opened (one handshake) by whichever query needs it first."""

    def __init__(self, address: str, port: int, hostname: str, context: ssl.SSLContext) -> None:
        self.address = address
        self.port = port
        self.hostname = hostname
        self.context = context
        self.name = f"tls://{address}:{port}#{hostname}"
        self._current: _Connection | None = None
        self._opening = threading.Lock()
        self._failing = ""  # the reason last logged for failing to connect; "" while connections work

    def query(self, request: dns.message.QueryMessage, deadline: float) -> dns.message.Message:
        connection, opened = self._connection(deadline)
        try:
            return connection.exchange(request, deadline)
        except ConnectionLost:
            if opened:  # a connection of our own that the upstream closed: nothing to retry on
                raise
        # A kept connection closed under the query (idle close, upstream restart): once more, on a new one.
        connection, _ = self._connection(deadline)
        return connection.exchange(request, deadline)

    def _connection(self, deadline: float) -> tuple[_Connection, bool]:
        """The open connection and False, or a new one and True."""
        current = self._current
        if current is not None and not current.closed:
            return current, False
        if not self._opening.acquire(timeout=max(deadline - time.monotonic(), 0)):
            raise dns.exception.Timeout
        try:
            current = self._current
            if current is not None and not current.closed:
                return current, False
            self._current = self._open(deadline)
            return self._current, True
        finally:
            self._opening.release()

    def _open(self, deadline: float) -> _Connection:
        try:
            raw = socket.create_connection((self.address, self.port), timeout=_left(deadline))
        except OSError as exc:
            self._failed(exc)
            raise
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            raw.settimeout(_left(deadline))
            sock = self.context.wrap_socket(raw, server_hostname=self.hostname)
        except OSError as exc:  # ssl.SSLError (a refused certificate among them) is an OSError
            raw.close()
            self._failed(exc)
            raise
        metrics.DNS_TLS_CONNECTIONS.inc()
        if self._failing:
            self._failing = ""
            event("dns-tls-connected", upstream=self.name)
        return _Connection(sock, self.name)

    def _failed(self, exc: OSError) -> None:
        """Log a failure to connect once per outage; a socket timeout is a DNS timeout to the resolver."""
        reason = _describe(exc)
        if reason != self._failing:
            self._failing = reason
            event("dns-tls-refused" if isinstance(exc, ssl.SSLError) else "dns-tls-unreachable", logging.WARNING,
                  upstream=self.name, reason=reason)  # fmt: skip
        if isinstance(exc, TimeoutError):
            raise dns.exception.Timeout from exc

    def close(self) -> None:
        if self._current is not None:
            self._current.close("resolver discarded")


class _Waiter:
    __slots__ = ("request", "done", "wire", "sent")

    def __init__(self, request: dns.message.QueryMessage) -> None:
        self.request = request
        self.done = threading.Event()
        self.wire: bytes | None = None
        self.sent = 0.0


class _Connection:
    """One TLS connection shared by every thread. Each call into the TLS object is made under one lock (an
    SSL object must not be read and written at once); waiting for the socket happens outside it."""

    def __init__(self, sock: ssl.SSLSocket, name: str) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._io = threading.Lock()  # every call into the SSL object
        self._writing = threading.Lock()  # one whole message at a time on the stream
        self._lock = threading.Lock()  # _waiting, closed
        self._waiting: dict[int, _Waiter] = {}
        self._received = time.monotonic()  # when bytes last arrived: a query unanswered since is on a dead line
        self.closed = False
        self._reason = ""
        threading.Thread(target=self._read, name=f"dot-reader {name}", daemon=True).start()

    def exchange(self, request: dns.message.QueryMessage, deadline: float) -> dns.message.Message:
        waiter = _Waiter(request)
        with self._lock:
            if self.closed:
                raise ConnectionLost(self._reason)
            while request.id in self._waiting:  # ids must be unique among the queries in flight
                request.id = dns.entropy.random_16()
            self._waiting[request.id] = waiter
        try:
            waiter.sent = time.monotonic()
            self._send(request.to_wire(prepend_length=True), deadline)
            if not waiter.done.wait(_left(deadline)):
                if self._received < waiter.sent:  # nothing at all came back since: the connection is dead
                    self.close("no answer on this connection")
                raise dns.exception.Timeout
            if waiter.wire is None:
                raise ConnectionLost(self._reason)
            response = dns.message.from_wire(waiter.wire)
            if not request.is_response(response):
                raise dns.query.BadResponse
            return response
        finally:
            with self._lock:
                self._waiting.pop(request.id, None)

    def _send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        with self._writing:
            while view:
                with self._io:
                    try:
                        sent = self._sock.send(view)
                    except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                        sent = 0
                    except OSError as exc:
                        self.close(_describe(exc))
                        raise ConnectionLost(self._reason) from exc
                view = view[sent:]
                if view and not _wait(self._sock, select.POLLOUT, _left(deadline)):
                    self.close("could not write a whole query")  # the stream holds part of a message
                    raise dns.exception.Timeout

    def _read(self) -> None:
        """Split the stream into messages and hand each to the query with its id; unknown ids (late answers
        to queries that timed out, or a broken upstream's) are dropped, as over UDP."""
        buffer = bytearray()
        try:
            while True:
                with self._io:  # read until the TLS layer has nothing buffered, then wait for the socket
                    try:
                        chunk = self._sock.recv(65536)
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                        chunk = None
                if chunk is None:
                    _wait(self._sock, select.POLLIN, None)
                    # ACK what came at once: a server that leaves Nagle on (unbound, for DoT) holds its first
                    # answer behind its TLS 1.3 session tickets until our delayed ACK, 40 ms later. Linux
                    # leaves quick-ACK mode by itself, hence once per wake-up.
                    self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                    continue
                if not chunk:
                    raise EOFError("closed by the upstream")
                self._received = time.monotonic()
                buffer += chunk
                while len(buffer) >= 2 and len(buffer) >= 2 + int.from_bytes(buffer[:2], "big"):
                    end = 2 + int.from_bytes(buffer[:2], "big")
                    wire = bytes(buffer[2:end])
                    del buffer[:end]
                    with self._lock:
                        waiter = self._waiting.get(int.from_bytes(wire[:2], "big")) if len(wire) >= 2 else None
                    if waiter is not None:
                        waiter.wire = wire
                        waiter.done.set()
        except (OSError, EOFError, ValueError) as exc:  # ValueError: a socket closed meanwhile
            self.close(_describe(exc))

    def close(self, reason: str) -> None:
        """Fail every query in flight (they go on to the next upstream) and close the socket."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._reason = reason
            waiting = list(self._waiting.values())
        for waiter in waiting:
            waiter.done.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the reader thread's poll()
        with self._io:
            self._sock.close()


def _wait(sock: ssl.SSLSocket, event: int, timeout: float | None) -> bool:
    """Whether `sock` became ready for `event` within `timeout` seconds (None: however long it takes). poll(),
    not select(): a busy milter's descriptors may be numbered beyond select()'s 1024."""
    poller = select.poll()
    poller.register(sock, event)
    return bool(poller.poll(None if timeout is None else timeout * 1000))


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate refused: {exc.verify_message}"
    return str(exc) or type(exc).__name__
