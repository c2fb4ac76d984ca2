"""SPF (RFC 7208) of the HELO and MAIL FROM identities, evaluated by pyspf over our shared resolver; policy
keys helo_spf_* and spf_*, replies x.7.23 / x.7.24 (RFC 7372); the MAIL FROM verdict also writes Received-SPF.

pyspf does its own DNS through the module-level function `spf.DNSLookup`; we point that at the resolver
of the message being checked (held in a context variable, so concurrent milter threads never mix), which
gives SPF the same cache, nameservers, timeout and per-message budget as every other check.
"""

from __future__ import annotations

import functools
import re
from contextvars import ContextVar
from dataclasses import dataclass

import authres
import spf

from ..dns import DNSTempError
from ..headers import FOLD, RENDERED, comment, kv_value, pvalue
from ..sanitise import LIMIT_ADDRESS, LIMIT_NAME, clean
from .base import Check, CheckResult, DnsContext, Field, Subject

_current_dns: ContextVar[DnsContext] = ContextVar("mailwarden_spf_dns")

# RFC 7208 §4.3: a malformed or single-label domain gives "none" without any DNS query.
_LABEL = re.compile(r"^[A-Za-z0-9_-]{1,63}$")


def _checkable(domain: str) -> bool:
    labels = domain[:-1].split(".") if domain.endswith(".") else domain.split(".")
    return len(labels) >= 2 and all(_LABEL.match(label) for label in labels)


def _lookup(name: str, qtype: str, strict: object = True, timeout: object = None) -> list:
    """pyspf's DNSLookup contract: [((name, qtype), value)], [] for no data, spf.TempError for errors."""
    try:
        answer = _current_dns.get().lookup(name, qtype)
    except DNSTempError as exc:
        raise spf.TempError(f"DNS {exc}") from exc
    return [((name, qtype), value) for value in answer.values(qtype)]


spf.DNSLookup = _lookup


class _Query(spf.query):
    """pyspf's query with RFC 7208 §5.5's rules for DNS errors, where pyspf 2.0.14 answers temperror: an error
    on the PTR lookup means no validated name (so `ptr` does not match and %{p} is "unknown", §7.3), one on
    the address lookup of a PTR name skips that name. (A failed exp= lookup pyspf already ignores, §6.2.)"""

    def validated_ptrs(self) -> list[str]:
        try:
            names = self.dns_ptr(self.i)
        except spf.TempError:
            return []
        validated = []
        for name in names[: spf.MAX_PTR]:
            try:
                addresses = self.dns_a(name, self.A)
            except spf.TempError:
                continue
            if self.cidrmatch(addresses, self.cidrmax):
                validated.append(name)
        return validated


@dataclass(frozen=True)
class SpfResult(CheckResult):
    identity: str = "mailfrom"  # "helo" | "mailfrom"
    sender: str = ""  # the identity checked: the MAIL FROM address, or postmaster@<helo>
    domain: str = ""  # its domain
    mechanism: str = ""  # the mechanism that matched, "default" when none did
    problem: str = ""  # pyspf's description of an error, "" when none
    explanation: str = ""  # the domain's exp= text on fail

    def resinfo(self) -> str:
        """`spf=pass (reason) smtp.helo=DOMAIN` or `... smtp.mailfrom=DOMAIN`."""
        domain = pvalue(clean(self.domain, LIMIT_NAME))
        reason = comment(self.reason)
        if self.identity == "helo":
            return str(authres.SPFAuthenticationResult(result=self.result, result_comment=reason, smtp_helo=domain))
        return str(authres.SPFAuthenticationResult(result=self.result, result_comment=reason, smtp_mailfrom=domain))


@functools.lru_cache(maxsize=RENDERED)
def received_spf(result: SpfResult, ip: str, helo: str, receiver: str) -> str:
    """The value of the Received-SPF trace field (RFC 7208 §9.1) for one SPF verdict."""
    pairs = [
        ("client-ip", clean(ip, 64)),
        ("envelope-from", clean(result.sender, LIMIT_ADDRESS)),
        ("helo", clean(helo, LIMIT_NAME)),
        ("receiver", clean(receiver, LIMIT_NAME)),
        ("identity", result.identity),
    ]
    if result.mechanism:
        pairs.append(("mechanism", clean(result.mechanism)))
    if result.problem:
        pairs.append(("problem", clean(result.problem)))
    head = f"{result.result} ({comment(receiver)}: {comment(result.reason)})"
    return head + FOLD + (";" + FOLD).join(f"{k}={kv_value(v)}" for k, v in pairs) + ";"


def identity_of(identity: str, subject: Subject) -> tuple[str, str]:
    """(sender, domain) checked for an identity: MAIL FROM, or postmaster@<helo> for HELO and null senders."""
    helo = subject.helo
    sender = (subject.sender if identity == "mailfrom" else "") or f"postmaster@{helo}"
    return sender, spf.split_email(sender, helo)[1]


def evaluate(identity: str, subject: Subject, dns: DnsContext, receiver: str = "") -> SpfResult:
    """check_host() for one identity of `subject`; HELO identity if identity == "helo"."""
    helo = subject.helo
    sender, domain = identity_of(identity, subject)
    if not _checkable(domain):
        reason = f"{identity} domain is not a multi-label domain name"
        return SpfResult("spf", "none", reason, identity, sender, domain, problem=f"malformed {identity} domain")
    token = _current_dns.set(dns)
    try:
        query = _Query(
            i=subject.ip,
            s="" if identity == "helo" else sender,
            h=helo,
            receiver=receiver or "unknown",
            timeout=max(dns.budget.remaining(), 0.001),
        )
        word, _code, text = query.check()
    except (ValueError, UnicodeError) as exc:  # pyspf's address parsing of hostile input
        return SpfResult("spf", "permerror", str(exc), identity, sender, domain, "", str(exc))
    finally:
        _current_dns.reset(token)
    problem = getattr(query, "prob", "") or ""
    mechanism = query.mechanism or ("default" if word in ("pass", "fail", "softfail", "neutral") else "")
    explanation = text if word == "fail" else ""
    reason = _reason(word, sender, subject.ip, problem)
    return SpfResult("spf", word, reason, identity, sender, domain, mechanism, problem, explanation)


def _reason(word: str, sender: str, ip: str, problem: str) -> str:
    """The RFC 7208 §9.1 style comment."""
    return {
        "pass": f"domain of {sender} designates {ip} as permitted sender",
        "fail": f"domain of {sender} does not designate {ip} as permitted sender",
        "softfail": f"domain of transitioning {sender} does not designate {ip} as permitted sender",
        "neutral": f"{ip} is neither permitted nor denied by domain of {sender}",
        "none": f"domain of {sender} does not designate permitted sender hosts",
        "temperror": f"error in processing during lookup of {sender}: {problem}",
        "permerror": f"permanent error in processing domain of {sender}: {problem}",
    }.get(word, word)


_FAILED = "SPF validation failed"


class SpfCheck(Check[SpfResult]):
    """SPF of one identity: "helo" (policy keys helo_spf_*) or "mailfrom" (policy keys spf_*)."""

    stage = "mail"
    replies = {
        "fail": ("7.23", _FAILED),
        "softfail": ("7.23", _FAILED),
        "neutral": ("7.23", _FAILED),
        "none": ("7.23", _FAILED),
        "temperror": ("7.24", "SPF validation error"),
        "permerror": ("7.24", _FAILED),
    }

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.name = f"spf-{identity}"
        self.policy = "helo_spf" if identity == "helo" else "spf"
        self.report_key = ("spf", identity)

    def run(self, subject: Subject, dns: DnsContext) -> SpfResult:
        return evaluate(self.identity, subject, dns)

    def failed(self, subject: Subject, reason: str) -> SpfResult:
        sender, domain = identity_of(self.identity, subject)
        return SpfResult("spf", "temperror", reason, self.identity, sender, domain, problem=reason)

    def fields(self, result: SpfResult, ip: str, helo: str, receiver: str) -> tuple[Field, ...]:
        """Received-SPF (RFC 7208 §9.1), for the MAIL FROM verdict only: one per message."""
        if self.identity != "mailfrom":
            return ()
        return (("Received-SPF", received_spf(result, ip, helo, receiver)),)

    def report(self, result: SpfResult) -> dict:
        return {"result": result.result, "mechanism": result.mechanism, "problem": result.problem,
                "identity": result.sender, "explanation": result.explanation}  # fmt: skip

    def summary(self, result: SpfResult) -> str:
        extra = f" mechanism={result.mechanism}" if result.mechanism else ""
        extra += f" problem={result.problem!r}" if result.problem else ""
        return f"spf {self.identity} ({result.sender}): {result.result}{extra}"
