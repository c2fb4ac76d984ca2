"""Publishing events to RabbitMQ (AMQP 0-9-1, pika's blocking connection, on the outbox's own thread).

Each event is one persistent message (delivery_mode 2, JSON, content_type application/json, message_id = the
event id) on a durable topic exchange, routing key `bounce.<type>.<category>`, so a consumer binds what it acts on
(`bounce.hard.#`, `bounce.*.reputation-blocked`). The channel is in confirm mode and each publish waits for the
broker's confirm before the next is sent: an event counts as taken only once the broker has it, and the order
is kept. Timeouts bound every wait on a broker that is slow or blocked (a resource alarm), so the outbox
thread notices it and backs off; mail never waits for any of it.
"""

from __future__ import annotations

import contextlib
import logging

import pika
import pika.exceptions

from .events import Event
from .sinks import Sent, SinkDown, redacted, url_secrets

TIMEOUT = 10.0  # seconds: connect, socket reads, a blocked connection, a confirm
HEARTBEAT = 60  # seconds; served while idle by idle()
PERSISTENT = 2

# pika logs every failed connection attempt with a traceback, on loggers of its own that would reach stderr
# through Python's last-resort handler; the outbox logs the outage once, in mailwarden's format.
logging.getLogger("pika").addHandler(logging.NullHandler())
logging.getLogger("pika").propagate = False


def routing_key(event: Event) -> str:
    return f"bounce.{event.type}.{event.category}"


class AmqpSink:
    name = "amqp"

    def __init__(self, url: str, exchange: str, timeout: float = TIMEOUT) -> None:
        self.parameters = pika.URLParameters(url)
        self.parameters.socket_timeout = self.parameters.stack_timeout = timeout
        self.parameters.blocked_connection_timeout = timeout
        self.parameters.connection_attempts = 1
        self.parameters.heartbeat = HEARTBEAT
        self.exchange = exchange
        self.target = f"{redacted(url)} exchange={exchange}"
        self.secrets = url_secrets(url)
        self._connection: pika.BlockingConnection | None = None
        self._channel = None

    def _open(self) -> None:
        self._connection = pika.BlockingConnection(self.parameters)
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()
        self._channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)

    def send(self, events: list[Event]) -> Sent:
        """Publish in order, each confirmed before the next. A connection that broke while idle gets one more
        go on a new connection; a new connection that fails means the broker is down."""
        taken = 0

        def publish_rest() -> Sent:
            nonlocal taken
            if self._channel is None:
                self._open()
            for event in events[taken:]:
                self._publish(event)
                taken += 1
            return Sent(taken)

        reused = self._channel is not None
        try:
            return publish_rest()
        except (pika.exceptions.AMQPError, OSError) as exc:
            self.close()
            if not reused:
                raise SinkDown(f"{type(exc).__name__}: {exc}", Sent(taken)) from exc
        try:
            return publish_rest()
        except (pika.exceptions.AMQPError, OSError) as exc:
            self.close()
            raise SinkDown(f"{type(exc).__name__}: {exc}", Sent(taken)) from exc

    def _publish(self, event: Event) -> None:
        properties = pika.BasicProperties(content_type="application/json", delivery_mode=PERSISTENT,
                                          message_id=event.id, type="bounce")  # fmt: skip
        self._channel.basic_publish(self.exchange, routing_key(event), event.json().encode(), properties)

    def idle(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.process_data_events(time_limit=0)  # heartbeats, a broker's close
        except (pika.exceptions.AMQPError, OSError):
            self.close()

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                connection.close()
