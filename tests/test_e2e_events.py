"""Bounce events through the real Postfix, the real daemon, a real RabbitMQ and an HTTPS webhook receiver: the
events match the X-Mailwarden-Bounce fields one for one in the store, on the broker and at the webhook; a hard
bounce suppresses its address; with the broker stopped mail is still delivered at once and the events arrive
once it is back; events pending when the daemon is killed with -9 are published after its restart; a bounce
listing 10,000 recipients is bounded; the fleet example consumer builds the same suppression list."""

from __future__ import annotations

import json
import os
import re
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pika
import pytest

from .conftest import daemon_config
from .postfix import Daemon, Postfix, wait_for
from .test_e2e_bounces import CORPUS, FIELD
from .test_outbox import Queue
from .webhook_receiver import WebhookReceiver

EXAMPLES = Path(__file__).parent.parent / "examples"
LABEL_KEYS = ("recipient", "category", "type", "status", "confidence", "model")


def base_dir() -> Path:
    """A directory the postfix user can traverse, outside /tmp/mailwarden-e2e-* (which other test runs on a shared
    machine clean up, under a running stack)."""
    base = Path(tempfile.mkdtemp(prefix="mailwarden-events-", dir="/var/tmp"))
    os.chmod(base, 0o755)
    return base


class Stack:
    """Daemon with [events] to the broker and the webhook, Postfix in front, one queue bound to every bounce."""

    def __init__(self, dns_server, rabbitmq, receiver: WebhookReceiver, ca: Path) -> None:
        self.base = base_dir()
        self.rabbitmq = rabbitmq
        self.receiver = receiver
        self.exchange = f"mw-e2e-{uuid.uuid4().hex[:8]}"
        self.queue = Queue(rabbitmq.url, self.exchange)
        self.store = self.base / "events.sqlite"
        events = (f'\n[events]\nstore = "{self.store}"\namqp_url = "{rabbitmq.url}"\n'
                  f'amqp_exchange = "{self.exchange}"\n'
                  f'webhook_url = "{receiver.url(host="localhost", login="api:secret-pw")}"\n'
                  f'webhook_secret = "hmac-key"\nwebhook_ca_file = "{ca}"\n')  # fmt: skip
        self.daemon = Daemon(daemon_config(self.base, dns_server) + events, self.base).start()
        self.postfix = Postfix(self.base, milter=f"unix:{self.base}/milter.sock").start()

    def deliver(self, raw: bytes) -> list[dict[str, str]]:
        return labels(deliver(self.postfix, raw))

    def mailwarden(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "mailwarden.cli", "bounces", *args, "--config",
                               str(self.daemon.config)], capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def stored(self) -> list[dict]:
        return [json.loads(line) for line in self.mailwarden("list", "--json").splitlines()]

    def metrics(self) -> dict[str, float]:
        address = re.search(r'address = "([^"]+)"', self.daemon.config.read_text())[1]
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
            text = response.read().decode()
        return {name: float(value) for name, value in re.findall(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", text, re.M)}

    def close(self) -> None:
        self.postfix.stop()
        self.daemon.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def deliver(postfix: Postfix, raw: bytes) -> list[str]:
    """Send a bounce with the null sender; the X-Mailwarden-Bounce fields it was delivered with."""
    marker = f"mw-{uuid.uuid4().hex}"
    with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=60) as smtp:
        smtp.sendmail("", ["bob@example.org"], f"X-Test-Marker: {marker}\r\n".encode() + raw)
    return postfix.delivered(marker, timeout=60).get_all("X-Mailwarden-Bounce") or []


def labels(values: list[str]) -> list[dict[str, str]]:
    found = []
    for value in values:
        match = FIELD.match(value)
        assert match, value
        found.append({**match.groupdict(), "recipient": match["rcpt"]})
    return found


def label_of(event: dict) -> tuple:
    """An event as its header field shows it."""
    return (event["recipient"], event["category"], event["type"], event["status"] or "none",
            f"{event['confidence']:.2f}", event["model"])  # fmt: skip


def failure_labels(fields: list[dict[str, str]]) -> list[tuple]:
    """Header fields of failed recipients (a recipient a report says was delivered gets no event)."""
    return [tuple(f[k] for k in LABEL_KEYS) for f in fields if f["type"] != "none"]


@pytest.fixture(scope="module")
def receiver(test_ca):
    receiver = WebhookReceiver(test_ca.issue("localhost")).start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def stack(dns_server, rabbitmq, receiver, test_ca):
    stack = Stack(dns_server, rabbitmq, receiver, test_ca.pem)
    yield stack
    stack.close()


def test_events_match_the_headers_one_for_one_in_the_store_on_the_broker_and_at_the_webhook(stack):
    fields = []
    for name in ("lhost-postfix-13.eml", "lhost-postfix-02.eml", "lhost-postfix-11.eml"):
        fields += stack.deliver((CORPUS / name).read_bytes())
    stack.postfix.sendmail("alice@example.org", ["nobody@full.test"], b"Subject: to a full mailbox\n\nHello.\n")
    fields += labels(stack.postfix.delivered("Subject: to a full mailbox").get_all("X-Mailwarden-Bounce"))
    expected = failure_labels(fields)
    assert len(expected) == 7

    stored = stack.stored()
    assert [label_of(e) for e in stored] == expected
    published = [body for _, _, body in stack.queue.take(len(expected))]
    assert published == stored  # the same events, ids and all, in the same order
    wait_for(lambda: len(stack.receiver.received) >= len(expected), 30, "the webhook posts")
    assert [r.event for r in stack.receiver.received] == stored
    assert all(r.headers["Authorization"].startswith("Basic ") for r in stack.receiver.received)
    assert "secret-pw" not in stack.daemon.log()

    by_id = {e["id"]: e for e in stored}
    assert len(by_id) == len(stored) and all(e["queue_id"] and e["diagnostic"] for e in stored)
    postfix_bounce = stored[-1]
    assert (postfix_bounce["recipient"], postfix_bounce["reporting_mta"]) == ("nobody@full.test", "mx.mailwarden.test")

    suppressed = {json.loads(line)["address"]: json.loads(line) for line in
                  stack.mailwarden("suppressed", "--json").splitlines()}  # fmt: skip
    hard = {e["recipient"].lower() for e in stored if e["type"] == "hard" and e["category"] != "inactive-mailbox"}
    assert hard and set(suppressed) == hard  # soft and transient ones are below the threshold
    assert all(s["reason"] == "hard-bounce" and s["events"] >= 1 for s in suppressed.values())


def test_the_fleet_consumer_builds_the_same_suppression_list_and_dedupes_redeliveries(stack, tmp_path):
    queue = f"fleet-{uuid.uuid4().hex[:8]}"
    fleet_store = tmp_path / "fleet.sqlite"
    with pika.BlockingConnection(pika.URLParameters(stack.rabbitmq.url)) as connection:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True)
        channel.queue_bind(queue, stack.exchange, routing_key="bounce.#")
        events = stack.stored()
        for event in events + events[:2]:  # what the fleet published, two of them twice (at least once)
            channel.basic_publish(stack.exchange, f"bounce.{event['type']}.{event['category']}",
                                  json.dumps(event).encode(), pika.BasicProperties(message_id=event["id"]))
    consumer = subprocess.Popen([sys.executable, str(EXAMPLES / "fleet_consumer.py"), "--amqp-url",
                                 stack.rabbitmq.url, "--exchange", stack.exchange, "--queue", queue, "--store",
                                 str(fleet_store)])  # fmt: skip
    try:
        config = tmp_path / "fleet.toml"
        config.write_text(f'[events]\nstore = "{fleet_store}"\n')

        def fleet(*args: str) -> str:
            return subprocess.run([sys.executable, "-m", "mailwarden.cli", "bounces", *args, "--config", str(config)],
                                  capture_output=True, text=True, timeout=60).stdout  # fmt: skip

        wait_for(lambda: fleet_store.exists() and len(fleet("list", "--json").splitlines()) == len(events), 30,
                 "the consumer to record every event")  # fmt: skip
        time.sleep(1)  # the duplicates were consumed too
        assert len(fleet("list", "--json").splitlines()) == len(events)
        assert fleet("suppressed", "--json") == stack.mailwarden("suppressed", "--json")
    finally:
        consumer.terminate()
        consumer.wait(20)


def test_with_the_broker_stopped_mail_is_delivered_at_once_and_the_events_follow_when_it_is_back(stack):
    before = len(stack.stored())
    stack.rabbitmq.stop()
    try:
        started = time.monotonic()
        fields = stack.deliver((CORPUS / "lhost-postfix-63.eml").read_bytes())
        assert time.monotonic() - started < 10  # no wait on the broker (the broker's own timeouts are 10 s)
        wait_for(lambda: "sink-down" in stack.daemon.log(), 30, "the broker found down")
        wait_for(lambda: stack.metrics().get('mailwarden_outbox_depth{sink="amqp"}', 0) >= 1, 30, "outbox depth")
        assert stack.metrics()['mailwarden_sink_up{sink="amqp"}'] == 0
    finally:
        stack.rabbitmq.start()
    new = stack.stored()[before:]
    assert [label_of(e) for e in new] == failure_labels(fields)
    published = [body for _, _, body in stack.queue.take(len(new))]
    assert published == new
    wait_for(lambda: "sink-up sink=amqp" in stack.daemon.log(), 30, "the broker back in the log")
    log = stack.daemon.log()
    assert log.count("sink-down sink=amqp") == 1 and log.count("sink-up sink=amqp") == 1
    assert "guest:***@" in log and "guest:guest" not in log


def test_events_pending_at_a_kill_9_are_published_after_the_restart(stack):
    before = len(stack.stored())
    stack.rabbitmq.stop()
    try:
        fields = stack.deliver((CORPUS / "lhost-postfix-13.eml").read_bytes())
        new = stack.stored()[before:]  # committed before end of message was answered
        assert [label_of(e) for e in new] == failure_labels(fields)
        stack.daemon.proc.kill()
        stack.daemon.proc.wait(10)
    finally:
        stack.rabbitmq.start()
    listening = stack.daemon.log().count("listening")
    stack.daemon.start()
    wait_for(lambda: stack.daemon.log().count("listening") > listening, 30, "the restarted daemon")
    published = [body for _, _, body in stack.queue.take(len(new))]
    assert published == new
    wait_for(lambda: len({r.event["id"] for r in stack.receiver.received} & {e["id"] for e in new}) == len(new), 30,
             "the webhook to get them too")  # fmt: skip


def test_a_bounce_listing_10000_recipients_is_bounded_and_its_events_match_its_headers(stack):
    blocks = "".join(f"Final-Recipient: rfc822; user{n}@many.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
                     f"Diagnostic-Code: smtp; 550 5.1.1 <user{n}@many.example>: User unknown\r\n\r\n"
                     for n in range(10_000))  # fmt: skip
    raw = ("From: MAILER-DAEMON@relay.example\r\nTo: alice@example.org\r\nSubject: Undelivered Mail\r\n"
           "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
           "--B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n\r\n"
           "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
           f"Reporting-MTA: dns; relay.example\r\n\r\n{blocks}--B--\r\n").encode()  # fmt: skip
    before = len(stack.stored())
    stored_before = stack.metrics()["mailwarden_events_stored_total"]
    started = time.monotonic()
    fields = stack.deliver(raw)
    assert time.monotonic() - started < 30
    assert 0 < len(fields) <= 200  # the classifier's bound on the recipients of one report
    new = stack.stored()[before:]
    assert [label_of(e) for e in new] == failure_labels(fields)
    assert {e["reporting_mta"] for e in new} == {"relay.example"}
    assert stack.metrics()["mailwarden_events_stored_total"] == stored_before + len(new)
