"""Find where a paper's text says the terms a topic matched, to highlight them.

Uses the matcher's own normalisation (digest.normalise), so that what is highlighted is
what matched: ``KV cache`` lights up "KV-cache" and "KVCache", ``quantization`` lights up
"quantized", ``quantiz*`` any word that starts so.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..match.normalise import joined, raw_words, shown_term_key, stem

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_SEPARATORS = re.compile(r"[\s\-‐‑–/]*")


@lru_cache(maxsize=16_384)
def _tokens(text: str) -> list[tuple[int, int, list[str], list[str]]]:
    """(start, end, folded parts, their stems) of each word; a text recurs in many digests."""
    tokens = []
    for m in _WORD.finditer(text):
        parts = raw_words(m.group())  # folding may split one token, or fold it away
        if parts:
            tokens.append((m.start(), m.end(), parts, [stem(p) for p in parts]))
    return tokens


@lru_cache(maxsize=16_384)
def _flat(text: str) -> list[tuple[int, str]]:
    """Every stem with the index of the token it came from."""
    return [(i, s) for i, (_, _, _, stems) in enumerate(_tokens(text)) for s in stems]


def spans(text: str, terms: list[str]) -> list[tuple[int, int]]:
    """Non-overlapping (start, end) character ranges of `text` where the terms occur."""
    if not terms or not text:
        return []
    tokens = _tokens(text)
    phrases: list[tuple[str, ...]] = []
    compounds: set[str] = set()  # phrases written as one word
    prefixes: list[str] = []
    for term in terms:
        key = shown_term_key(term)
        if key is None:
            continue
        sequence, is_prefix = key
        if is_prefix:
            prefixes.append(sequence[0])
        else:
            phrases.append(sequence)
            if len(sequence) > 1:
                compounds.add(joined(term))
    flat = _flat(text)
    stems = [s for _, s in flat]
    found: list[tuple[int, int]] = []
    for phrase in phrases:
        n, first = len(phrase), phrase[0]
        position = -1
        while True:
            try:
                position = stems.index(first, position + 1)
            except ValueError:
                break
            if n == 1 or tuple(stems[position:position + n]) == phrase:
                # each word on its own: what lies between them ("(KV) cache") is not the term
                found += [tokens[flat[p][0]][:2] for p in range(position, position + n)]
    if compounds or prefixes:
        for start, end, parts, _stems in tokens:
            if (compounds and stem("".join(parts)) in compounds) or any(
                    p.startswith(prefix) for p in parts for prefix in prefixes):
                found.append((start, end))
    # words of a phrase written with a space, hyphen or slash between them light up as one
    found.sort()
    merged: list[tuple[int, int]] = []
    for start, end in found:
        if merged and (start <= merged[-1][1] or _SEPARATORS.fullmatch(text, merged[-1][1], start)):
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


