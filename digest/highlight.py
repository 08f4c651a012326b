"""Find where a paper's text says the terms a topic matched, to highlight them.

Uses the matcher's own normalisation (digest.normalise), so that what is highlighted is
what matched: ``KV cache`` lights up "KV-cache" and "KVCache", ``quantization`` lights up
"quantized", ``quantiz*`` any word that starts so.
"""

from __future__ import annotations

import re

from .normalise import raw_words, stem, words

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def spans(text: str, terms: list[str]) -> list[tuple[int, int]]:
    """Non-overlapping (start, end) character ranges of `text` where the terms occur."""
    if not terms or not text:
        return []
    tokens = []  # (start, end, folded raw parts, stems)
    for m in _WORD.finditer(text):
        parts = raw_words(m.group())  # folding may split one token ("Ｔｅｓｔ" stays one; "é" folds)
        if parts:
            tokens.append((m.start(), m.end(), parts, [stem(p) for p in parts]))
    phrases: list[tuple[str, ...]] = []
    joined: set[str] = set()
    prefixes: list[str] = []
    for term in terms:
        if term.endswith("*"):
            raw = raw_words(term.rstrip("*"))
            if len(raw) == 1:
                prefixes.append(raw[0])
            continue
        sequence = tuple(words(term))
        if sequence:
            phrases.append(sequence)
            if len(sequence) > 1:
                joined.add(stem("".join(raw_words(term))))
    # flatten token stems with the token each came from
    flat = [(i, s) for i, (_, _, _, stems) in enumerate(tokens) for s in stems]
    found: list[tuple[int, int]] = []
    for position in range(len(flat)):
        for phrase in phrases:
            n = len(phrase)
            if tuple(s for _, s in flat[position:position + n]) == phrase:
                first, last = flat[position][0], flat[position + n - 1][0]
                found.append((tokens[first][0], tokens[last][1]))
    for start, end, parts, _stems in tokens:
        whole = "".join(parts)
        if stem(whole) in joined or any(p.startswith(prefix) for p in parts for prefix in prefixes):
            found.append((start, end))
    # phrases may span a hyphen between tokens: extend across the separators they cover
    found.sort()
    merged: list[tuple[int, int]] = []
    for start, end in found:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


