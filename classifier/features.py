"""The one text the model reads per recipient: engineered tokens for stage/reply/status plus normalised words.

Normalising in Python (not in the ONNX graph) keeps the exported vectoriser a plain word tokenizer, which is
both what skl2onnx converts reliably and what runs in tens of microseconds. The status code is spelled at
three levels (5_1_1, 5_1, 5) so the model can learn that a specific text outweighs a generic code.
"""

from __future__ import annotations

import re

from .extract import ADDRESS_RE, STATUS_RE, Finding

URL_RE = re.compile(r"(?i)\b(?:https?://|www\.)\S+")
IPV4_RE = re.compile(r"\[?\b\d{1,3}(?:\.\d{1,3}){3}\b\]?")
IPV6_RE = re.compile(r"\b[0-9a-f]{1,4}(?::[0-9a-f]{0,4}){3,7}\b", re.I)  # only tried on text with 3+ colons
HOST_RE = re.compile(r"\b(?:[a-z0-9\-]+\.){2,}[a-z]{2,}\b", re.I)
REPLY_WORD_RE = re.compile(r"(?<![\w.])([245][0-5]\d)(?![\w.])")
NUMBER_RE = re.compile(r"\b\d+\b")
# Scripts written without spaces: each character becomes a token, so word bigrams become character bigrams.
CJK_RE = re.compile(r"([\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uff66-\uff9f])")
# Spelling variants that would otherwise split one concept into unrelated tokens.
SPELLINGS = (
    (r"\be[\s\-]mail", "email"),
    (r"\bmail[\s\-]box", "mailbox"),
    (r"\buser[\s\-]name", "username"),
    (r"\bover[\s\-]quota", "overquota"),
    (r"\b(?:black|block|deny)[\s\-]?list(?:ed|ing)?", "blocklisted"),
    (r"\bspam[\s\-]?haus\b", "spamhaus"),
    (r"\bdoes ?n[o']?t\b|\bdoesnt\b", "does not"),
    (r"\bca ?n[o']?t\b|\bcannot\b", "can not"),
)
# All variants in one pass (one regex scan instead of eight): the named group says which one matched.
SPELLING_RE = re.compile("|".join(f"(?P<v{i}>{pattern})" for i, (pattern, _) in enumerate(SPELLINGS)))
MAX_WORDS = 64
# The words kept come from the start of the diagnostic; normalising only this much keeps the regex passes cheap.
MAX_CHARS = 600


def normalise(text: str) -> str:
    """Lower-case words with addresses, URLs, IPs, hosts and numbers replaced by placeholders."""
    text = text[:MAX_CHARS].lower()
    text = URL_RE.sub(" zurl ", text)
    text = ADDRESS_RE.sub(" zaddr ", text)
    text = IPV4_RE.sub(" zip ", text)
    if text.count(":") >= 3:
        text = IPV6_RE.sub(" zip ", text)
    text = HOST_RE.sub(" zhost ", text)
    text = STATUS_RE.sub(lambda m: " zcode_{}_{}_{} ".format(*m.groups()), text)
    text = REPLY_WORD_RE.sub(r" zreply_\1 ", text)
    text = NUMBER_RE.sub(" znum ", text)
    text = SPELLING_RE.sub(lambda m: SPELLINGS[int(m.lastgroup[1:])][1], text)
    text = CJK_RE.sub(r" \1 ", text)
    words = re.findall(r"\w+", text)
    return " ".join(words[:MAX_WORDS])


def structure_tokens(status: str | None, reply_code: str | None, stage: str | None) -> list[str]:
    """Engineered tokens for what the labels depend on besides the sentence."""
    tokens = [f"xstage_{stage or 'unknown'}"]
    if reply_code:
        tokens += [f"xreply_{reply_code}", f"xreplyclass_{reply_code[0]}"]
    else:
        tokens.append("xreply_none")
    if status:
        cls, subject, detail = status.split(".")
        tokens += [f"xstatus_{cls}_{subject}_{detail}", f"xstatus_{cls}_{subject}", f"xstatusclass_{cls}",
                   f"xsubject_{subject}_{detail}"]
    else:
        tokens.append("xstatus_none")
    return tokens


def model_text(finding: Finding) -> str:
    """The model input for one recipient."""
    tokens = structure_tokens(finding.status, finding.reply_code, finding.stage)
    return " ".join(tokens) + " " + normalise(finding.diagnostic)
