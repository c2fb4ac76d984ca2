"""Policy: from check results and a recipient domain's settings to accept, reject (550) or defer (451).

The configuration maps "<check policy prefix>_<result>" (spf_fail, helo_spf_temperror, iprev_fail, ...) to
an action; a check may read keys of its own instead (`Check.action`: DMARC's dmarc_enforce obeys the
published policy, which may also ask for quarantine, the MTA's hold queue, at end of data). When several
results ask for something, the strongest wins: reject over defer over quarantine over accept. The reply's
enhanced status code and words are the deciding check's own (`Check.reply`: RFC 7372 x.7.23 SPF validation
failed, x.7.24 SPF validation error, x.7.25 reverse DNS validation failed, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .checks.base import Check, CheckResult
from .headers import clean

_STRENGTH = {"accept": 0, "quarantine": 1, "defer": 2, "reject": 3}


@dataclass(frozen=True)
class Decision:
    action: str  # accept | reject | defer | quarantine (end of data only)
    key: str = ""  # the policy key that decided, e.g. "spf_fail"
    code: str = ""  # SMTP reply code: "550" / "451" ("" for quarantine)
    xcode: str = ""  # enhanced status code: "5.7.23", ...
    text: str = ""  # reply text (for quarantine: the reason the MTA keeps with the message)
    domain: str = ""  # the recipient domain whose policy decided, at end of data

    @property
    def accepted(self) -> bool:
        return self.action == "accept"


ACCEPT = Decision("accept")


def decide(results: Iterable[tuple[Check, CheckResult]], policy: Mapping[str, object]) -> Decision:
    """The strongest action that `policy` asks for any of `results` ((check, its result) pairs)."""
    best = ACCEPT
    for check, result in results:
        action, key = check.action(result, policy)
        if stronger(action, best.action):
            best = _reply(action, key, check, result)
    return best


def stronger(action: str, than: str) -> bool:
    return _STRENGTH[action] > _STRENGTH[than]


def _reply(action: str, key: str, check: Check, result: CheckResult) -> Decision:
    detail, what = check.reply(result)
    klass, code = {"reject": ("5", "550"), "defer": ("4", "451")}.get(action, ("", ""))
    # libmilter silently drops a reply text with a lone '%': the sanitised text must not contain one.
    reason = clean(result.reason).replace("%", "?")
    return Decision(action, key, code, f"{klass}.{detail}" if klass else "", f"{what} ({key}): {reason}")
