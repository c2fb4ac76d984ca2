"""What every check shares: the subject it examines, the DNS it may use, the result it returns, and what it
tells the rest of mailwarden about itself.

A check is one module of this package: a `Check` subclass and the `CheckResult` subclass it returns. That
module is the one place that knows the check: its result words and, for those an administrator may act on,
the RFC 7372 reply (`replies`, from which its policy keys "<policy>_<result>" follow); its
Authentication-Results entry (`CheckResult.resinfo`) and any trace field of its own above it (`fields`); its
part of `mailwarden check` (`report`, `summary`). The engine, config, policy, headers and the command line
ask the registered checks (checks/__init__.py) and know none of them by name.

Checks never raise for DNS trouble: that is a result (temperror) like any other.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

import authres

from ..dns import Answer, Budget, Resolver
from ..headers import comment

if TYPE_CHECKING:
    from ..config import Config

Stage = Literal["connect", "mail", "message"]  # "message": at end of data (checks/message.py)
Reply = tuple[str, str]  # RFC 7372 enhanced status detail ("7.23"), what the reply says ("SPF validation failed")
Field = tuple[str, str]  # a header field: name, value


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
    """One verdict. Immutable and hashable: the engine reuses it for a client that writes again, and the
    header text rendered for it is kept (headers.py)."""

    method: str  # the Authentication-Results method: "iprev", "spf"
    result: str  # an RFC 8601 / RFC 7208 result word
    reason: str  # why, in words, for the header comment and the log

    def resinfo(self) -> str:
        """Its entry in Authentication-Results (RFC 8601 §2.2 resinfo): here the method and result alone;
        a check's own result type adds its properties (smtp.mailfrom, policy.iprev, ...)."""
        return str(authres.AuthenticationResult(method=self.method, result=self.result,
                                                result_comment=comment(self.reason)))  # fmt: skip


R = TypeVar("R", bound=CheckResult)


class Check(ABC, Generic[R]):
    """One check, as the engine runs it and everything else asks about it (see the module docstring)."""

    name: str  # unique: the key of its result in the session, and its name in logs and metrics
    stage: Stage  # the SMTP stage after which it can run
    policy: str  # prefix of its policy keys: "<policy>_<result>"
    # The result words an administrator may set an action for, each with the reply a reject or defer gives.
    replies: Mapping[str, Reply]
    options: Mapping[str, bool] = {}  # true/false keys of its own in [policy], with their defaults
    report_key: tuple[str, ...]  # where `mailwarden check --json` puts its report: ("iprev",), ("spf", "helo")

    def configure(self, config: Config) -> Check[R]:
        """The check as an engine for `config` runs it: itself, or a copy holding settings of its own (ARC's
        trusted sealers and sealing key), so that a reload never changes a check that sessions still use."""
        return self

    @abstractmethod
    def run(self, subject: Subject, dns: DnsContext) -> R: ...

    @abstractmethod
    def failed(self, subject: Subject, reason: str) -> R:
        """The temperror to report when `run` itself broke: typed like a real result, same identity."""

    def policy_keys(self) -> tuple[str, ...]:
        return tuple(f"{self.policy}_{word}" for word in self.replies)

    def action(self, result: R, policy: Mapping[str, object]) -> tuple[str, str]:
        """(what a recipient domain's `policy` asks for this result, the key that says so)."""
        key = f"{self.policy}_{result.result}"
        return str(policy.get(key, "accept")), key

    def reply(self, result: R) -> Reply:
        """The enhanced status detail and words of a reject or defer for this result."""
        return self.replies[result.result]

    def fields(self, result: R, ip: str, helo: str, receiver: str) -> tuple[Field, ...]:
        """Header fields of its own to write above our Authentication-Results, top first."""
        return ()

    def report(self, result: R) -> object:
        """Its result as `mailwarden check --json` shows it."""
        return {"result": result.result}

    def summary(self, result: R) -> str:
        """Its result as `mailwarden check` prints it, on one line."""
        return f"{self.name}: {result.result}"
