"""Crashes and restarts through real Postfix (milter_default_action = tempfail): kill -9 the daemon during a
stream of messages and start it again; every message is accounted for, delivered (with our verdict) or refused
with a temporary error to the client, none silently lost. A bug inside a check costs a verdict (temperror and
the configured action), a bug outside the checks costs that one message a 451; the daemon keeps serving."""

from __future__ import annotations

import email
import email.policy
import os
import signal
import smtplib
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ..conftest import AUTHSERV_ID, GOOD_IP
from ..postfix import wait_for
from .conftest import ServiceDaemon, our_ar, results_by_key, start_stack
from .faulty_daemon import BOOM_IP
from .rawsmtp import RawSMTP, transaction

REPO = Path(__file__).resolve().parents[2]
DSN = REPO / "tests" / "data" / "dsn-corpus" / "eml" / "lhost-postfix-63.eml"


@pytest.fixture
def own_stack(hostile_dns):
    stack = start_stack(hostile_dns)
    yield stack
    stack.stop()


def delivered_files(stack) -> list[Path]:
    new = stack.postfix.maildir / "new"
    return list(new.iterdir()) if new.exists() else []


def deliveries(stack) -> dict[str, int]:
    """marker -> number of delivered copies."""
    counts: dict[str, int] = {}
    for path in delivered_files(stack):
        text = path.read_bytes()
        start = text.find(b"Subject: mw-")
        if start >= 0:
            marker = text[start + 9 : start + 9 + 35].decode()
            counts[marker] = counts.get(marker, 0) + 1
    return counts


def account(stack, transcripts) -> dict[str, int]:
    """Check every message's fate; returns how many were delivered and how many refused temporarily."""
    time.sleep(1)  # let the last queued messages reach the Maildir
    wait_for(lambda: all(m in deliveries(stack) for m in [t.marker for t in transcripts if t.outcome() == 250]),
             30, "delivery of every accepted message")  # fmt: skip
    delivered = deliveries(stack)
    fates = {"delivered": 0, "tempfailed": 0}
    for sent in transcripts:
        code = sent.outcome()
        assert code == 250 or 400 <= code < 500, (code, sent.replies)  # a reply, and never a permanent one
        if code == 250:
            assert delivered.get(sent.marker) == 1, sent.marker  # accepted: delivered exactly once
            fates["delivered"] += 1
        else:
            assert sent.marker not in delivered  # refused: the client keeps it and retries
            fates["tempfailed"] += 1
    return fates


def delivered_count(transcripts) -> int:
    return sum(1 for t in list(transcripts) if t.outcome() == 250)


def test_kill_9_during_a_stream_loses_nothing(own_stack):
    stack, transcripts, stop = own_stack, [], threading.Event()
    lock = threading.Lock()

    def sender(n: int) -> None:
        """Sends until told to stop. Anything that ends it early (a connection refused, reset or timed out: not
        something Postfix may do to a client) reaches the test through its future."""
        i = 0
        while not stop.is_set():
            sent = transaction(stack.port, f"s{n}-{i}@good.test".encode(), [b"bob@example.org"], ip=GOOD_IP,
                               timeout=60)  # fmt: skip
            with lock:
                transcripts.append(sent)
            if sent.outcome() != 250:
                time.sleep(0.05)  # a client backs off after a temporary failure
            i += 1

    def delivered_since(seen: int) -> bool:
        for future in senders:
            if future.done():
                future.result()  # a sender only ends early by an exception: raise it here
        return delivered_count(transcripts) >= seen + 25

    kills = 0
    with ThreadPoolExecutor(4) as pool:
        senders = [pool.submit(sender, n) for n in range(4)]
        try:
            for _ in range(3):
                seen = delivered_count(transcripts)
                wait_for(lambda: delivered_since(seen), 60, "deliveries before the kill")  # noqa: B023
                os.kill(stack.daemon.pid, signal.SIGKILL)
                stack.daemon.proc.wait(10)
                kills += 1
                time.sleep(1.0)  # messages arriving now meet a dead milter
                stack.daemon.start()  # same socket path: a stale socket file must not stop the restart
            seen = delivered_count(transcripts)
            wait_for(lambda: delivered_since(seen), 60, "deliveries after the last restart")
        finally:
            stop.set()
    for future in senders:
        future.result()  # every sender ran to the end: no session dropped out of the accounting
    fates = account(stack, transcripts)
    print(f"kill -9 x3 stream: {len(transcripts)} messages, {fates}")  # the figure for docs/reliability.md
    assert kills == 3 and fates["tempfailed"] > 0 and fates["delivered"] >= 100
    for sent in transcripts[-10:]:
        assert sent.outcome() == 250  # the restarted daemon serves again
    files = delivered_files(stack)
    assert len(files) == fates["delivered"]
    for path in files:  # each one: nothing got through unchecked while the milter was down or starting
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
        assert [results_by_key(ar)["smtp.mailfrom"][0] for ar in our_ar(message)] == ["pass"], path


def test_kill_9_mid_transaction_refuses_that_message_temporarily(own_stack):
    stack = own_stack
    smtp = RawSMTP(stack.port)
    try:
        assert smtp.reply().code == 220
        assert smtp.command(f"XCLIENT ADDR={GOOD_IP} HELO=mail.good.test".encode()).code == 220
        assert smtp.command(b"EHLO mail.good.test").code == 250
        assert smtp.command(b"MAIL FROM:<alice@good.test>").code == 250
        assert smtp.command(b"RCPT TO:<bob@example.org>").code == 250
        os.kill(stack.daemon.pid, signal.SIGKILL)
        stack.daemon.proc.wait(10)
        data = smtp.command(b"DATA")
        if data.code == 354:
            data = smtp.command(b"Subject: killed-mid-transaction\r\n\r\nHello.\r\n.")
        assert 400 <= data.code < 500, data
    finally:
        smtp.close()
    stack.daemon.start()
    after = transaction(stack.port, b"alice@good.test", [b"bob@example.org"], ip=GOOD_IP)
    assert after.outcome() == 250
    stack.postfix.delivered(after.marker)
    assert "killed-mid-transaction" not in "".join(p.read_text() for p in (stack.postfix.maildir / "new").iterdir())


class FaultyDaemon(ServiceDaemon):
    module = "tests.reliability.faulty_daemon"
    popen_kwargs = {"cwd": str(REPO)}


@pytest.fixture
def faulty_stack(hostile_dns):
    stack = start_stack(hostile_dns, daemon_cls=FaultyDaemon)
    yield stack
    stack.stop()


def test_exception_inside_a_check_gives_temperror_and_the_configured_action(faulty_stack):
    stack = faulty_stack
    rcpts = [b"carol@strict.test", b"dave@example.com", b"bob@example.org"]
    iprev_bug = transaction(stack.port, b"alice@nowhere.test", rcpts, ip=BOOM_IP)  # SPF none
    # example.com: iprev_temperror = defer; strict.test and example.org accept an iprev temperror
    assert [iprev_bug.replies[f"rcpt:{n}"].code for n in range(3)] == [250, 451, 250]
    assert iprev_bug.replies["rcpt:1"].text.startswith(b"4.7.25")
    message = stack.postfix.delivered(iprev_bug.marker)
    (ar,) = our_ar(message)
    assert [(r.method, r.result) for r in ar.results][0] == ("iprev", "temperror")
    assert "iprev=temperror (internal error: planted bug in iprev)" in message["Authentication-Results"]

    spf_bug = transaction(stack.port, b"alice@boom.test", rcpts, ip=GOOD_IP)
    codes = [(spf_bug.replies[f"rcpt:{n}"].code, spf_bug.replies[f"rcpt:{n}"].text.split()[0]) for n in range(3)]
    assert codes == [(451, b"4.7.24"), (550, b"5.7.24"), (250, b"2.1.5")]
    (ar,) = our_ar(stack.postfix.delivered(spf_bug.marker))
    # The client's and the envelope's checks (the message's, dkim= arc= dmarc=, follow them).
    assert [(r.method, r.result) for r in ar.results][:3] == [("iprev", "pass"), ("spf", "pass"), ("spf", "temperror")]
    log = stack.daemon.log()
    assert "check-error" in log and "planted bug in iprev" in log and "planted bug in spf" in log
    assert stack.daemon.proc.poll() is None


def test_temperror_from_a_failing_check_still_names_its_identity(faulty_stack):
    """Until 240ca82 the temperror made of a check's exception had no smtp.mailfrom and no Received-SPF."""
    sent = transaction(faulty_stack.port, b"alice@boom.test", [b"bob@example.org"], ip=GOOD_IP)
    message = faulty_stack.postfix.delivered(sent.marker)
    (ar,) = our_ar(message)
    assert results_by_key(ar)["smtp.mailfrom"] == ("temperror", "boom.test")
    assert message["Received-SPF"] is not None and message["Received-SPF"].startswith("temperror")


def test_exception_outside_the_checks_tempfails_that_message_and_the_daemon_keeps_serving(faulty_stack):
    stack = faulty_stack
    crashed = transaction(stack.port, b"crash@good.test", [b"bob@example.org"], ip=GOOD_IP)
    assert crashed.replies["data"].code == 451, crashed.replies  # the exception policy: a temporary failure
    fine = [transaction(stack.port, b"alice@good.test", [b"bob@example.org"], ip=GOOD_IP) for _ in range(3)]
    assert stack.daemon.proc.poll() is None
    for sent in fine:
        assert sent.outcome() == 250
        assert stack.postfix.delivered(sent.marker)["Authentication-Results"].startswith(AUTHSERV_ID)
    assert crashed.marker not in deliveries(stack)


def test_exception_at_a_stage_without_reply_tempfails_the_message_at_its_end(faulty_stack):
    """On the unix socket Postfix waits for no reply to a header: the failure is held until end of message."""
    stack = faulty_stack
    crashed = transaction(stack.port, b"alice@good.test", [b"bob@example.org"], ip=GOOD_IP,
                          headers=b"Authentication-Results: elsewhere.test; planted-bug\r\n")  # fmt: skip
    assert crashed.replies["data"].code == 451, crashed.replies
    assert crashed.replies["data"].text.startswith(b"4.3.0")
    assert "planted bug in the header callback" in stack.daemon.log()
    fine = transaction(stack.port, b"alice@good.test", [b"bob@example.org"], ip=GOOD_IP)
    assert fine.outcome() == 250
    assert stack.postfix.delivered(fine.marker)["Authentication-Results"].startswith(AUTHSERV_ID)
    assert crashed.marker not in deliveries(stack)


def test_bounces_after_ordinary_mail_are_labelled_and_the_daemon_lives_on(own_stack):
    """Regression: onnxruntime segfaulted, taking the daemon down, on the first bounce after ordinary mail
    (a libmilter thread whose Python thread state pymilter had deleted with an earlier session); the
    classifier now runs on a thread Python owns. A fresh daemon, as the crash needed a first bounce."""
    for _ in range(3):
        for _ in range(4):  # sessions on every worker thread, so that each has left a deleted thread state
            sent = transaction(own_stack.port, b"alice@good.test", [b"bob@example.org"], ip=GOOD_IP)
            assert sent.outcome() == 250
        marker = f"mw-{uuid.uuid4().hex}"
        with smtplib.SMTP("127.0.0.1", own_stack.port, timeout=30) as smtp:
            smtp.sendmail("", ["bob@example.org"], f"X-Test-Marker: {marker}\r\n".encode() + DSN.read_bytes())
        assert "category=quota-issues" in own_stack.postfix.delivered(marker)["X-Mailwarden-Bounce"]
    assert own_stack.daemon.proc.poll() is None, own_stack.daemon.log()
