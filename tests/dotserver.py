"""A DNS-over-TLS endpoint on loopback in front of the test DNS server: a small TLS relay.

RFC 7858 framing is DNS over TCP inside TLS. Each connection is read as a stream of length-prefixed queries;
every query is relayed as a task of its own to the test server (`tests/dnsserver.py`) over TCP and its
answer written back when it comes, so pipelined queries are answered in whatever order they finish, as a
real server may. An unanswered query (a TIMEOUT record) gets no answer. The relay counts handshakes and queries,
and plays the faults of a broken upstream: `fault = "close-mid-answer"` (half an answer, then the connection
is closed), `"wrong-id"` (every answer carries another query id), `"one-answer"` (a connection's second
query makes the upstream close it unanswered, as an idle close crossing a query on the wire does), `"mute"`
(connections opened now never answer, as over a link that died without a word); `delay` makes every answer
late.
`stop()` kills it (listener and every connection); `start()` brings it back on the same port.
"""

from __future__ import annotations

import asyncio
import ssl
import threading

from .dnsserver import free_port
from .tlscerts import ServerCert


class DoTRelay:
    """Runs in an asyncio loop of its own thread (asyncio's TLS is one state machine per connection, never read
    and written from two threads at once)."""

    __test__ = False

    def __init__(self, dns_port: int, cert: ServerCert) -> None:
        self.dns_port = dns_port
        self.port = free_port()
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert.cert, cert.key)
        self.fault = ""
        self.delay = 0.0
        self.handshakes = 0  # completed TLS handshakes, i.e. connections the client opened and accepted
        self.queries = 0
        self.most_in_flight = 0  # the most queries one connection had waiting for their answers at once
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()

    def start(self) -> DoTRelay:
        self._call(self._start())
        return self

    def stop(self) -> None:
        """Kill the endpoint: no listener, every open connection reset."""
        self._call(self._stop())

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)

    def _call(self, coroutine) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.context,
                                                  reuse_address=True)  # fmt: skip

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        self._writers.add(writer)
        mute = self.fault == "mute"
        in_flight = [0]
        tasks = set()
        try:
            while True:
                length = await reader.readexactly(2)
                query = await reader.readexactly(int.from_bytes(length, "big"))
                if self.fault == "one-answer" and tasks:
                    raise OSError("closing with a query unanswered")
                self.queries += 1
                in_flight[0] += 1
                self.most_in_flight = max(self.most_in_flight, in_flight[0])
                if mute:
                    continue
                task = asyncio.create_task(self._answer(writer, query, in_flight))
                tasks.add(task)
        except (OSError, asyncio.IncompleteReadError):
            self._writers.discard(writer)
            writer.transport.abort()

    async def _answer(self, writer: asyncio.StreamWriter, query: bytes, in_flight: list[int]) -> None:
        answer = await self._ask(query)
        if self.delay:
            await asyncio.sleep(self.delay)
        in_flight[0] -= 1
        if answer is None or writer.is_closing():
            return
        if self.fault == "wrong-id":
            answer = ((int.from_bytes(answer[:2], "big") + 1) % 65536).to_bytes(2, "big") + answer[2:]
        frame = len(answer).to_bytes(2, "big") + answer
        if self.fault == "close-mid-answer":
            writer.write(frame[: len(frame) // 2])
            await writer.drain()
            await asyncio.sleep(0.05)  # let the half answer leave before the connection is cut
            writer.transport.abort()
            return
        writer.write(frame)

    async def _ask(self, query: bytes) -> bytes | None:
        """The test server's answer over TCP, None when it gives none (its TIMEOUT records)."""
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.dns_port)
        except OSError:
            return None
        try:
            writer.write(len(query).to_bytes(2, "big") + query)
            length = await reader.readexactly(2)
            return await reader.readexactly(int.from_bytes(length, "big"))
        except (OSError, asyncio.IncompleteReadError):
            return None
        finally:
            writer.close()
