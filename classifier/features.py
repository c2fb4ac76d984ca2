"""The one text the model reads per recipient: the SMTP stage and the normalised words, without any code.

Normalising in Python (not in the ONNX graph) keeps the exported vectoriser a plain word tokenizer, which is
both what skl2onnx converts reliably and what runs in tens of microseconds. Status and reply codes are removed
from the text: they speak through the explicit status-code prior (model.with_prior), so the words are learnt
on their own and a specific text can overrule a generic or misleading code, and a bounce without codes is
read the way it was trained.
"""

from __future__ import annotations

import re

from .addresses import ADDRESS_RE
from .codes import REPLY_CODE_RE, STATUS_RE
from .extract import Finding
from .lexicon import glossary
from .parts import at_word_start

# All matched against lower-cased text; see codes.py for the look-behind-after-first-character form.
URL_RE = re.compile(r"\b(?:https?://|www\.)\S+")
IPV4_RE = re.compile(r"\d(?<!\w\d)\d{0,2}(?:\.\d{1,3}){3}\b")
IPV6_RE = re.compile(r"\b[0-9a-f]{1,4}(?::[0-9a-f]{0,4}){3,7}\b")  # only tried on text with 3+ colons
HOST_RE = re.compile(r"\b(?:[a-z0-9\-]+\.){2,}[a-z]{2,}\b")
NUMBER_RE = re.compile(r"\d(?<!\w\d)\d*\b")
# The words: runs of word characters, except that in scripts written without spaces each character is a word
# (so word bigrams become character bigrams). One findall; inserting spaces around each such character with
# re.sub took ~200 us on a Japanese diagnostic.
_CJK = "\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uff66-\uff9f"
WORD_RE = re.compile(rf"(?=\w)[{_CJK}]|[^\W{_CJK}]+")
# Spelling variants that would otherwise split one concept into unrelated tokens; each starts at a word start.
SPELLINGS = (
    (r"e[\s\-]mail", "email"),
    (r"mail[\s\-]box", "mailbox"),
    (r"user[\s\-]name", "username"),
    (r"over[\s\-]quota", "overquota"),
    (r"black[\s\-]?list(?:ed|ing)?", "blocklisted"),
    (r"block[\s\-]?list(?:ed|ing)?", "blocklisted"),
    (r"deny[\s\-]?list(?:ed|ing)?", "blocklisted"),
    (r"spam[\s\-]?haus\b", "spamhaus"),
    (r"does ?n[o']?t\b", "does not"),
    (r"doesnt\b", "does not"),
    (r"ca ?n[o']?t\b", "can not"),
    (r"cannot\b", "can not"),
)
# All variants in one scan; the empty named group after the first letter says which one matched.
SPELLING_RE = re.compile(at_word_start(*(f"{pattern[0]}(?P<v{i}>){pattern[1:]}"
                                         for i, (pattern, _) in enumerate(SPELLINGS))))
# A word that contains one of these stems also reads as the stem: a filter's or product's name ("SpamAssassin",
# "dspam", "SpamProfiler", "antivirus", "VirusWall") is a token no training text has, the stem one every
# text about it shares. Block lists named after spam say something else (reputation) and stay whole.
STEMS = ("spam", "virus", "quota", "malware", "phish")
WHOLE = ("spamhaus", "spamcop", "spamrats")
COMPOUND_RE = re.compile(rf"\b(?!(?:{'|'.join(WHOLE)})\b)\w*?({'|'.join(STEMS)})\w*")
MAX_WORDS = 64
# What normalise puts where a URL, an address, an IP, a host or a number stood: they say nothing about the reason.
URL_TOKEN, ADDRESS_TOKEN, IP_TOKEN, HOST_TOKEN, NUMBER_TOKEN = "zurl", "zaddr", "zip", "zhost", "znum"
PLACEHOLDERS = frozenset({URL_TOKEN, ADDRESS_TOKEN, IP_TOKEN, HOST_TOKEN, NUMBER_TOKEN})
# The words kept come from the start of the diagnostic; normalising only this much keeps the regex passes cheap.
MAX_CHARS = 600


def normalise(text: str) -> str:
    """Lower-case words with addresses, URLs, IPs, hosts and numbers replaced by placeholders, codes removed."""
    text = text[:MAX_CHARS].lower()
    if "http" in text or "www." in text:
        text = URL_RE.sub(f" {URL_TOKEN} ", text)
    if "@" in text:
        text = ADDRESS_RE.sub(f" {ADDRESS_TOKEN} ", text)
    text = IPV4_RE.sub(f" {IP_TOKEN} ", text)
    if text.count(":") >= 3:
        text = IPV6_RE.sub(f" {IP_TOKEN} ", text)
    if "." in text:
        text = HOST_RE.sub(f" {HOST_TOKEN} ", text)
    text = REPLY_CODE_RE.sub(" ", STATUS_RE.sub(" ", text))
    text = NUMBER_RE.sub(f" {NUMBER_TOKEN} ", text)
    text = SPELLING_RE.sub(lambda m: SPELLINGS[int(m.lastgroup[1:])][1], text)
    text = glossary().gloss(text, MAX_WORDS)
    if any(stem in text for stem in STEMS):  # most texts have none; the pattern costs ~20 us a text
        text = COMPOUND_RE.sub(_with_stem, text)
    return " ".join(WORD_RE.findall(text)[:MAX_WORDS])


def _with_stem(match: re.Match[str]) -> str:
    word, stem = match.group(0), match.group(1)
    return word if word == stem else f"{stem} {word}"


def model_text(finding: Finding) -> str:
    """The model input for one recipient."""
    return f"xstage_{finding.stage or 'unknown'} {normalise(finding.diagnostic)}"


def says_nothing(text: str) -> bool:
    """Whether a model text has no word but its stage and placeholders: an empty diagnostic, or only an address.

    The text model has no evidence to weigh there, only what its training made of empty texts (an empty
    diagnostic at DATA read as content-related), so the status code alone decides (model.code_alone).
    """
    return all(word in PLACEHOLDERS for word in text.split()[1:])
