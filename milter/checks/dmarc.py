"""DMARC (RFC 7489): whether the domain of the author (RFC5322.From) is authenticated by an SPF or DKIM pass
in alignment with it, and what that domain asks receivers to do when it is not. Reported as `dmarc=pass
(p=reject sp=reject) header.from=example.com`.

Enforcement is per recipient domain, off by default: with `[policy] dmarc_enforce = true` a fail is treated
as the published policy says (after pct=): reject → 550 5.7.1 at end of data, quarantine → the MTA's hold
queue. With it off, the result is only written. A fail is not enforced either when a forwarder we trust
vouches for the message (RFC 8617 §7.2, `[arc] trusted_sealers`): its ARC chain passes, it sealed last and its
ARC-Authentication-Results says dmarc=pass (checks/arc.py); the fail is still reported, saying so.

- Author domain (§6.6.1): the one From field's one domain; no From, several From fields, addresses in
  several domains or no domain at all → permerror (no DNS asked).
- Organizational domain (§3.2): through the Public Suffix List that the `publicsuffixlist` package ships
  (its private section included; a name the list does not know is its own suffix). Nothing is fetched at
  run time: a newer list comes with a newer package.
- Policy discovery (§6.6.3): _dmarc.<author domain>, else _dmarc.<organizational domain>; TXT strings of
  one record joined; records that do not start with v=DMARC1 ignored; none or several → none; a DNS error
  → temperror. A record without a valid p= counts as p=none when it names a report address (rua=), else
  as no record. sp= applies only to a record found at the organizational domain for a subdomain author;
  bad pct=, adkim=, aspf= values take their defaults.
- Alignment (§3.1, Appendix C): SPF aligns when the MAIL FROM check passed and its domain (HELO's for the
  null sender) equals the author domain (aspf=s) or shares its organizational domain (relaxed); DKIM when a
  signature passed whose d= aligns the same way under adkim=.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import getaddresses

import authres
from authres.core import AuthenticationResultProperty
from publicsuffixlist import PublicSuffixList

from ..dns import DNSTempError
from ..headers import comment, pvalue
from ..sanitise import LIMIT_NAME, clean
from .arc import ArcResult
from .base import CheckResult, DnsContext, Reply, Subject
from .dkim import DkimResult
from .message import Message, MessageCheck
from .spf import SpfResult

POLICIES = ("none", "quarantine", "reject")
_DOWNGRADE = {"reject": "quarantine", "quarantine": "none", "none": "none"}  # §6.6.4, messages outside pct=
_VERSION = re.compile(r"^v\s*=\s*DMARC1\s*(;|$)")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)+[a-z0-9-]{1,63}$")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*:\S+", re.I)


@functools.cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list the package ships, parsed once (~30 ms)


@functools.lru_cache(maxsize=4096)
def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix plus one label; a domain that is itself a public suffix is its own."""
    return _suffixes().privatesuffix(domain) or domain


def aligned(domain: str, author: str, mode: str) -> bool:
    """Identifier alignment (§3.1): equal under "s", the same organizational domain under "r"."""
    domain = domain.lower().rstrip(".")
    if mode == "s":
        return domain == author
    return bool(domain) and organizational_domain(domain) == organizational_domain(author)


@dataclass(frozen=True)
class Record:
    """A DMARC record as it applies to this author domain."""

    p: str
    sp: str
    pct: int = 100
    adkim: str = "r"
    aspf: str = "r"


@dataclass(frozen=True)
class DmarcResult(CheckResult):
    domain: str = ""  # the author domain (RFC5322.From)
    org_domain: str = ""
    policy: str = ""  # the p= or sp= that applies to the author domain; "" without a record
    record: Record | None = None
    spf_aligned: bool = False  # SPF passed and aligns
    dkim_aligned: bool = False  # a DKIM signature passed and aligns
    disposition: str = "none"  # what a fail asks for after pct=: none | quarantine | reject
    vouched_by: str = ""  # a fail: the trusted ARC sealer that saw dmarc=pass, so the fail is not enforced

    def resinfo(self) -> str:
        """`dmarc=pass (p=reject sp=reject) header.from=example.com`."""
        record = self.record
        note = f"p={record.p} sp={record.sp}" + (f" pct={record.pct}" if record.pct < 100 else "") if record else ""
        if self.result not in ("pass", "fail"):
            note = self.reason
        if self.vouched_by:
            note += f"; not enforced: trusted ARC sealer {self.vouched_by} saw dmarc=pass"
        properties = [AuthenticationResultProperty("header", "from", pvalue(clean(self.domain, LIMIT_NAME)))]
        return str(authres.AuthenticationResult(method="dmarc", result=self.result, result_comment=comment(note),
                                                properties=properties if self.domain else []))  # fmt: skip


def author_domain(message: Message) -> tuple[str, str]:
    """(the author domain, "") or ("", why there is none to check)."""
    values = message.values(b"from")
    if len(values) != 1:
        return "", "no From field" if not values else f"{len(values)} From fields"
    return _author(values[0])


@functools.lru_cache(maxsize=4096)
def _author(value: bytes) -> tuple[str, str]:
    """author_domain() of one From field's value (kept: the same authors write again)."""
    addresses = [address for _, address in getaddresses([value.decode("utf-8", "replace")]) if address]
    if not addresses or any("@" not in a or not a.rpartition("@")[2].strip(" .") for a in addresses):
        return "", "From has an address without a domain" if addresses else "From has no address"
    domains = {a.rpartition("@")[2].strip().rstrip(".").lower() for a in addresses}
    if len(domains) > 1:
        return "", "From has addresses in several domains"
    try:
        domain = domains.pop().encode("idna").decode("ascii")
    except UnicodeError:
        domain = ""
    if not _DOMAIN.match(domain):
        return "", "From domain is not a domain name"
    return domain, ""


def _records(name: str, dns: DnsContext) -> list[str]:
    """The v=DMARC1 records at a name (DNSTempError on DNS trouble)."""
    texts = [b"".join(strings).decode("utf-8", "replace") for strings in dns.lookup(name, "TXT").values()]  # type: ignore[arg-type]
    return [text for text in texts if _VERSION.match(text)]


@functools.lru_cache(maxsize=4096)
def parse_record(text: str) -> Record | None:
    """A v=DMARC1 record's tags; None when it is to be ignored (p= or sp= not valid, and no report address).
    Kept per record text (a Record is immutable): a domain's record serves every message from it."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags.setdefault(key.strip().lower(), value.strip().lower())
    p = tags.get("p", "")
    sp = tags.get("sp", p)
    if p not in POLICIES or sp not in POLICIES:
        if not any(_URI.match(uri.strip()) for uri in tags.get("rua", "").split(",")):
            return None
        p = sp = "none"  # §6.6.3: as if the record said p=none
    pct = tags.get("pct", "100")
    return Record(p, sp, int(pct) if pct.isdigit() and int(pct) <= 100 else 100,
                  *(tags.get(key) if tags.get(key) in ("r", "s") else "r" for key in ("adkim", "aspf")))  # fmt: skip


class DmarcCheck(MessageCheck[DmarcResult]):
    name = "dmarc"
    policy = "dmarc"
    replies: Mapping[str, Reply] = {}  # no "<dmarc>_<result>" keys: the published policy decides
    options = {"dmarc_enforce": False}
    report_key = ("dmarc",)

    def run(self, subject: Message, dns: DnsContext) -> DmarcResult:  # type: ignore[override]
        domain, problem = author_domain(subject)
        if problem:
            return DmarcResult("dmarc", "permerror", problem)
        org = organizational_domain(domain)
        found_at = domain
        try:
            records = _records(f"_dmarc.{domain}", dns)
            if not records and org != domain:
                found_at = org
                records = _records(f"_dmarc.{org}", dns)
        except DNSTempError as exc:
            return DmarcResult("dmarc", "temperror", f"DMARC record lookup failed: {exc}", domain, org)
        if len(records) != 1:
            reason = "no DMARC record" if not records else f"{len(records)} DMARC records at _dmarc.{found_at}"
            return DmarcResult("dmarc", "none", reason, domain, org)
        record = parse_record(records[0])
        if record is None:
            return DmarcResult("dmarc", "none", "DMARC record without a valid p=", domain, org)
        policy = record.sp if found_at != domain else record.p
        spf = next((r for r in subject.results.values() if isinstance(r, SpfResult) and r.identity == "mailfrom"),
                   None)  # fmt: skip
        dkim = next((r for r in subject.results.values() if isinstance(r, DkimResult)), None)
        spf_aligned = spf is not None and spf.result == "pass" and aligned(spf.domain, domain, record.aspf)
        dkim_aligned = dkim is not None and any(
            s.result == "pass" and aligned(s.domain, domain, record.adkim) for s in dkim.signatures
        )
        common = dict(domain=domain, org_domain=org, policy=policy, record=record, spf_aligned=spf_aligned,
                      dkim_aligned=dkim_aligned)  # fmt: skip
        if spf_aligned or dkim_aligned:
            how = " and ".join(m for m, ok in (("SPF", spf_aligned), ("DKIM", dkim_aligned)) if ok)
            return DmarcResult("dmarc", "pass", f"{how} aligned with {domain}", **common)
        sampled = record.pct == 100 or random.random() * 100 < record.pct
        disposition = policy if sampled else _DOWNGRADE[policy]
        reason = f"{domain} publishes p={policy}; neither SPF nor DKIM passed aligned with it"
        arc = next((r for r in subject.results.values() if isinstance(r, ArcResult)), None)
        vouched_by = arc.sealer if arc is not None and arc.vouched else ""
        return DmarcResult("dmarc", "fail", reason, disposition=disposition, vouched_by=vouched_by, **common)

    def failed(self, subject: Subject, reason: str) -> DmarcResult:
        return DmarcResult("dmarc", "temperror", reason)

    def action(self, result: DmarcResult, policy: Mapping[str, object]) -> tuple[str, str]:
        """The published policy, when this recipient domain enforces it and no trusted ARC sealer vouches."""
        enforced = policy.get("dmarc_enforce") and not result.vouched_by
        if enforced and result.result == "fail" and result.disposition != "none":
            return result.disposition, "dmarc_enforce"
        return "accept", ""

    def reply(self, result: DmarcResult) -> Reply:
        done = "held" if result.disposition == "quarantine" else "rejected"
        return "7.1", f"{done} by the DMARC policy of the From domain"

    def report(self, result: DmarcResult) -> dict:
        keys = ("result", "domain", "org_domain", "policy", "spf_aligned", "dkim_aligned")
        return {key: getattr(result, key) for key in keys}

    def summary(self, result: DmarcResult) -> str:
        return f"dmarc ({result.domain or '-'}): {result.result} policy={result.policy or '-'} ({result.reason})"
