"""The engine: runs each stage's checks on a session, applies policy per recipient, edits the message.

The milter callbacks and the `check` command both drive this one object, so what an administrator sees
from `mailwarden check` is exactly what the milter does. It runs the registered checks (checks/__init__.py)
and knows none of them by name: the client's at connect, the envelope's at MAIL FROM, the message's at end
of data (over the header fields and the body hashes they asked for while the message streamed past). At end
of message it says what to do and what to change, and the callbacks do it: reject or quarantine when a
recipient domain's policy asks so for a message check's result, else our Received-SPF and
Authentication-Results on top (and above them an ARC set sealing them, when sealing is on), incoming A-R
fields that claim our authserv-id removed (RFC 8601 §5), and bounce labels. One engine serves one loaded
configuration (its checks configured for it); a reload builds a new engine while sessions that started under
the old one finish with it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from email.utils import parseaddr
from typing import NamedTuple

from . import headers, metrics
from .checks import registered
from .checks.base import Check, CheckResult, DnsContext, Field, Stage, Subject
from .checks.message import Message, MessageCheck, MessageReader, field_of, read_message
from .classifier import BounceClassifier, EnvelopeFacts, header_value
from .classifier.addresses import bare_address, is_bounce_sender, is_list_robot
from .config import Config
from .dns import Budget, Resolver
from .events import reporting_mta_of
from .headers import authserv_id_of
from .log import event
from .policy import ACCEPT, Decision, decide, stronger
from .recorder import Recorder
from .review import Review
from .sanitise import LIMIT_ADDRESS, LIMIT_NAME, clean
from .session import Envelope, Session
from .upstreams import nameservers
from .verdicts import Verdicts

AR_HEADER = "Authentication-Results"
_AR_LOWER = AR_HEADER.lower()
BOUNCE_HEADER = "X-Mailwarden-Bounce"
MAX_BOUNCE_BYTES = 2 * 1024 * 1024  # the delivery-status part comes first; the attached original may be cut

# pymilter runs each session on a Python thread state of its own, created on one libmilter worker thread and
# deleted on whichever thread closes the session; the creating thread's PyGILState slot is then left pointing
# at the deleted state. Extensions that take the GIL through PyGILState (onnxruntime via pybind11) crash on
# such a thread (seen: a segfault on the first bounce after an ordinary message). The bounce classifier
# therefore runs on a thread that Python itself owns.
_classifier_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bounce-classifier")


class Edits(NamedTuple):
    """What end of message changes in the message, in the order the MTA is to be told."""

    removed: list[tuple[str, int]]  # (name, 1-based index) of fields to delete, last first: earlier ones keep theirs
    prepended: list[Field]  # fields to insert at the top, top first
    appended: list[Field]  # fields to add at the end
    decision: Decision = ACCEPT  # reject / defer: no edits, the message is refused; quarantine: held, edited


@functools.lru_cache(maxsize=4096)
def _names_bounce_sender(sender: str) -> bool:
    """Engine.may_be_bounce with a classifier; kept, as the same senders come again (is_bounce_sender runs
    regular expressions over the address)."""
    return bare_address(sender) == "" or is_bounce_sender(sender)


@functools.lru_cache(maxsize=4096)
def _from_may_be_bounce(value: str) -> bool:
    """Whether a From field's value names a sender of bounces (Engine.may_be_bounce with a classifier) or a
    mailing list's own robot, which writes a list's refusals of posts (the envelope sender does not count for
    that: every list post carries the list's bounce address there); kept, as the same From values come again
    (parsing one with email.utils costs ~10 µs)."""
    sender = parseaddr(value)[1] or value
    return _names_bounce_sender(sender) or is_list_robot(sender)


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().rstrip(".").lower()


class Engine:
    def __init__(
        self,
        config: Config,
        resolver: Resolver,
        checks: tuple[Check, ...] | None = None,  # None: the registered checks
        classifier: BounceClassifier | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.config = config
        self.authserv_key = config.authserv_id.rstrip(".").lower()  # as authserv_id_of() reads incoming ids
        self.resolver = resolver
        self.checks = tuple(check.configure(config) for check in (registered() if checks is None else checks))
        self.message_checks = tuple(c for c in self.checks if isinstance(c, MessageCheck))
        self.classifier = classifier
        self.recorder = recorder or Recorder(Review(config.bounce.review_below), store=None)
        self.verdicts = Verdicts(config.dns.cache_size)

    @classmethod
    def from_config(cls, config: Config, bounces: bool = True) -> Engine:
        """The engine for a configuration; raises ModelError/OSError for a bounce model that cannot load."""
        dns = config.dns
        upstreams = nameservers(dns.nameservers, dns.tls_ca_file)
        resolver = Resolver(upstreams, timeout=dns.timeout, cache_size=dns.cache_size)
        classifier = recorder = None
        if bounces and config.bounce.enabled:
            classifier = BounceClassifier.load(config.bounce.model or None)
            recorder = Recorder.from_config(config)  # after the model: a refused reload opens no store
        return cls(config, resolver, classifier=classifier, recorder=recorder)

    def _run(self, stage: Stage, subject: Subject) -> dict[str, CheckResult]:
        budget = Budget(self.config.dns.budget)
        results = {}
        for check in self.checks:
            if check.stage != stage:
                continue
            result = self.verdicts.get(check.name, subject) or self._run_check(check, subject, budget)
            metrics.child(metrics.CHECK_RESULTS, check.name, result.result).inc()
            results[check.name] = result
        return results

    def _run_check(self, check: Check, subject: Subject, budget: Budget) -> CheckResult:
        dns = DnsContext(self.resolver, budget)
        try:
            result = check.run(subject, dns)
        except Exception as exc:  # a bug in a check must cost a verdict, never the message
            event("check-error", logging.ERROR, exc_info=True, check=check.name, client=subject.ip)
            return check.failed(subject, f"internal error: {exc}")
        if check.stage != "message":  # a message is never seen twice
            self.verdicts.put(check.name, subject, result, dns.expires)
        return result

    def connect(self, session: Session) -> None:
        if self.config.is_trusted(session.ip):
            session.skip = f"client {session.ip} is in trusted_networks"
            metrics.child(metrics.CHECKS_SKIPPED, "trusted_network").inc()
            return
        session.results = self._run("connect", Subject(ip=session.ip))

    def mail(self, session: Session, envelope: Envelope) -> None:
        envelope.skip = session.skip or self._skip_reason(envelope)
        if not envelope.skip:
            envelope.results = self._run("mail", envelope.subject(session))
            if self.message_checks:
                envelope.message = MessageReader(self.message_checks)
        if self.may_be_bounce(envelope.sender):
            envelope.body = bytearray()

    def _skip_reason(self, envelope: Envelope) -> str:
        if envelope.auth and self.config.skip_authenticated:
            metrics.child(metrics.CHECKS_SKIPPED, "authenticated").inc()
            return f"sender authenticated as {envelope.auth}"
        domain = domain_of(envelope.sender) if "@" in envelope.sender else ""
        if domain in self.config.skip_sender_domains:
            metrics.child(metrics.CHECKS_SKIPPED, "sender_domain").inc()
            return f"sender domain {domain} is in skip_sender_domains"
        return ""

    def results(self, session: Session, envelope: Envelope) -> Iterator[tuple[Check, CheckResult]]:
        """Every result of this transaction, in check order."""
        for check in self.checks:
            result = session.results.get(check.name) or envelope.results.get(check.name)
            if result is not None and not envelope.skip:
                yield check, result

    def rcpt(self, session: Session, envelope: Envelope, recipient: str) -> Decision:
        if envelope.skip:
            decision = ACCEPT
        else:
            policy = self.config.policy_for(domain_of(recipient))
            decision = decide(self.results(session, envelope), policy)
        metrics.child(metrics.ACTIONS, decision.action, decision.key or "none").inc()
        if decision.accepted:
            envelope.recipients.append(recipient)
        else:
            self.log(session, envelope, decision, recipient)
        return decision

    def header(self, envelope: Envelope, name: str, value: str) -> None:
        """Keep the field for the message checks, verbatim (`value` is all that follows the colon); note an
        incoming A-R field that claims our authserv-id, to be removed at end of message; keep the fields of a
        message that may be a bounce (its From may say so when MAIL FROM did not)."""
        if envelope.message is not None:
            envelope.message.header(name, value)
        value = value[1:] if value.startswith(" ") else value
        lower = name.lower()
        if lower == _AR_LOWER:
            envelope.ar_seen += 1
            if authserv_id_of(value) == self.authserv_key:
                envelope.forged.append(envelope.ar_seen)
        if self.classifier is not None:
            envelope.headers.append((name, value))
            if lower == "from" and _from_may_be_bounce(value):
                envelope.body = bytearray()

    def body(self, envelope: Envelope, chunk: bytes) -> bool:
        """Hash a body chunk for the message checks and collect it if the message may be a bounce; False once
        no more of the body is wanted."""
        wanted = envelope.message is not None and envelope.message.body(chunk)
        collected = envelope.body
        if collected is None or len(collected) >= MAX_BOUNCE_BYTES:
            return wanted
        collected += chunk[: MAX_BOUNCE_BYTES - len(collected)]
        return True

    def examine(self, session: Session, envelope: Envelope) -> tuple[Decision, Message | None]:
        """Run the message checks at end of data; the strictest action the accepted recipients' domains ask
        for their results (the domain that decided is in the decision), and the message they examined."""
        reader = envelope.message
        if reader is None:
            return ACCEPT, None
        budget = Budget(self.config.dns.budget)
        message = reader.message(envelope.subject(session), {**session.results, **envelope.results})
        results_so_far = message.results  # this message's own dict: each check sees the results before it
        for check in self.message_checks:
            result = self._run_check(check, message, budget)
            metrics.child(metrics.CHECK_RESULTS, check.name, result.result).inc()
            envelope.results[check.name] = result
            results_so_far[check.name] = result  # type: ignore[index]
        results = [(check, envelope.results[check.name]) for check in self.message_checks]
        decision = ACCEPT
        for recipient in envelope.recipients:
            domain = domain_of(recipient)
            asked = decide(results, self.config.policy_for(domain))
            if stronger(asked.action, decision.action):
                decision = replace(asked, domain=domain)
        if not decision.accepted:
            metrics.child(metrics.ACTIONS, decision.action, decision.key).inc()
        return decision, message

    def end(self, session: Session, envelope: Envelope) -> Edits:
        """End of an accepted message: whether it is refused or held and, if not refused, what to change in
        it; its decision logged."""
        decision, message = self.examine(session, envelope)
        if decision.action in ("reject", "defer"):
            self.log(session, envelope, decision)
            return Edits([], [], [], decision)
        removed = []
        if envelope.forged:
            removed = [(AR_HEADER, index) for index in reversed(envelope.forged)]
            metrics.FORGED_AR_REMOVED.inc(len(removed))
        # Prepended at the top, so above the MTA's own Received:.
        prepended = self.result_headers(session, envelope)
        if message is not None:
            prepended = self.seals(envelope, message, prepended) + prepended
        appended = []
        if envelope.body is not None:  # collected: the message may be a bounce
            appended = _classifier_thread.submit(self.bounce_headers, session, envelope).result()
        self.log(session, envelope, decision, forged_ar_removed=len(removed))
        return Edits(removed, prepended, appended, decision)

    def result_headers(self, session: Session, envelope: Envelope) -> list[Field]:
        """The fields to prepend, top first: each check's own (Received-SPF), then Authentication-Results."""
        results = list(self.results(session, envelope))
        out = [field for check, result in results
               for field in check.fields(result, session.ip, session.helo, self.config.authserv_id)]  # fmt: skip
        ar = headers.authentication_results(self.config.authserv_id, [r for _, r in results], envelope.skip)
        out.append((AR_HEADER, ar))
        return out

    def seals(self, envelope: Envelope, message: Message, prepended: list[Field]) -> list[Field]:
        """What the message checks add over our fields once our Authentication-Results (the last of
        `prepended`) is written, top first: ARC's seal, whose ARC-Authentication-Results carries our verdicts."""
        if not any(check.sealing() for check in self.message_checks if check.name in envelope.results):
            return []
        leaving = replace(message, fields=(*(field_of(name, value) for name, value in prepended), *message.fields))
        authentication_results = prepended[-1][1]
        return [field for check in self.message_checks if check.name in envelope.results
                for field in check.seal(envelope.results[check.name], leaving, authentication_results)]  # fmt: skip

    def may_be_bounce(self, sender: str) -> bool:
        """Whether a message with this envelope sender or From field may be a bounce, so that its body is
        collected for the classifier: the null sender (auto-replies use it too), or a mailbox that sends
        delivery reports (MAILER-DAEMON, postmaster)."""
        return self.classifier is not None and _names_bounce_sender(sender)

    def bounce_headers(self, session: Session, envelope: Envelope) -> list[Field]:
        """One X-Mailwarden-Bounce field per recipient of a bounce, each decision logged with its evidence.

        The classifier gets the envelope: the null sender that marks a bounce is in MAIL FROM, not in the
        header fields the MTA passes (Return-Path is added at final delivery)."""
        if self.classifier is None or envelope.body is None:
            return []
        facts = EnvelopeFacts(sender=envelope.sender, client_ip=session.ip, client_name=session.hostname,
                              queue_id=envelope.queue_id)
        raw = envelope.raw_message()
        report = self.classifier.analyse(raw, envelope=facts)
        if not report.bounce:
            return []
        model = self.classifier.model_id
        reporting_mta = reporting_mta_of(raw, session.hostname, session.ip)
        # Unplaced recipients become `other`; events, review items and suppressions are committed here.
        recipients = self.recorder.apply(report.recipients, envelope.queue_id, model, reporting_mta)
        for verdict in recipients:
            metrics.child(metrics.BOUNCES, verdict.category, verdict.type).inc()
            event(
                "bounce", queue_id=envelope.queue_id or "-", kind=report.kind,
                recipient=clean(verdict.recipient, LIMIT_ADDRESS), category=verdict.category,
                type=verdict.type, status=verdict.status or "none", confidence=f"{verdict.confidence:.2f}",
                model=model, evidence=clean(verdict.evidence),
            )  # fmt: skip
        return [(BOUNCE_HEADER, header_value(v, model)) for v in recipients]

    def check(self, ip: str, helo: str, sender: str, message: bytes | None = None) -> tuple[Session, Envelope]:
        """A whole session without an MTA (what `mailwarden check` runs): connect, HELO, MAIL FROM and, given
        a message, its header fields and body as the MTA would pass them, and end of data's checks."""
        session = Session(ip=ip, helo=helo)
        self.connect(session)
        envelope = Envelope(sender=sender)
        self.mail(session, envelope)
        if message is not None and envelope.message is not None:
            envelope.message = read_message(message, self.message_checks)
            self.examine(session, envelope)
        return session, envelope

    def log(
        self, session: Session, envelope: Envelope, decision: Decision, recipient: str = "", **extra: object
    ) -> None:
        """One line per decision: who, what each check said, what we did and why."""
        fields: dict[str, object] = {
            "queue_id": envelope.queue_id or "-",
            "client": session.ip,
            "client_name": session.hostname,
            "helo": clean(session.helo, LIMIT_NAME),
            "sender": clean(envelope.sender, LIMIT_ADDRESS),
        }
        if recipient:
            fields["recipient"] = clean(recipient, LIMIT_ADDRESS)
        for check, result in self.results(session, envelope):
            fields[check.name] = result.result
        if envelope.skip:
            fields["skipped"] = envelope.skip
        fields["action"] = decision.action
        if decision.domain:
            fields["decided_by"] = decision.domain
        fields["why"] = (
            f"{decision.key}: {' '.join(filter(None, (decision.xcode, decision.text)))}"
            if decision.key
            else "policy accepts these results"
        )
        event("decision", **fields, **extra)
