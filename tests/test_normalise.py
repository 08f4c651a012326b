"""How words are compared, exactly: folding, the light stemmer, phrases and compounds, and the
keys of terms (what the matcher and the highlighter both use)."""

from __future__ import annotations

import pytest

from digest.match.normalise import (
    fold,
    joined,
    raw_words,
    shown_term_key,
    stem,
    term_key,
    words,
    words_with_compounds,
)


@pytest.mark.parametrize("text, folded", [
    ("Ｌｏｒａ", "lora"), ("Müller", "muller"), ("naïve façade", "naive facade"), ("KV-Cache", "kv-cache"),
    ("\\emph{attention} \\mathcal{O}", " {attention}  {o}"), ("plain", "plain"), ("ÅNGSTRÖM", "angstrom"),
])
def test_fold(text, folded):
    assert fold(text) == folded


@pytest.mark.parametrize("word, stemmed", [
    # plurals, and what must not lose an s
    ("caches", "cach"), ("cache", "cach"), ("laws", "law"), ("studies", "study"), ("classes", "class"),
    ("bus", "bus"), ("analysis", "analysis"), ("sizes", "size"), ("uses", "use"),
    # -ing, -ed, a final -e, doubled consonants
    ("running", "run"), ("modelling", "model"), ("embedded", "embed"), ("stopped", "stop"), ("scaled", "scal"),
    ("pruned", "prun"), ("pruning", "prun"), ("prune", "prun"), ("agreed", "agre"), ("fee", "fee"),
    # the -ize family, American and British
    ("quantization", "quantiz"), ("quantisation", "quantiz"), ("quantized", "quantiz"), ("quantizers", "quantiz"),
    ("tokenizer", "tokeniz"), ("izes", "ize"),
    # nothing more aggressive
    ("attention", "attention"), ("attentive", "attentiv"), ("general", "general"), ("generation", "generation"),
    # short words and words with digits are left alone
    ("use", "use"), ("run", "run"), ("go", "go"), ("data", "data"), ("ai", "ai"), ("x1", "x1"), ("gpt4s", "gpt4s"),
])
def test_stem(word, stemmed):
    assert stem(word) == stemmed


def test_words_phrases_and_compounds():
    assert words("KV-caches for LLMs") == ["kv", "cach", "for", "llm"]
    sequence, compounds = words_with_compounds("pre-training and KV-cache of x/y")
    assert sequence == ["pre", "train", "and", "kv", "cach", "of", "x", "y"]
    assert compounds == {"pretrain", "kvcach", "xy"}
    assert words_with_compounds("plain words only") == (["plain", "word", "only"], set())
    assert raw_words("Pre-Training KV") == ["pre", "training", "kv"]  # folded, not stemmed


@pytest.mark.parametrize("text, prefix, key", [
    ("KV cache", False, (("kv", "cach"), False)),
    ("quantiz", True, (("quantiz",), True)),
    ("Quantiz", True, (("quantiz",), True)),
    ("two words", True, None),  # a wildcard ends one word only
    ("!!", False, None),  # nothing to match
    ("", True, None),
])
def test_term_key(text, prefix, key):
    assert term_key(text, prefix) == key


@pytest.mark.parametrize("shown, key", [
    ("quantiz*", (("quantiz",), True)),
    ("reward model*", (("reward", "model"), False)),  # a query phrase ending in *: the phrase
    ("KV cache", (("kv", "cach"), False)),
    ("LLM", (("llm",), False)),
])
def test_shown_term_key(shown, key):
    assert shown_term_key(shown) == key


def test_joined():
    assert joined("KV cache") == "kvcach" and joined("pre-training") == "pretrain" and joined("LLM") == "llm"
