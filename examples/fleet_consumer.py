"""Fleet consumer: one suppression list for many MTAs, built from the bounce events they publish to RabbitMQ.

Every mailwarden of the fleet publishes to the same durable topic exchange; this consumer reads its own durable
queue bound to `bounce.#` and records each event in a mailwarden store of its own, which applies the same
suppression rules ([suppression], [domains."…".suppression] of --config). Delivery is at least once, so an
event whose id the store already has is acknowledged and skipped; an event is acknowledged only after it is
committed, so a consumer killed mid-way loses nothing. Read the list with
`mailwarden bounces suppressed --config FLEET.toml` (whose [events] store is the --store given here).

    python examples/fleet_consumer.py --amqp-url amqp://user:pw@broker/%2F --store /var/lib/fleet/events.sqlite
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

import pika

from mailwarden.config import Config, load
from mailwarden.events import Event
from mailwarden.store import Store


def declare(channel: pika.adapters.blocking_connection.BlockingChannel, exchange: str, queue: str) -> None:
    """The exchange as mailwarden declares it, and this consumer's durable queue bound to every bounce."""
    channel.exchange_declare(exchange, exchange_type="topic", durable=True)
    channel.queue_declare(queue, durable=True)
    channel.queue_bind(queue, exchange, routing_key="bounce.#")


def consume(url: str, exchange: str, queue: str, store: Store, config: Config) -> None:
    """Record events until the connection closes or the process is told to stop."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    declare(channel, exchange, queue)
    channel.basic_qos(prefetch_count=100)

    def on_message(channel, method, properties, body: bytes) -> None:
        event = Event(**json.loads(body))
        if not store.known(event.id):  # a duplicate from an at-least-once redelivery
            store.record([event], [], config.suppression_for)
        channel.basic_ack(method.delivery_tag)

    channel.basic_consume(queue, on_message)
    signal.signal(signal.SIGTERM, lambda *_: channel.stop_consuming())
    try:
        channel.start_consuming()
    finally:
        if connection.is_open:
            connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--exchange", default="mailwarden")
    parser.add_argument("--queue", default="mailwarden-suppression")
    parser.add_argument("--store", required=True, help="the fleet's store (created 0640)")
    parser.add_argument("--config", help="suppression rules from this mailwarden configuration")
    args = parser.parse_args(argv)
    store = Store(args.store)
    try:
        consume(args.amqp_url, args.exchange, args.queue, store, load(args.config) if args.config else Config())
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
