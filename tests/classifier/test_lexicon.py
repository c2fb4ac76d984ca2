"""The glossary: foreign failure terms and English jargon get their concept's English words, plain English none."""

from __future__ import annotations

import re

import pytest

from mailwarden.classifier import BounceClassifier, lexicon
from mailwarden.classifier.augment import reply_bank
from mailwarden.classifier.lexicon import Glossary, glossary, shipped_lexicon
from mailwarden.classifier.perturb import HELD_OUT

SMALL_LEXICON = {
    "concepts": {"rejected": "rejected", "not_exist": "does not exist", "domain": "domain", "wrong": "invalid"},
    "substring_languages": ["zh"],
    "terms": {"ru": {"rejected": ["отклон"], "not_exist": ["не существует"]},
              "fr": {"not_exist": ["n'existe pas"]},
              "vi": {"wrong": ["sai"]},
              "zh": {"domain": ["域名"], "not_exist": ["不存在"]}},
}
SMALL = Glossary(SMALL_LEXICON)


def test_terms_found_anywhere_prefer_the_longest_and_never_overlap():
    lexicon = {"concepts": {"a": "alpha", "b": "beta", "c": "gamma", "d": "delta"}, "substring_languages": ["zh"],
               "terms": {"zh": {"a": ["域名"], "b": ["域名不"], "c": ["不存在"], "d": ["在", "在线路"]}}}
    glossed = Glossary(lexicon)
    assert glossed.gloss("域名不存在") == " beta 域名不 存 delta 在 "  # "不存在" overlaps the longer "域名不"
    assert glossed.gloss("的域名存在") == "的 alpha 域名 存 delta 在 "
    assert glossed.gloss("在线路在线") == " delta 在线路  delta 在 线"  # one character, where a longer term starts


def test_a_stem_is_glossed_at_a_word_start_in_any_inflection_but_not_inside_a_word():
    assert SMALL.gloss("письмо отклонено") == "письмо  rejected отклонено"
    assert SMALL.gloss("неотклонено") == "неотклонено"


def test_a_phrase_is_glossed_once_and_a_curly_apostrophe_reads_as_a_straight_one():
    assert SMALL.gloss("домен не существует") == "домен  does not exist не существует"
    assert SMALL.gloss("le domaine n\u2019existe pas") == "le domaine  does not exist n'existe pas"


def test_a_short_term_is_a_whole_word_only():
    assert SMALL.gloss("địa chỉ sai") == "địa chỉ  invalid sai"
    assert SMALL.gloss("saint") == "saint"


def test_only_the_words_a_reader_reads_are_glossed():
    assert SMALL.gloss("отклонено отклонено отклонено", max_words=2).split() == [
        "rejected", "отклонено", "rejected", "отклонено", "отклонено"]


def test_words_remembered_are_bounded_and_a_full_memory_still_glosses(monkeypatch):
    """A hostile bounce full of new words must not grow the memory of which words start a term."""
    monkeypatch.setattr(lexicon, "MAX_KNOWN_WORDS", 10)
    fresh = Glossary(SMALL_LEXICON)
    fresh.gloss(" ".join(f"word{i}" for i in range(100)))
    assert fresh.gloss("письмо отклонено") == "письмо  rejected отклонено"
    assert len(fresh._starts) == 10


def test_terms_of_scripts_without_spaces_are_found_anywhere():
    assert SMALL.gloss("收信方域名不存在") == "收信方 domain 域名  does not exist 不存在 "


def test_the_shipped_glossary_reads_foreign_failure_texts_and_leaves_english_alone():
    shipped = glossary()
    assert "full" in shipped.gloss("550 postfach voll").split()
    assert {"sender", "rejected"} <= set(shipped.gloss("адрес отправителя отклонён").split())
    english = "550 5.1.1 the email account that you tried to reach does not exist (in reply to rcpt to command)"
    assert shipped.gloss(english) == english


@pytest.mark.parametrize(("text", "not_glossed"), [
    ("skupina, kterou se pokoušíte kontaktovat", "mailbox"),     # Polish "konta" (of an account)
    ("die gruppe, die sie kontaktieren möchten", "mailbox"),
    ("pengiriman pesan gagal", "sender"),                      # Indonesian "pengirim" (sender): delivery
    ("inoltre il messaggio", "relay"),                         # Italian "inoltr(are)" (forward): moreover
    ("bugünden itibaren", "reputation"),                       # Turkish "itibar" (reputation): as of
    ("lỗi không xác định", "does"),                            # Vietnamese: "unknown error", no "does not exist"
])
def test_a_common_word_that_only_starts_like_a_term_is_not_glossed(text, not_glossed):
    """Terms dropped after review because they run on into common words of another meaning."""
    assert not_glossed not in glossary().gloss(text).split()


def test_a_term_next_to_such_a_word_is_still_glossed():
    assert "mailbox" in glossary().gloss("konto pocztowe zablokowane").split()


def test_english_lines_of_the_reply_bank_are_left_alone_by_the_foreign_terms():
    """The lexicon left out every term found in two English lines of the bank; what a single line still shows
    is German in a line filed as English (3 of 3 375)."""
    lines = [reply.text for reply in reply_bank() if reply.lang == "en"]
    foreign = Glossary(shipped_lexicon(with_jargon=False))
    glossed = [text for text in lines if foreign.gloss(text.lower()) != text.lower()]
    assert len(glossed) <= 0.001 * len(lines)


@pytest.mark.parametrize(("text", "concept"), [
    ("550 client host [192.0.2.1] listed at uceprotect", "blocked"),
    ("421 you are being throttled", "many"),
    ("550 no ptr record for your ip", "authentication"),
    ("host lookup returned nxdomain", "exist"),
    ("554 message rejected: surbl hit", "content"),
])
def test_english_jargon_reads_as_its_concept(text, concept):
    assert concept in glossary().gloss(text).split()


def test_no_jargon_term_is_a_word_of_the_evaluation_paraphrase():
    """perturb.HELD_OUT rewords dev texts with words the training never shows; a jargon term among them would
    turn that paraphrase back into the concept and make the held-out measure a memorised one."""
    held_out = " ".join(word for words in HELD_OUT.values() for word in words).lower()
    jargon = {term for terms in shipped_lexicon()["terms"]["en"].values() for term in terms}
    assert [term for term in jargon if re.search(rf"\b{re.escape(term)}", held_out)] == []


def test_placeholders_of_the_model_text_are_never_glossed():
    """features.normalise puts zip, zhost, zaddr, znum and zurl in place of IPs, hosts, addresses, numbers and
    URLs before the glossary runs: a term starting one ("zip", an archive) would gloss every IP."""
    for placeholder in ("zip", "zhost", "zaddr", "znum", "zurl"):
        assert glossary().gloss(placeholder) == placeholder


def test_the_glossary_is_compiled_when_a_model_is_loaded_not_on_the_first_bounce():
    glossary.cache_clear()
    BounceClassifier.load()
    assert glossary.cache_info().currsize == 1
