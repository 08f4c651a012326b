"""Topic queries: a small boolean language, parsed once into a tree.

    query   := or
    or      := and ("OR" and)*
    and     := unary (["AND"] unary)*          adjacent terms are ANDed
    unary   := "NOT" unary | "-" unary | atom
    atom    := "(" query ")" | [field ":"] (WORD | WORD* | "quoted phrase")
    field   := title | abstract | author | category

Examples: ``"speculative decoding" OR (draft AND verif*)``,
``title:"KV cache" NOT survey``, ``author:"Tri Dao" OR category:cs.CL``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

from .errors import DigestError

FIELDS = ("title", "abstract", "author", "category")
MAX_DEPTH = 32  # parentheses and NOTs within one another
MAX_LENGTH = 2000  # characters


class QuerySyntaxError(DigestError, ValueError):
    """A query that cannot be parsed; `position` is 1-based within the query text."""

    def __init__(self, message: str, position: int) -> None:
        self.position = position
        super().__init__(f"{message} at position {position}")


@dataclass(frozen=True)
class Term:
    """A word or phrase, optionally limited to a field; `prefix` for ``word*``."""

    text: str
    field: str | None = None
    prefix: bool = False


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node = Term | Not | And | Or

_TOKEN = re.compile(
    r'\s*(?:(?P<lpar>\()|(?P<rpar>\))|(?P<quote>"(?P<phrase>[^"]*)(?P<closed>"?))'
    r'|(?P<word>[^\s()"]+))'
)


@dataclass(frozen=True)
class _Token:
    kind: str  # ( ) phrase word
    text: str
    position: int


def _tokens(query: str) -> list[_Token]:
    tokens, index = [], 0
    while index < len(query):
        if query[index:].strip() == "":
            break
        match = _TOKEN.match(query, index)
        assert match is not None  # every character is either space, a paren, a quote or a word
        start = match.start(match.lastgroup or 0) + 1
        if match.group("lpar"):
            tokens.append(_Token("(", "(", start))
        elif match.group("rpar"):
            tokens.append(_Token(")", ")", start))
        elif match.group("quote") is not None:
            if not match.group("closed"):
                raise QuerySyntaxError('unclosed quote "', start)
            tokens.append(_Token("phrase", match.group("phrase"), start))
        else:
            tokens.append(_Token("word", match.group("word"), start))
        index = match.end()
    return tokens


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = _tokens(query)
        self.at = 0
        self.depth = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    @contextmanager
    def nested(self, position: int) -> Iterator[None]:
        """One level deeper (parentheses, NOT): a bounded depth, so no query can exhaust the stack."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QuerySyntaxError(f"nested more than {MAX_DEPTH} levels deep", position)
        try:
            yield
        finally:
            self.depth -= 1

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def end_position(self) -> int:
        return len(self.query.rstrip()) + 1

    def parse(self) -> Node:
        if not self.tokens:
            raise QuerySyntaxError("empty query", 1)
        if len(self.query) > MAX_LENGTH:
            raise QuerySyntaxError(f"the query is longer than {MAX_LENGTH} characters", MAX_LENGTH + 1)
        node = self.parse_or()
        token = self.peek()
        if token is not None:
            raise QuerySyntaxError(f"unexpected {token.text!r}", token.position)
        return node

    def parse_or(self) -> Node:
        operands = [self.parse_and()]
        while (token := self.peek()) is not None and token.kind == "word" and token.text == "OR":
            self.take()
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def parse_and(self) -> Node:
        operands = [self.parse_unary()]
        while (token := self.peek()) is not None and not (token.kind == ")" or token.text == "OR"
                                                          and token.kind == "word"):
            if token.kind == "word" and token.text == "AND":
                self.take()
            operands.append(self.parse_unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def parse_unary(self) -> Node:
        token = self.peek()
        if token is None:
            raise QuerySyntaxError("expected a term", self.end_position())
        if token.kind == "word" and (token.text == "NOT" or token.text == "-"):
            self.take()
            with self.nested(token.position):
                return Not(self.parse_unary())
        if token.kind == "word" and token.text.startswith("-") and len(token.text) > 1:
            self.take()
            return Not(self.term(token.text[1:], token.position + 1))
        return self.parse_atom()

    def parse_atom(self) -> Node:
        token = self.take()
        if token.kind == "(":
            if (after := self.peek()) is not None and after.kind == ")":
                raise QuerySyntaxError("empty parentheses", after.position)
            with self.nested(token.position):
                node = self.parse_or()
            closing = self.peek()
            if closing is None or closing.kind != ")":
                raise QuerySyntaxError("missing ')' for the '(' at position " + str(token.position),
                                       closing.position if closing else self.end_position())
            self.take()
            return node
        if token.kind == ")":
            raise QuerySyntaxError("unexpected ')'", token.position)
        if token.kind == "phrase":
            return self.phrase(token.text, None, token.position)
        if token.text in ("AND", "OR"):
            raise QuerySyntaxError(f"{token.text} needs a term on both sides", token.position)
        return self.term(token.text, token.position)

    def term(self, text: str, position: int) -> Node:
        field, _, rest = text.partition(":")
        if rest or text.endswith(":"):
            if field.lower() not in FIELDS:
                raise QuerySyntaxError(f"unknown field {field!r} (use {', '.join(FIELDS)})", position)
            if not rest:  # field: "quoted phrase"
                following = self.peek()
                if following is None or following.kind != "phrase":
                    raise QuerySyntaxError(f"{field}: needs a word or a quoted phrase", position)
                self.take()
                return self.phrase(following.text, field.lower(), following.position)
            return self.word(rest, field.lower(), position + len(field) + 1)
        return self.word(text, None, position)

    def word(self, text: str, field: str | None, position: int) -> Term:
        prefix = text.endswith("*")
        core = text.rstrip("*")
        if "*" in core:
            raise QuerySyntaxError("a wildcard may only end a word (quantiz*)", position + core.index("*"))
        if prefix and len(core) < 3 and field not in ("category",):
            raise QuerySyntaxError("a wildcard needs at least 3 letters before the *", position)
        if not core:
            raise QuerySyntaxError("expected a term", position)
        return Term(core, field, prefix)

    def phrase(self, text: str, field: str | None, position: int) -> Term:
        if not text.strip():
            raise QuerySyntaxError("empty phrase", position)
        return Term(text.strip(), field, False)


@lru_cache(maxsize=65_536)  # the tree is immutable: validation and matching share one parse
def parse_query(query: str) -> Node:
    """The query as a tree; QuerySyntaxError (with a 1-based position) when it is malformed."""
    return _Parser(query).parse()


def terms(node: Node) -> list[Term]:
    """Every term of the tree, in order."""
    if isinstance(node, Term):
        return [node]
    if isinstance(node, Not):
        return terms(node.operand)
    return [t for child in node.operands for t in terms(child)]
