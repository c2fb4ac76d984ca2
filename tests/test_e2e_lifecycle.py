"""Reload and stop under real traffic: SIGHUP swaps config (and bounce model) without losing or tempfailing a
message, a session open across it finishes under the configuration it started with, a broken file or bounce
model is refused while service goes on, SIGTERM lets an open session finish."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path

import onnx
import pytest

from mailwarden.classifier import default_model_path

from .conftest import AUTHSERV_ID, GOOD_IP, daemon_config
from .postfix import Daemon, Postfix, make_base_dir, wait_for
from .smtp import send

LENIENT_STRICT = '\n[domains."lenient.test".policy]\nspf_fail = "reject"\n'


@pytest.fixture
def stack(dns_server):
    base = make_base_dir()
    daemon = Daemon(daemon_config(base, dns_server), base)
    daemon.start()
    postfix = Postfix(base, milter=f"unix:{base}/milter.sock").start()
    yield daemon, postfix
    postfix.stop()
    daemon.stop()
    shutil.rmtree(base, ignore_errors=True)


def reload(daemon: Daemon, config: str, outcome: str = "reloaded") -> str:
    """Write `config`, send SIGHUP, wait for the daemon's next `outcome` line ("reloaded", "reload-refused")
    and return it."""

    def lines() -> list[str]:
        return [line for line in daemon.log().splitlines() if line.split()[1:2] == [outcome]]

    seen = len(lines())
    daemon.config.write_text(config)
    daemon.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: len(lines()) > seen, 30, f"{outcome} after SIGHUP")
    return lines()[-1]


def test_sighup_reload_under_traffic_loses_nothing_and_applies_the_new_policy(stack):
    daemon, postfix = stack
    replies: list[tuple[int, str]] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            sent = send(postfix.smtp_port, "alice@good.test", ["bob@example.org"], ip=GOOD_IP)
            replies.append((sent.data_reply[0] if sent.data_reply else sent.mail_reply[0], sent.marker))

    sender = threading.Thread(target=traffic)
    sender.start()
    try:
        wait_for(lambda: len(replies) >= 5, 30, "traffic before the reload")
        assert (
            send(postfix.smtp_port, "m@bad.test", ["x@lenient.test"], ip=GOOD_IP).rcpt_replies["x@lenient.test"][0]
            == 250
        )
        reload(daemon, daemon.config.read_text() + LENIENT_STRICT)
        after = send(postfix.smtp_port, "m@bad.test", ["x@lenient.test"], ip=GOOD_IP)
        assert after.rcpt_replies["x@lenient.test"][0] == 550

        reload(daemon, "this is not toml\n", "reload-refused")
        count = len(replies)
        wait_for(lambda: len(replies) >= count + 5, 30, "traffic after the refused reload")
        still = send(postfix.smtp_port, "m@bad.test", ["x@lenient.test"], ip=GOOD_IP)
        assert still.rcpt_replies["x@lenient.test"][0] == 550  # the last good config keeps serving
    finally:
        stop.set()
        sender.join(60)
    assert daemon.proc.poll() is None
    assert {code for code, _ in replies} == {250}
    for _, marker in replies:
        assert postfix.delivered(marker)["Authentication-Results"].startswith(AUTHSERV_ID)


def test_a_session_open_across_a_reload_finishes_under_the_configuration_it_started_with(stack):
    daemon, postfix = stack
    with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=30) as smtp:
        smtp.docmd("XCLIENT", f"ADDR={GOOD_IP} HELO=mail.good.test")
        smtp.ehlo("mail.good.test")
        assert smtp.docmd("MAIL", "FROM:<m@bad.test>")[0] == 250  # SPF fail
        assert smtp.docmd("RCPT", "TO:<bob@example.org>")[0] == 250  # answered: the milter holds the session now
        reload(daemon, daemon.config.read_text() + LENIENT_STRICT)  # lenient.test now rejects an SPF fail
        new = send(postfix.smtp_port, "m@bad.test", ["x@lenient.test"], ip=GOOD_IP)
        assert new.rcpt_replies["x@lenient.test"][0] == 550
        assert smtp.docmd("RCPT", "TO:<x@lenient.test>")[0] == 250
        assert smtp.data(b"Subject: open-across-reload\r\n\r\nHello.\r\n")[0] == 250
        # the whole connection keeps its configuration, the next message on it too
        assert smtp.docmd("MAIL", "FROM:<m@bad.test>")[0] == 250
        assert smtp.docmd("RCPT", "TO:<x@lenient.test>")[0] == 250
        assert smtp.data(b"Subject: second-on-the-connection\r\n\r\nHello.\r\n")[0] == 250
    for marker in ("open-across-reload", "second-on-the-connection"):
        message = postfix.delivered(marker)
        assert message["Authentication-Results"].startswith(f"{AUTHSERV_ID};")
        assert message["Received-SPF"].startswith("fail "), message["Received-SPF"]  # accepted and tagged


def test_sigterm_lets_an_open_session_finish_then_exits(stack):
    daemon, postfix = stack
    with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=30) as smtp:
        smtp.docmd("XCLIENT", f"ADDR={GOOD_IP} HELO=mail.good.test")
        smtp.ehlo("mail.good.test")
        assert smtp.docmd("MAIL", "FROM:<alice@good.test>")[0] == 250
        assert smtp.docmd("RCPT", "TO:<bob@example.org>")[0] == 250
        daemon.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        code, _ = smtp.data(b"Subject: finishing-after-sigterm\r\n\r\nHello.\r\n")
    assert code == 250
    assert postfix.delivered("finishing-after-sigterm")["Authentication-Results"].startswith(AUTHSERV_ID)
    assert daemon.proc.wait(40) == 0
    assert "stopping signal=SIGTERM" in daemon.log()


def dsn(marker: str, recipient: str, status: str, diagnostic: str) -> bytes:
    """A minimal RFC 3464 delivery-status notification."""
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@relay.example>\r\nTo: <alice@example.org>\r\n"
        f"Subject: Undelivered Mail Returned to Sender {marker}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n\r\n--b1--\r\n"
    ).encode()


def label(postfix: Postfix, marker: str) -> str:
    """The X-Mailwarden-Bounce field of a greylisting DSN sent through Postfix."""
    with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=30) as smtp:
        smtp.sendmail("", ["alice@example.org"],
                      dsn(marker, "carol@far.example", "4.7.1", "450 4.7.1 Greylisted, please try again in 5 minutes"))
    return postfix.delivered(marker)["X-Mailwarden-Bounce"]


def with_model(config: str, model: Path) -> str:
    return config.replace("[dns]", f'[bounce]\nmodel = "{model}"\n\n[dns]')


def test_custom_category_model_is_picked_up_on_sighup(stack, tmp_path):
    daemon, postfix = stack
    examples = tmp_path / "examples.jsonl"
    texts = ["greylisted, try again later", "Recipient address rejected: Greylisted for 5 minutes",
             "greylisting in action, please come back later", "try again later (greylisted)",
             "temporarily deferred due to greylisting", "Greylisted: try again in 300 seconds"]  # fmt: skip
    lines = [{"text": t, "category": "greylisted", "type": "transient"} for t in texts]
    lines += [{"text": t, "category": "bad-mailbox", "type": "hard"} for t in
              ["user unknown", "No such user here", "mailbox does not exist", "unknown recipient"]]  # fmt: skip
    examples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    model = tmp_path / "custom.onnx"
    trained = subprocess.run([sys.executable, "-m", "mailwarden.cli", "train", "--examples", str(examples),
                              "--out", str(model)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    model_id = hashlib.sha256(model.read_bytes()).hexdigest()[:12]

    assert f"model={model_id}" not in label(postfix, "before-custom-model")
    assert f"bounce_model={model_id}" in reload(daemon, with_model(daemon.config.read_text(), model))
    after = label(postfix, "after-custom-model")
    assert after.startswith("carol@far.example; category=greylisted; type=transient; status=4.7.1;")
    assert after.endswith(f"model={model_id}")


def write_foreign_onnx_model(path: Path) -> None:
    """A valid ONNX file that is not a bounce model: one string output, where ours has labels and probabilities."""
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["text"], ["same"])], "identity",
        [onnx.helper.make_tensor_value_info("text", onnx.TensorProto.STRING, [None, 1])],
        [onnx.helper.make_tensor_value_info("same", onnx.TensorProto.STRING, [None, 1])])  # fmt: skip
    model = onnx.helper.make_model(graph)
    onnx.helper.set_model_props(model, {"mailwarden.labels": '["bad-mailbox"]'})
    onnx.save(model, path)


# how each is broken -> (how to make it, what the refusal says)
BROKEN_MODELS = {
    "not ONNX": (lambda path: path.write_bytes(b"this is not a model\n"), "cannot load ONNX model"),
    "truncated": (lambda path: path.write_bytes(default_model_path().read_bytes()[:4096]), "cannot load ONNX model"),
    "empty": (lambda path: path.write_bytes(b""), "cannot load ONNX model"),
    "missing": (lambda path: None, "No such file or directory"),
    # the classifier does not check a model's outputs before using them: onnxruntime's IndexError is the reason
    # given (until the reload caught every exception, it stopped the daemon)
    "ONNX, not a bounce model": (write_foreign_onnx_model, "error="),
}


@pytest.mark.parametrize("broken", BROKEN_MODELS)
def test_reload_with_a_broken_bounce_model_is_refused_and_the_running_model_keeps_labelling(stack, tmp_path, broken):
    daemon, postfix = stack
    before = label(postfix, "before-broken-model")
    model = tmp_path / "broken.onnx"
    write, why = BROKEN_MODELS[broken]
    write(model)
    refused = reload(daemon, with_model(daemon.config.read_text(), model), "reload-refused")
    assert why in refused and refused.endswith(f"still_serving={daemon.config}"), refused
    assert daemon.proc.poll() is None
    assert label(postfix, "after-broken-model") == before
