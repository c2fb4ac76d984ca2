"""Training-time augmentation: paraphrase, reordered clauses, other languages, missing codes, seed phrasings.

The point is robustness to wording: every real example is also seen reworded, shuffled and stripped of its
status/reply codes, and every category is also seen in hand-written phrasings and in the reply bank (phrases/:
whole replies as providers and MTAs word them, codes included, written from their public documentation, and two
hand-written paraphrases of each), both wrapped in varied MTA boilerplate (phrasebank.WRAPPERS and
phrases/wrappers.jsonl, the MTAs' own).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from .codes import STATUS_RE
from .corpus import Example, jsonl_records
from .extract import Finding, find_stage, finding_from_text
from .features import WORD_RE
from .phrasebank import SEEDS, STAGE_COMMANDS, SYNONYMS, WRAPPERS

PHRASES_DIR = Path(__file__).with_name("phrases")
# How much of an MTA's lead-in is kept before the reason: what an extracted diagnostic carries next to a reply,
# and short enough that a reason without codes stays within the words the model reads (features.MAX_WORDS).
LEAD_WORDS = 20
REPLY_CODE_RE = re.compile(r"(?<![\w.])[245][0-5]\d(?=[\s\-:]|$)")
CLAUSE_SPLIT_RE = re.compile(r"(?<=[.;:,])\s+")
_SYNONYM_RE = re.compile(r"\b(" + "|".join(sorted(map(re.escape, SYNONYMS), key=len, reverse=True)) + r")\b",
                         re.IGNORECASE)


def paraphrase(text: str, rng: random.Random, rate: float = 0.5) -> str:
    """Replace known words/phrases by an equivalent wording, each occurrence with probability ``rate``."""
    def swap(match: re.Match[str]) -> str:
        if rng.random() >= rate:
            return match.group(0)
        return rng.choice(SYNONYMS[match.group(0).lower()])
    return _SYNONYM_RE.sub(swap, text)


def reorder(text: str, rng: random.Random) -> str:
    """Shuffle the clauses of a sentence: providers put reason, address and code in any order."""
    clauses = CLAUSE_SPLIT_RE.split(text)
    rng.shuffle(clauses)
    return " ".join(clauses)


def drop_words(text: str, rng: random.Random, rate: float = 0.15) -> str:
    """Forget a few words, as truncated or abbreviated diagnostics do."""
    words = text.split()
    kept = [w for w in words if rng.random() >= rate]
    return " ".join(kept or words)


def without_codes(finding: Finding) -> Finding:
    """The finding as a bounce that states neither an enhanced status code nor a reply code."""
    text = REPLY_CODE_RE.sub(" ", STATUS_RE.sub(" ", finding.diagnostic))
    return replace(finding, diagnostic=" ".join(text.split()), status=None, reply_code=None)


def variant(finding: Finding, rng: random.Random) -> Finding:
    """One random rewording of a finding (several operations combined)."""
    text = paraphrase(finding.diagnostic, rng)
    if rng.random() < 0.5:
        text = reorder(text, rng)
    if rng.random() < 0.5:
        text = drop_words(text, rng)
    varied = replace(finding, diagnostic=text)
    return without_codes(varied) if rng.random() < 0.35 else varied


def cut_lead(template: str) -> str:
    """The template with only the last LEAD_WORDS words of its lead-in before the reason."""
    lead, reason, tail = template.partition("{reason}")
    words = [match.start() for match in WORD_RE.finditer(lead)]  # the model's words: CJK counts each character
    start = words[-LEAD_WORDS] if len(words) > LEAD_WORDS else 0
    if lead[start - 1:start] == "{":  # a placeholder's name is one word: keep its brace
        start -= 1
    return lead[start:] + reason + tail


@cache
def all_wrappers() -> tuple[str, ...]:
    """The generic boilerplates of phrasebank and the MTAs' and providers' own (wrappers.jsonl), cut."""
    return WRAPPERS + tuple(cut_lead(record["template"]) for record in jsonl_records(PHRASES_DIR / "wrappers.jsonl"))


def wrapped(reason: str, rng: random.Random, status: str = "", reply: str = "", stage: str = "unknown") -> str:
    """A failure text in one of the MTA boilerplates that carry a remote reply."""
    text = rng.choice(all_wrappers()).format(
        reason=reason, status=status, reply=reply, host="mx.example.net [192.0.2.1]", addr="user@example.org",
        stage_cmd=STAGE_COMMANDS[stage],
    )
    return " ".join(text.split())


def seed_finding(category: str, reason: str, rng: random.Random) -> Finding:
    """A synthetic finding: a seed phrasing with codes/stage typical of the category, in random boilerplate."""
    statuses, replies, stages, _ = SEEDS[category]
    status = rng.choice(statuses) if rng.random() < 0.7 else None
    reply = rng.choice(replies) if status is None or rng.random() < 0.8 else ""
    if status and reply and reply[0] != status[0]:
        reply = status[0] + reply[1:]
    stage = rng.choice(stages)
    text = wrapped(paraphrase(reason, rng, rate=0.3), rng, status or "", reply or "", stage)
    return Finding(recipient="user@example.org", status=status, reply_code=reply or None, diagnostic=text,
                   stage=find_stage(text) or (stage if stage != "unknown" else None))


@dataclass(frozen=True)
class BankReply:
    """One line of the reply bank: a reply as a provider or MTA words it, or a paraphrase of one."""

    category: str
    text: str
    who: str  # the provider or MTA that words it so (a paraphrase: its reply's)
    lang: str  # ISO 639-1 (a paraphrase: its reply's)
    paraphrase: bool = False


def reply_bank(directory: Path = PHRASES_DIR) -> list[BankReply]:
    """Every line of the reply bank: replies.jsonl, then each paraphrases-*.jsonl ("of": the reply's line)."""
    replies = list(jsonl_records(directory / "replies.jsonl"))
    bank = [BankReply(r["category"], r["text"], r["who"], r["lang"]) for r in replies]
    for path in sorted(directory.glob("paraphrases-*.jsonl")):
        for record in jsonl_records(path):
            reply = replies[record["of"] - 1]
            bank.append(BankReply(record["category"], record["text"], reply["who"], reply["lang"], True))
    return bank


def reply_examples(rng: random.Random, bank: list[BankReply]) -> list[Example]:
    """Each bank reply as a report would carry it, once in some boilerplate and once varied (reworded,
    shuffled or without codes)."""
    out = []
    for reply in bank:
        finding = finding_from_text("user@example.org", wrapped(reply.text, rng))
        out += [Example(finding, reply.category, f"reply:{reply.category}"),
                Example(variant(finding, rng), reply.category, f"reply:{reply.category}")]
    return out


def augment(examples: list[Example], rng: random.Random, copies: int = 2, seeds_per_phrase: int = 8,
            with_seeds: bool = True, bank: list[BankReply] | None = None) -> list[Example]:
    """The examples, ``copies`` random variants of each, the seed phrasings of every category and the reply
    bank (``bank``: another selection of it, for leave-providers-out cross-validation)."""
    out = list(examples)
    for example in examples:
        out.extend(replace(example, finding=variant(example.finding, rng)) for _ in range(copies))
        out.append(replace(example, finding=without_codes(example.finding)))
    if with_seeds:
        for category, (_, _, _, reasons) in SEEDS.items():
            for reason in reasons:
                out.extend(Example(seed_finding(category, reason, rng), category, f"seed:{category}")
                           for _ in range(seeds_per_phrase))
        out += reply_examples(rng, reply_bank() if bank is None else bank)
    return out
