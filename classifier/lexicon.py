"""Foreign failure terms glossed with the English words the model was trained on.

Most training text is English; a provider's "Postfach voll", "域名不存在" or "отправитель отклонён" would
otherwise be words the model has never seen, and it would fall back on the stage and the code. lexicon.json
lists, per language, the terms that express some 40 concepts of failure texts (mailbox, full, domain, sender,
rejected, expired, ...); each term found gets its concept's English words put in front of it, so the model
reads the concept and still sees the original word. The table names no category: what a concept means for
the label is learnt like every other word. It was written from knowledge of the languages, not from the
corpora or the reply bank, and terms found in English failure texts were left out (docs/classifier.md).

English has the same problem with jargon: a block list, an abbreviation or a vendor's word the training texts
never showed ("listed at UCEPROTECT", "PTR", "throttled"). jargon.json lists such terms per concept, written
the same way, and they are glossed as one more language ("throttled" -> "too many throttled").
"""

from __future__ import annotations

import json
import re
from functools import cache
from itertools import islice
from pathlib import Path

LEXICON_PATH = Path(__file__).with_name("lexicon.json")
# English jargon per concept (block lists, SPF, NXDOMAIN, throttled, ...), glossed like one more language.
JARGON_PATH = Path(__file__).with_name("jargon.json")
# Terms of word scripts are looked up by their first KEY characters where a word that can start one stands (a
# regular expression over the 5 000 terms cost ~250 us per text, this ~10 us for an English one).
KEY = 4
WORD_RE = re.compile(r"\w+")
# Words remembered as starting a term or not; a hostile flood of new words fills it and is then looked up anew.
MAX_KNOWN_WORDS = 100_000
# Terms of the scripts found anywhere in a word (see Glossary) are looked up by their first SUBSTRING_KEY
# characters at every position: ~0.15 us a character, against ~0.5 us for one trie-shaped regular expression
# over the 1 352 terms (Python's re tries the alternatives of a branch one by one). A text without any
# character of those scripts skips the scan.
SUBSTRING_KEY = 2
_SUBSTRING_SCRIPTS = "\u0590-\u08ff\u0900-\u097f\u0e00-\u0e7f\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uff66-\uff9f"
SUBSTRING_SCRIPT_RE = re.compile(f"[{_SUBSTRING_SCRIPTS}]")


class Glossary:
    """The compiled lexicon: ``gloss(text)`` puts each concept's English words in front of its terms."""

    def __init__(self, lexicon: dict) -> None:
        english: dict[str, str] = lexicon["concepts"]
        substring_languages = set(lexicon["substring_languages"])
        self._concept: dict[str, str] = {}
        # A term of a word script starts a word and may run on ("отклон" in "отклонено"); a shorter one than KEY
        # is a whole word. Terms of scripts without spaces, or whose words carry attached prefixes, are found
        # anywhere.
        self._stems: dict[str, list[str]] = {}
        self._short: set[str] = set()
        self._substrings: dict[str, list[str]] = {}
        for language, concepts in lexicon["terms"].items():
            for concept, terms in concepts.items():
                for term in terms:
                    self._concept.setdefault(term, english[concept])
                    if language in substring_languages:
                        self._substrings.setdefault(term[:SUBSTRING_KEY], []).append(term)
                    elif len(term) < KEY:
                        self._short.add(term)
                    else:
                        self._stems.setdefault(term[:KEY], []).append(term)
        for candidates in (*self._stems.values(), *self._substrings.values()):
            candidates.sort(key=len, reverse=True)
        # A one-character term is also a candidate wherever a longer key starts with it (after the longer terms).
        singles = {key: terms for key, terms in self._substrings.items() if len(key) < SUBSTRING_KEY}
        for key, candidates in self._substrings.items():
            if len(key) == SUBSTRING_KEY and key[0] in singles:
                candidates += singles[key[0]]
        self._single_substrings = bool(singles)
        # Which words can start a term: one a one-word term is a prefix of, the first word of a longer term, or a
        # short term; decided once per word (bounce texts reuse few words) so most words cost one lookup.
        self._one_word = {term for terms in self._stems.values() for term in terms if WORD_RE.fullmatch(term)}
        self._first_words = {WORD_RE.match(term).group(0) for terms in self._stems.values() for term in terms
                             if not WORD_RE.fullmatch(term)} | self._short
        self._starts: dict[str, bool] = {}

    def gloss(self, text: str, max_words: int | None = None) -> str:
        """``text`` (lower-cased) with the English words of every lexicon term in front of it; only the terms
        among its first ``max_words`` words when a reader reads no further (a gloss only adds words)."""
        if "\u2019" in text:
            text = text.replace("\u2019", "'")
        pieces: list[str] = []
        done = covered = 0
        for match in islice(WORD_RE.finditer(text), max_words):
            start, word = match.start(), match.group(0)
            if start < covered or not self._can_start(word):  # inside a phrase already glossed, or no term
                continue
            term = self._term_at(text, start, word)
            if term:
                pieces += [text[done:start], f" {self._concept[term]} "]
                done, covered = start, start + len(term)
        if pieces:
            text = "".join(pieces) + text[done:]
        if self._substrings and SUBSTRING_SCRIPT_RE.search(text):
            text = self._gloss_substrings(text)
        return text

    def _gloss_substrings(self, text: str) -> str:
        """The terms found anywhere: at each position the longest one starting there, left to right, none
        overlapping."""
        lookup = self._substrings.get
        pieces: list[str] = []
        done = position = 0
        while position < len(text):
            candidates = lookup(text[position:position + SUBSTRING_KEY]) or (
                self._single_substrings and lookup(text[position])) or ()
            for term in candidates:
                if text.startswith(term, position):
                    pieces += [text[done:position], f" {self._concept[term]} {term} "]
                    position = done = position + len(term)
                    break
            else:
                position += 1
        return "".join(pieces) + text[done:] if pieces else text

    def _can_start(self, word: str) -> bool:
        """Whether a term can start with ``word``."""
        known = self._starts.get(word)
        if known is None:
            known = word in self._first_words or any(word[:end] in self._one_word
                                                     for end in range(KEY, len(word) + 1))
            if len(self._starts) < MAX_KNOWN_WORDS:
                self._starts[word] = known
        return known

    def _term_at(self, text: str, start: int, word: str) -> str | None:
        """The longest term starting at ``start``, where the word ``word`` starts."""
        for term in self._stems.get(text[start:start + KEY], ()):
            if text.startswith(term, start):
                return term
        return word if word in self._short else None


def shipped_lexicon(with_jargon: bool = True) -> dict:
    """lexicon.json, with jargon.json's English terms as one more language unless ``with_jargon`` is false."""
    lexicon = json.loads(LEXICON_PATH.read_text(encoding="utf-8"))
    if with_jargon:
        jargon = json.loads(JARGON_PATH.read_text(encoding="utf-8"))
        lexicon["terms"] = {**lexicon["terms"], "en": jargon["terms"]}
    return lexicon


@cache
def glossary() -> Glossary:
    """The shipped lexicon and jargon, compiled once."""
    return Glossary(shipped_lexicon())
