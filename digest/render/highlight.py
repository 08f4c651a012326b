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


def _tokens(text: str) -> list[tuple[int, int, list[str], list[str]]]:
    """(start, end, folded parts, their stems) of each word; a text recurs in many digests."""
    tokens = []
    for m in _WORD.finditer(text):
        parts = raw_words(m.group())  # folding may split one token, or fold it away
        if parts:
            tokens.append((m.start(), m.end(), parts, [stem(p) for p in parts]))
    return tokens


class _Words:
    """A text's words, found once and looked up by stem for every set of terms highlighted in it."""

    __slots__ = ("tokens", "stems", "owner", "at", "as_one")

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        flat = [(i, s) for i, (_, _, _, stems) in enumerate(self.tokens) for s in stems]
        self.stems = [s for _, s in flat]
        self.owner = [i for i, _ in flat]  # the token each stem came from
        self.at: dict[str, list[int]] = {}  # stem -> its positions among the stems
        for position, s in enumerate(self.stems):
            self.at.setdefault(s, []).append(position)
        self.as_one: dict[str, list[int]] | None = None  # a token's parts joined and stemmed -> tokens

    def written_as_one(self, compound: str) -> list[int]:
        if self.as_one is None:
            self.as_one = {}
            for i, (_, _, parts, _) in enumerate(self.tokens):
                self.as_one.setdefault(stem("".join(parts)), []).append(i)
        return self.as_one.get(compound, [])


@lru_cache(maxsize=16_384)
def _words(text: str) -> _Words:
    return _Words(text)


def spans(text: str, terms: list[str]) -> list[tuple[int, int]]:
    """Non-overlapping (start, end) character ranges of `text` where the terms occur."""
    if not terms or not text:
        return []
    words = _words(text)
    tokens, stems, owner = words.tokens, words.stems, words.owner
    found: list[tuple[int, int]] = []
    prefixes: list[str] = []
    for term in terms:
        key = shown_term_key(term)
        if key is None:
            continue
        sequence, is_prefix = key
        if is_prefix:
            prefixes.append(sequence[0])
            continue
        n = len(sequence)
        for position in words.at.get(sequence[0], ()):
            if n == 1 or tuple(stems[position:position + n]) == sequence:
                # each word on its own: what lies between them ("(KV) cache") is not the term
                found += [tokens[owner[p]][:2] for p in range(position, position + n)]
        if n > 1:  # the phrase written as one word ("KVCache")
            found += [tokens[i][:2] for i in words.written_as_one(joined(term))]
    if prefixes:
        found += [(start, end) for start, end, parts, _ in tokens
                  if any(p.startswith(prefix) for p in parts for prefix in prefixes)]
    return merged(text, found)


def merged(text: str, found: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ranges found, sorted, with those that overlap or have only a space, hyphen or slash
    between them as one: the words of a phrase light up together."""
    found.sort()
    out: list[tuple[int, int]] = []
    for start, end in found:
        if out and (start <= out[-1][1] or _SEPARATORS.fullmatch(text, out[-1][1], start)):
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out
