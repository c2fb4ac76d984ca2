"""The registered checks, in the order they run and are reported.

To add a check, write its module in this package (a `Check` subclass and the `CheckResult` subclass it
returns; base.py says what each must tell) and add an instance to CHECKS below. Nothing else changes: the
engine runs it at its stage, config accepts its policy keys, its reject and defer replies carry its codes,
and its result appears in Authentication-Results, in the decision log line and in `mailwarden check`.
"""

from __future__ import annotations

from .arc import ArcCheck
from .base import Check
from .dkim import DkimCheck
from .dmarc import DmarcCheck
from .iprev import IprevCheck
from .spf import SpfCheck

CHECKS: tuple[Check, ...] = (
    IprevCheck(), SpfCheck("helo"), SpfCheck("mailfrom"), DkimCheck(), ArcCheck(), DmarcCheck()
)  # ARC before DMARC: DMARC reads whether the chain vouches for the message


def registered() -> tuple[Check, ...]:
    """CHECKS as it is now (read at each call, so that a test may register a check of its own)."""
    return CHECKS
