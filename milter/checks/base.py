"""What every check shares: the subject it examines, the DNS it may use, and the result it returns.

A check is a small object with a `name`, the SMTP `stage` after which it can run, the `policy` key prefix
under which the administrator sets actions for its results, `run(subject, dns) -> CheckResult`, and
`failed(subject, reason)`, the result that stands in when `run` itself raises.
Checks never raise for DNS trouble: that is a result (temperror) like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from ..dns import Answer, Budget, Resolver

Stage = Literal["connect", "mail"]


@dataclass(frozen=True)
class Subject:
    """What the SMTP client has told us so far."""

    ip: str
    helo: str = ""
    sender: str | None = None  # MAIL FROM address without brackets; "" is the null sender


@dataclass(slots=True)
class DnsContext:
    """The shared resolver bound to one message's DNS budget, for one check. It remembers when the first of
    the answers the check read expires: until then the same subject gets the same result."""

    resolver: Resolver
    budget: Budget
    expires: float = float("inf")

    def lookup(self, name: str, rdtype: str) -> Answer:
        answer = self.resolver.lookup(name, rdtype, self.budget)
        self.expires = min(self.expires, answer.expires)
        return answer


@dataclass(frozen=True)
class CheckResult:
    method: str  # the Authentication-Results method: "iprev", "spf"
    result: str  # an RFC 8601 / RFC 7208 result word
    reason: str  # why, in words, for the header comment and the log


class Check(Protocol):
    name: str  # unique: the key of its result in the session, and its name in logs and metrics
    method: str  # the Authentication-Results method it reports under
    stage: Stage
    policy: str  # prefix of the policy keys: "<policy>_<result>"

    def run(self, subject: Subject, dns: DnsContext) -> CheckResult: ...

    def failed(self, subject: Subject, reason: str) -> CheckResult:
        """The temperror to report when `run` itself broke: typed like a real result, same identity."""
        ...
