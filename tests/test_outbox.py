"""The outbox threads against a real RabbitMQ and a real webhook receiver: what is published and how, in order,
once confirmed; a broker down at the start, stopped mid-stream and restarted; a webhook answering 500, hanging,
refusing, or showing a certificate of an unknown CA. Outages are logged once each way; no secret is logged."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from dataclasses import asdict

import pika
import pytest

from mailwarden import daemon, metrics, outbox
from mailwarden.amqp import AmqpSink
from mailwarden.config import load
from mailwarden.events import Event
from mailwarden.outbox import SinkWorker
from mailwarden.store import Store
from mailwarden.webhook import WebhookSink

from .postfix import wait_for
from .webhook_receiver import WebhookReceiver


def event(recipient: str, category: str = "bad-mailbox", type_: str = "hard") -> Event:
    return Event(id=str(uuid.uuid4()), time="2026-03-01T10:00:00+00:00", recipient=recipient, category=category,
                 type=type_, status="5.1.1", confidence=0.97, model="0123456789ab", queue_id="4ABC",
                 reporting_mta="mx.far.example", diagnostic="550 5.1.1 <x> no such user")  # fmt: skip


def logged(caplog: pytest.LogCaptureFixture, name: str) -> list[dict]:
    return [r.fields for r in caplog.records if r.getMessage() == name]


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    """Retries and polls in tenths of a second, so that outages and recoveries fit in a test."""
    monkeypatch.setattr(outbox, "BACKOFF", (0.1, 0.2, 0.4))
    monkeypatch.setattr(outbox, "POLL", 0.2)


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "events.sqlite")
    yield store
    store.close()


class Queue:
    """A durable queue of the test's own, bound to every bounce on the exchange (as a consumer sets one up)."""

    def __init__(self, url: str, exchange: str) -> None:
        self.url, self.exchange, self.name = url, exchange, f"q-{uuid.uuid4().hex[:8]}"
        self.declare()

    def declare(self) -> None:
        with pika.BlockingConnection(pika.URLParameters(self.url)) as connection:
            channel = connection.channel()
            channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
            channel.queue_declare(self.name, durable=True)
            channel.queue_bind(self.name, self.exchange, routing_key="bounce.#")

    def take(self, count: int, timeout: float = 60) -> list[tuple[pika.spec.Basic.Deliver, pika.BasicProperties, dict]]:
        """`count` messages (waiting for them), acknowledged."""
        got: list = []

        def fetch() -> bool:
            with pika.BlockingConnection(pika.URLParameters(self.url)) as connection:
                channel = connection.channel()
                while len(got) < count:
                    method, properties, body = channel.basic_get(self.name, auto_ack=True)
                    if method is None:
                        return False
                    got.append((method, properties, json.loads(body)))
            return True

        wait_for(fetch, timeout, f"{count} messages on {self.name} (have {len(got)})", 0.2)
        return got


def worker(store: Store, sink) -> SinkWorker:
    started = SinkWorker(store.path, sink)
    started.start()  # the sink's cursor is open when this returns
    return started


def test_events_are_published_persistent_in_order_with_their_id_and_routing_key(rabbitmq, store):
    exchange = f"mw-{uuid.uuid4().hex[:8]}"
    queue = Queue(rabbitmq.url, exchange)
    publisher = worker(store, AmqpSink(rabbitmq.url, exchange))
    published = metrics.EVENTS_PUBLISHED.labels("amqp")._value.get()
    sent = [event(f"r{n}@far.example") for n in range(5)] + [event("full@far.example", "quota-issues", "transient")]
    try:
        store.record(sent, [])
        outbox.notify()
        got = queue.take(len(sent))
    finally:
        publisher.halt()
        publisher.join()
    assert [body for _, _, body in got] == [asdict(e) for e in sent]
    assert [method.routing_key for method, _, _ in got] == ["bounce.hard.bad-mailbox"] * 5 + [
        "bounce.transient.quota-issues"]
    for (_, properties, _), sent_event in zip(got, sent, strict=True):
        assert (properties.delivery_mode, properties.content_type, properties.message_id) == (
            2, "application/json", sent_event.id)
    assert store.backlog("amqp")[0] == 0
    assert metrics.EVENTS_PUBLISHED.labels("amqp")._value.get() == published + len(sent)


def test_a_broker_down_at_start_and_restarted_mid_stream_loses_nothing_and_keeps_the_order(rabbitmq, store, caplog):
    exchange = f"mw-{uuid.uuid4().hex[:8]}"
    queue = Queue(rabbitmq.url, exchange)
    rabbitmq.stop()
    first = [event(f"a{n}@far.example") for n in range(3)]
    second = [event(f"b{n}@far.example") for n in range(3)]
    with caplog.at_level(logging.INFO):
        publisher = worker(store, AmqpSink(rabbitmq.url, exchange, timeout=2))
        try:
            store.record(first, [])
            outbox.notify()
            wait_for(lambda: logged(caplog, "sink-down"), 20, "the broker to be found down")
            assert store.backlog("amqp")[0] == 3  # waiting in the store
            rabbitmq.start()
            got = queue.take(3)
            rabbitmq.stop()  # mid-stream: the open connection breaks
            store.record(second, [])
            outbox.notify()
            wait_for(lambda: len(logged(caplog, "sink-down")) == 2, 20, "the second outage")
            rabbitmq.start()
            got += queue.take(3)
        finally:
            rabbitmq.start() if rabbitmq.proc.poll() is not None else None
            publisher.halt()
            publisher.join()
    ids = [body["id"] for _, _, body in got]
    assert ids == [e.id for e in first + second]
    assert [f["sink"] for f in logged(caplog, "sink-up")] == ["amqp", "amqp"]  # once per outage
    assert metrics.SINK_UP.labels("amqp")._value.get() == 1


def test_amqp_credentials_never_reach_the_log(rabbitmq, store, caplog):
    secret = "s3cr%40t-pw"
    url = rabbitmq.url.replace("guest:guest", f"guest:{secret}")
    with caplog.at_level(logging.INFO):
        publisher = worker(store, AmqpSink(url, f"mw-{uuid.uuid4().hex[:8]}", timeout=2))
        try:
            store.record([event("r@far.example")], [])
            outbox.notify()
            wait_for(lambda: logged(caplog, "sink-down"), 20, "the refused login")
        finally:
            publisher.halt()
            publisher.join()
    (down,) = logged(caplog, "sink-down")
    assert "guest:***@" in down["target"] and "ACCESS_REFUSED" in down["error"]
    written = repr([(r.getMessage(), getattr(r, "fields", {})) for r in caplog.records])  # every line, every field
    assert "s3cr" not in written
    assert store.backlog("amqp")[0] == 1  # still waiting


@pytest.fixture
def receiver(test_ca):
    receiver = WebhookReceiver(test_ca.issue("localhost")).start()
    yield receiver
    receiver.stop()


def test_the_webhook_gets_listmonks_bounce_shape_signed_over_https_with_basic_auth(store, receiver, test_ca):
    url = receiver.url(host="localhost", login="api:p%40ss")
    sink = WebhookSink(url, secret="hmac-key", ca_file=str(test_ca.pem), timeout=2)
    sent = [event("gone@far.example"), event("full@far.example", "quota-issues", "transient")]
    publisher = worker(store, sink)
    try:
        store.record(sent, [])
        outbox.notify()
        wait_for(lambda: len(receiver.received) == 2, 20, "two webhook posts")
    finally:
        publisher.halt()
        publisher.join()
    first, second = receiver.received
    assert first.path == "/webhooks/bounce"
    assert {k: first.json[k] for k in ("email", "source", "type")} == {
        "email": "gone@far.example", "source": "mailwarden", "type": "hard"}
    assert second.json["type"] == "soft" and second.event == asdict(sent[1])  # the whole event in meta
    assert first.headers["Authorization"] == "Basic YXBpOnBAc3M="  # api:p@ss
    expected = "sha256=" + hmac.new(b"hmac-key", first.body, hashlib.sha256).hexdigest()
    assert first.headers["X-Mailwarden-Signature"] == expected


def test_a_webhook_that_fails_or_hangs_gets_the_events_later_in_order(store, receiver, test_ca, caplog):
    receiver.behaviour.statuses = [500, 503]
    sink = WebhookSink(receiver.url(host="localhost"), ca_file=str(test_ca.pem), timeout=0.5)
    sent = [event(f"r{n}@far.example") for n in range(4)]
    with caplog.at_level(logging.INFO):
        publisher = worker(store, sink)
        try:
            store.record(sent[:2], [])
            outbox.notify()
            wait_for(lambda: len(receiver.received) == 2, 20, "the posts after two 5xx answers")
            receiver.behaviour.hang = 1.0  # past the client's timeout
            store.record(sent[2:], [])
            outbox.notify()
            wait_for(lambda: len(logged(caplog, "sink-down")) == 2, 20, "the hanging receiver found down")
            receiver.behaviour.hang = 0
            wait_for(lambda: store.backlog("webhook")[0] == 0, 20, "the rest after the hang")
        finally:
            publisher.halt()
            publisher.join()
    delivered = [r.event["id"] for r in receiver.received]
    assert list(dict.fromkeys(delivered)) == [e.id for e in sent]  # in order; a hung one may come twice
    assert len(logged(caplog, "sink-down")) == len(logged(caplog, "sink-up")) == 2
    assert "HTTP 500" in logged(caplog, "sink-down")[0]["error"]


def test_a_webhook_refusal_or_redirect_skips_that_event_and_counts_it(store, receiver, test_ca, caplog):
    receiver.behaviour.statuses = [400, 302]  # a redirect is not followed: it could carry the credentials away
    failed = metrics.EVENTS_FAILED.labels("webhook")._value.get()
    sent = [event("bad@far.example"), event("moved@far.example"), event("good@far.example")]
    with caplog.at_level(logging.INFO):
        publisher = worker(store, WebhookSink(receiver.url(host="localhost"), ca_file=str(test_ca.pem), timeout=2))
        try:
            store.record(sent, [])
            outbox.notify()
            wait_for(lambda: store.backlog("webhook")[0] == 0, 20, "both events taken")
        finally:
            publisher.halt()
            publisher.join()
    assert [r.json["email"] for r in receiver.received] == ["good@far.example"]
    assert [(f["event_id"], f["status"]) for f in logged(caplog, "webhook-refused")] == [(sent[0].id, 400),
                                                                                         (sent[1].id, 302)]
    assert receiver.attempts == 3  # nothing followed the redirect
    assert metrics.EVENTS_FAILED.labels("webhook")._value.get() == failed + 2
    assert logged(caplog, "sink-down") == []


def test_a_webhook_certificate_from_an_unknown_ca_is_refused(store, receiver, caplog):
    with caplog.at_level(logging.INFO):
        publisher = worker(store, WebhookSink(receiver.url(host="localhost"), timeout=2))  # system CAs only
        try:
            store.record([event("r@far.example")], [])
            outbox.notify()
            wait_for(lambda: logged(caplog, "sink-down"), 20, "the certificate refused")
        finally:
            publisher.halt()
            publisher.join()
    assert "CERTIFICATE_VERIFY_FAILED" in logged(caplog, "sink-down")[0]["error"]
    assert receiver.attempts == 0 and store.backlog("webhook")[0] == 1


def test_a_reload_that_changes_the_webhook_sends_the_next_events_to_the_new_one(tmp_path, monkeypatch):
    old, new = WebhookReceiver().start(), WebhookReceiver().start()
    path = tmp_path / "mailwarden.toml"
    config = '[bounce]\nenabled = false\n[events]\nstore = "{store}"\nwebhook_url = "{url}"\n'
    path.write_text(config.format(store=tmp_path / "events.sqlite", url=old.url()))
    served = daemon.Daemon(load(path), str(path))
    served.events.start()
    store = Store(tmp_path / "events.sqlite")
    try:
        store.record([event("first@far.example")], [])
        outbox.notify()
        wait_for(lambda: len(old.received) == 1, 20, "the first event at the old webhook")
        path.write_text(config.format(store=tmp_path / "events.sqlite", url=new.url()))
        served.reload()
        store.record([event("second@far.example")], [])
        outbox.notify()
        wait_for(lambda: len(new.received) == 1, 20, "the second event at the new webhook")
    finally:
        served.events.stop()
        old.stop()
        new.stop()
    assert [r.json["email"] for r in old.received] == ["first@far.example"]
    assert [r.json["email"] for r in new.received] == ["second@far.example"]
