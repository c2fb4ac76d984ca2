"""Training augmentation and evaluation perturbation: what they change, and that they stay separate."""

from __future__ import annotations

import random
import re

from mailwarden.classifier.augment import PHRASES_DIR, all_wrappers, paraphrase, reply_bank, variant, without_codes
from mailwarden.classifier.corpus import jsonl_records
from mailwarden.classifier.extract import Finding, finding_from_text
from mailwarden.classifier.features import model_text, normalise
from mailwarden.classifier.perturb import HELD_OUT, paraphrased
from mailwarden.classifier.phrasebank import SEEDS, SYNONYMS
from mailwarden.classifier.taxonomy import NOT_A_BOUNCE, default_types

FINDING = Finding(recipient="r@example.com", status="5.2.2", reply_code="552",
                  diagnostic="552 5.2.2 <r@example.com> mailbox full, quota exceeded", stage="rcpt")


def test_held_out_wordings_never_occur_in_the_training_synonym_table():
    training = {normalise(p) for alternatives in SYNONYMS.values() for p in alternatives} | set(SYNONYMS)
    held_out = {normalise(p) for alternatives in HELD_OUT.values() for p in alternatives}
    assert not training & held_out


def test_codes_removed_leaves_no_status_or_reply_code():
    bare = without_codes(FINDING)
    assert (bare.status, bare.reply_code) == (None, None)
    assert not re.search(r"\d\.\d\.\d|\b55\d\b", bare.diagnostic)



def test_the_text_model_reads_the_same_words_with_or_without_codes():
    """Codes speak through the status prior only, so a bounce without codes is read as it was trained."""
    assert model_text(FINDING) == model_text(without_codes(FINDING)) == "xstage_rcpt zaddr mailbox full quota exceeded"


def test_training_paraphrase_changes_wording_but_keeps_codes():
    rng = random.Random(1)
    texts = {paraphrase(FINDING.diagnostic, rng, rate=1.0) for _ in range(20)}
    assert len(texts) > 1 and FINDING.diagnostic not in texts
    assert all("5.2.2" in text for text in texts)


def test_variants_differ_from_the_original():
    rng = random.Random(2)
    assert any(variant(FINDING, rng).diagnostic != FINDING.diagnostic for _ in range(5))


def test_evaluation_paraphrase_replaces_every_listed_phrase():
    reworded = paraphrased(FINDING, random.Random(3)).diagnostic.lower()
    assert "mailbox" not in reworded and "quota" not in reworded and "full" not in reworded
    assert reworded.count("5.2.2") == 1


def test_every_default_category_has_seed_phrasings_in_several_languages():
    for category, (_, _, _, phrases) in SEEDS.items():
        non_ascii = [p for p in phrases if not p.isascii()]
        assert len(phrases) >= 15 and len(non_ascii) >= 2, category


def test_reply_bank_lines_name_known_categories_and_paraphrases_keep_the_category_of_their_reply():
    bank = reply_bank()
    assert {reply.category for reply in bank} == set(default_types()) - {NOT_A_BOUNCE}
    replies = list(jsonl_records(PHRASES_DIR / "replies.jsonl"))
    for path in PHRASES_DIR.glob("paraphrases-*.jsonl"):
        for paraphrase_ in jsonl_records(path):
            assert paraphrase_["category"] == replies[paraphrase_["of"] - 1]["category"], paraphrase_
    assert len(bank) == len(replies) + sum(1 for p in PHRASES_DIR.glob("paraphrases-*.jsonl")
                                           for _ in jsonl_records(p))


def test_a_reason_in_any_mta_boilerplate_stays_within_the_words_the_model_reads():
    """The wrappers teach the model to read past an MTA's lead-in; one that pushed the reason out of the words
    read would teach it the lead-in instead."""
    for template in all_wrappers():
        text = template.format(reason="Zzreason", reply="", status="", addr="user@example.org",
                               host="mx.example.net [192.0.2.1]", stage_cmd="RCPT TO")
        assert "zzreason" in model_text(finding_from_text("user@example.org", text)).split(), template


def test_mta_wrappers_name_their_product_and_language_and_hold_the_reason_once():
    lines = list(jsonl_records(PHRASES_DIR / "wrappers.jsonl"))
    assert len(lines) == len({line["template"] for line in lines}) >= 80
    for line in lines:
        assert set(line) == {"mta", "lang", "template"} and line["template"].count("{reason}") == 1, line
        assert line["mta"] and len(line["lang"]) == 2, line
