"""Evaluation-only perturbation of dev messages: reworded with a held-out table, and codes removed.

This is deliberately NOT the training augmentation (augment.py): the replacement wordings below are disjoint
from phrasebank.SYNONYMS (a test checks it), and the sentence-level change is a different operation
(boilerplate around the reason and a change of case instead of clause shuffling). A model that merely learned
the training table gains nothing here.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

from .augment import without_codes
from .extract import Finding

HELD_OUT: dict[str, tuple[str, ...]] = {
    "user unknown": ("person not on file", "no one by that name here"),
    "unknown user": ("unrecognised account holder",),
    "user": ("subscriber", "member", "customer"),
    "recipient": ("destination party", "intended reader", "target person"),
    "unknown": ("unrecognised", "unheard of", "not on record"),
    "not found": ("could not be located", "is absent", "not present"),
    "mailbox": ("postbox", "message store", "letterbox"),
    "full": ("stuffed", "filled up", "packed"),
    "quota": ("allotment", "ceiling", "cap"),
    "exceeded": ("overrun", "gone beyond", "topped"),
    "rejected": ("turned away", "bounced back", "knocked back"),
    "refused": ("turned down", "repelled"),
    "blocked": ("barred", "shut out", "stopped"),
    "denied": ("withheld", "disallowed"),
    "message": ("letter", "correspondence", "note"),
    "delivery": ("hand-off", "dispatch"),
    "domain": ("zone", "address suffix"),
    "host": ("machine", "node"),
    "too large": ("bulky beyond the maximum", "heavier than permitted"),
    "size": ("weight", "bulk"),
    "disabled": ("switched off", "shut down"),
    "suspended": ("put on hold", "paused"),
    "expired": ("lapsed", "ran out of time"),
    "policy": ("house rules", "regulations"),
    "spam": ("junk mail", "bulk solicitation"),
    "virus": ("malicious payload", "trojan"),
    "sender": ("author address", "return path"),
    "connection": ("socket", "channel"),
    "timed out": ("went unanswered", "hung"),
    "does not exist": ("is not on record", "cannot be located"),
    "invalid": ("bogus", "unusable"),
    "error": ("fault condition", "malfunction"),
    "temporarily": ("briefly", "for a short while"),
    "account": ("profile", "subscription"),
}
FRAMES: tuple[str, ...] = (
    "Notice from the receiving system - {text}. Kindly check before you resend.",
    "{text} -- this report was produced automatically, do not reply",
    "Reason given by the far end: {text}",
    "We regret the inconvenience. {text}",
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
