"""Evaluation-only perturbation of dev messages: reworded with a held-out table, and codes removed.

This is deliberately NOT the training augmentation (augment.py): every occurrence of a listed phrase is replaced
by wording that real MTAs use but that is disjoint from phrasebank.SYNONYMS, the table the training
paraphrases come from (a test checks it), and the sentence-level change is a different operation (new
boilerplate around the reason and a change of case instead of clause shuffling and word dropping).
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

from .augment import without_codes
from .extract import Finding

HELD_OUT: dict[str, tuple[str, ...]] = {
    "user unknown": ("no such person at this address", "unrecognized user"),
    "unknown user": ("user not recognized",),
    "user": ("local user", "person"),
    "recipient": ("rcpt", "destination address", "target address"),
    "unknown": ("unrecognized", "not listed", "not registered"),
    "not found": ("could not be found", "not located", "not present"),
    "mailbox": ("mailstore", "postbox", "mail folder", "mail drop"),
    "full": ("filled up", "out of storage", "without free space"),
    "quota": ("storage allowance", "disk allowance", "size allowance"),
    "exceeded": ("overrun", "went over", "is beyond"),
    "rejected": ("bounced", "not allowed", "turned away"),
    "refused": ("turned down", "blocked off"),
    "blocked": ("barred", "put on a deny list", "embargoed"),
    "denied": ("disallowed", "prohibited"),
    "message": ("letter", "item", "submission"),
    "delivery": ("dispatch", "handoff"),
    "domain": ("mail domain", "zone"),
    "host": ("machine", "mail exchanger"),
    "too large": ("above the size cap", "beyond the maximum length"),
    "size": ("length", "byte count"),
    "disabled": ("locked out", "turned off"),
    "suspended": ("on hold", "frozen"),
    "expired": ("lapsed", "ran out of retries"),
    "policy": ("regulations", "site rules"),
    "spam": ("bulk mail", "unsolicited commercial email", "uce"),
    "virus": ("trojan", "malicious code", "worm"),
    "sender": ("mail from", "return path", "author"),
    "connection": ("socket", "tcp session"),
    "timed out": ("took too long", "got no response"),
    "does not exist": ("is not registered", "is not present here"),
    "invalid": ("bad", "malformed", "unusable"),
    "error": ("fault condition", "malfunction"),
    "temporarily": ("briefly", "for a while"),
    "account": ("profile", "subscription", "login"),
}
FRAMES: tuple[str, ...] = (
    "Diagnostic from the remote server: {text}",
    "{text} (as reported by the receiving system)",
    "The far end answered: {text}. Check the address and your settings before resending.",
    "Delivery report. {text}",
)
_HELD_OUT_RE = re.compile(r"\b(" + "|".join(sorted(map(re.escape, HELD_OUT), key=len, reverse=True)) + r")\b",
                          re.IGNORECASE)


def reword(text: str, rng: random.Random) -> str:
    """Every held-out phrase replaced, the result framed in new boilerplate, sometimes upper-cased."""
    text = _HELD_OUT_RE.sub(lambda m: rng.choice(HELD_OUT[m.group(0).lower()]), text)
    text = rng.choice(FRAMES).format(text=text)
    return text.upper() if rng.random() < 0.25 else text


def paraphrased(finding: Finding, rng: random.Random) -> Finding:
    """The finding as a bounce from an MTA that words the same reason differently (codes kept)."""
    return replace(finding, diagnostic=reword(finding.diagnostic, rng))


def codes_removed(finding: Finding) -> Finding:
    """The finding as a bounce that gives no status code and no reply code, only words."""
    return without_codes(finding)
