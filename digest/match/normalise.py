"""Words for matching: the same normalisation for topics and papers, so they meet half-way.

- case, accents and Unicode compatibility forms folded (``Ｌｏｒａ``, ``Müller`` → ``lora``, ``muller``);
- TeX noise dropped (``$\\mathcal{O}(n)$``, ``\\emph{x}``, braces);
- hyphens, slashes and underscores split words (``KV-cache`` = ``KV cache``), and a hyphenated
  compound also counts as the joined word (``pre-training`` also gives ``pretraining``);
- a light, predictable stemmer: plurals and ``-ed``/``-ing``/``-e`` endings (``scaling laws`` =
  ``scaling law`` = ``scaled law``), and the ``-ize``/``-ization`` family (``quantization`` =
  ``quantized`` = ``quantizing``). Nothing more aggressive: ``general`` never equals ``generation``.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_TEX_COMMAND = re.compile(r"\\[a-zA-Z]+\*?")
# Hyphenated (or slashed) compounds: from a word's start (the look-behind), possessive, so
# that a word without a hyphen is passed over at once.
_COMPOUND = re.compile(r"(?<![a-z0-9])[a-z0-9]++(?:[-‐‑–/][a-z0-9]++)+")
_PARTS = re.compile(r"[a-z0-9]+")
_DOUBLE = re.compile(r"([bcdfgkmnprtvz])\1$|(?<=e)(l)l$")


def fold(text: str) -> str:
    """Lower-case ASCII-ish text: accents and compatibility forms folded, TeX commands dropped."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        text = "".join(ch for ch in text if not unicodedata.combining(ch))
    if "\\" in text:
        text = _TEX_COMMAND.sub(" ", text)
    return text.lower()


# American and British spellings of the -ize family, longest first.
_IZE = ("izations", "isations", "ization", "isation", "izers", "isers", "izing", "ising", "izer", "iser",
        "izes", "ises", "ized", "ised", "ize", "ise")


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """The light stem of one lower-case word (see the module docstring for what it unifies)."""
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix in _IZE:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + "iz"
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("ing") and len(word) >= 7:
        word = _undouble(word[:-3])
    elif word.endswith("ed") and len(word) >= 5:
        word = _undouble(word[:-2])
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    return word


def _undouble(word: str) -> str:
    # running -> run, embedded -> embed, modelling -> model
    match = _DOUBLE.search(word)
    return word[:-1] if match else word


def words(text: str) -> list[str]:
    """The stemmed words of a text, in order (for phrase matching)."""
    return list(map(stem, _PARTS.findall(fold(text))))  # map: no comprehension frame, twice as fast


def words_with_compounds(text: str) -> tuple[list[str], set[str]]:
    """Stemmed words in order, plus the joined forms of hyphenated compounds (``pretrain``)."""
    folded = fold(text)
    sequence = list(map(stem, _PARTS.findall(folded)))
    joined = {stem("".join(_PARTS.findall(c))) for c in _COMPOUND.findall(folded)}
    return sequence, joined


def raw_words(text: str) -> list[str]:
    """Folded but unstemmed words: what a prefix wildcard (``quantiz*``) is compared with."""
    return _PARTS.findall(fold(text))


def term_key(text: str, prefix: bool) -> tuple[tuple[str, ...], bool] | None:
    """How a keyword or query term is compared: its stemmed words (a phrase), or for a prefix
    wildcard its one folded word; None when there is nothing to match."""
    if prefix:
        raw = raw_words(text)
        return ((raw[0],), True) if len(raw) == 1 else None
    sequence = tuple(words(text))
    return (sequence, False) if sequence else None


@lru_cache(maxsize=8_192)  # a few terms, highlighted in thousands of cards
def shown_term_key(shown: str) -> tuple[tuple[str, ...], bool] | None:
    """The key of a term as an explanation shows it: ``quantiz*`` is a prefix wildcard; a
    phrase ending in ``*`` (``"reward model*"`` in a query) is matched as the phrase."""
    text = shown.rstrip("*")
    return term_key(text, shown.endswith("*") and len(raw_words(text)) == 1)


def joined(text: str) -> str:
    """A phrase written as one word (``KV cache`` → ``kvcach``), which also matches it."""
    return stem("".join(raw_words(text)))
