"""Policy: from check results and a recipient domain's settings to accept, reject (550) or defer (451).

The configuration maps "<check policy prefix>_<result>" (spf_fail, helo_spf_temperror, iprev_fail, ...) to
an action. When several results ask for something, the strongest wins: reject over defer over accept. The
reply's enhanced status code and words are the deciding check's own (`Check.replies`: RFC 7372 x.7.23 SPF
validation failed, x.7.24 SPF validation error, x.7.25 reverse DNS validation failed, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .checks.base import Check, CheckResult
from .headers import clean

_STRENGTH = {"accept": 0, "defer": 1, "reject": 2}


@dataclass(frozen=True)
class Decision:
    action: str  # accept | reject | defer
    key: str = ""  # the policy key that decided, e.g. "spf_fail"
    code: str = ""  # SMTP reply code: "550" / "451"
    xcode: str = ""  # enhanced status code: "5.7.23", ...
    text: str = ""  # reply text

    @property
    def accepted(self) -> bool:
        return self.action == "accept"


ACCEPT = Decision("accept")


def decide(results: Iterable[tuple[Check, CheckResult]], policy: Mapping[str, str]) -> Decision:
    """The strongest action that `policy` asks for any of `results` ((check, its result) pairs)."""
    best = ACCEPT
    for check, result in results:
        key = f"{check.policy}_{result.result}"
        action = policy.get(key, "accept")
        if _STRENGTH[action] > _STRENGTH[best.action]:
            best = _reply(action, key, check, result)
    return best


def _reply(action: str, key: str, check: Check, result: CheckResult) -> Decision:
    detail, what = check.replies[result.result]
    klass, code = ("5", "550") if action == "reject" else ("4", "451")
    # libmilter silently drops a reply text with a lone '%': the sanitised text must not contain one.
    reason = clean(result.reason).replace("%", "?")
    return Decision(action, key, code, f"{klass}.{detail}", f"{what} ({key}): {reason}")
