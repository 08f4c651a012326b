"""The topic query language, exactly: the tree each query gives, and for each mistake the
message and the 1-based position `digest validate` shows."""

from __future__ import annotations

import pytest

from digest.query import (
    MAX_DEPTH,
    MAX_LENGTH,
    And,
    Not,
    Or,
    QuerySyntaxError,
    Term,
    parse_query,
    terms,
)

T = Term


@pytest.mark.parametrize("query, tree", [
    ("kv", T("kv")),
    ("  kv  ", T("kv")),
    ('"KV cache"', T("KV cache")),
    ('" KV cache "', T("KV cache")),
    ("quantiz*", T("quantiz", prefix=True)),
    ("quantiz**", T("quantiz", prefix=True)),
    ("a b", And((T("a"), T("b")))),
    ("a AND b", And((T("a"), T("b")))),
    ("a and b", And((T("a"), T("and"), T("b")))),  # operators are upper case; "and" is a word
    ("a OR b", Or((T("a"), T("b")))),
    ("a OR b c", Or((T("a"), And((T("b"), T("c")))))),  # AND binds tighter
    ("a b OR c", Or((And((T("a"), T("b"))), T("c")))),
    ("a OR b OR c", Or((T("a"), T("b"), T("c")))),
    ("(a OR b) c", And((Or((T("a"), T("b"))), T("c")))),
    ("NOT a", Not(T("a"))),
    ("- a", Not(T("a"))),
    ("-a", Not(T("a"))),
    ("a -b", And((T("a"), Not(T("b"))))),
    ("NOT NOT a", Not(Not(T("a")))),
    ("NOT (a OR b)", Not(Or((T("a"), T("b"))))),
    ("title:kv", T("kv", "title")),
    ("TITLE:kv", T("kv", "title")),
    ('title:"KV cache"', T("KV cache", "title")),
    ("abstract:quantiz*", T("quantiz", "abstract", True)),
    ('author:"Tri Dao"', T("Tri Dao", "author")),
    ("category:cs.CL", T("cs.CL", "category")),
    ("category:cs*", T("cs", "category", True)),  # a category prefix may be short
    ("-title:survey", Not(T("survey", "title"))),
    ('"reward model*"', T("reward model*")),  # a phrase keeps its text; the matcher reads it as the phrase
    ("title:a:b", T("a:b", "title")),
    ("TAX*", T("TAX", prefix=True)),  # only the * is the wildcard
])
def test_the_tree_of_a_query(query, tree):
    assert parse_query(query) == tree


@pytest.mark.parametrize("query, message, position", [
    ("", "empty query", 1),
    ("   ", "empty query", 1),
    ('"open', 'unclosed quote "', 1),
    ('x" y', 'unclosed quote "', 2),
    ("()", "empty parentheses", 2),
    ("(a", "missing ')' for the '(' at position 1", 3),
    ("a (b", "missing ')' for the '(' at position 3", 5),
    ("(((a)", "missing ')' for the '(' at position 2", 6),
    ("a)", "unexpected ')'", 2),
    ("a  b)", "unexpected ')'", 5),
    ("a AND", "expected a term", 6),
    ("a OR", "expected a term", 5),
    ("NOT", "expected a term", 4),
    ("a NOT", "expected a term", 6),
    ("-", "expected a term", 2),
    ("a -", "expected a term", 4),
    ('"a" AND (', "expected a term", 10),
    ("OR a", "OR needs a term on both sides", 1),
    ("AND", "AND needs a term on both sides", 1),
    ("a OR AND b", "AND needs a term on both sides", 6),
    ("title:", "title: needs a word or a quoted phrase", 1),
    ("title: a", "title: needs a word or a quoted phrase", 1),
    ("author:", "author: needs a word or a quoted phrase", 1),
    ("foo:bar", "unknown field 'foo' (use title, abstract, author, category)", 1),
    ("x foo:bar", "unknown field 'foo' (use title, abstract, author, category)", 3),
    ("qu*", "a wildcard needs at least 3 letters before the *", 1),
    ("*", "a wildcard needs at least 3 letters before the *", 1),
    ("a*b", "a wildcard may only end a word (quantiz*)", 2),
    ("x title:a*b", "a wildcard may only end a word (quantiz*)", 10),
    ("category:c*x", "a wildcard may only end a word (quantiz*)", 11),
    ('""', "empty phrase", 1),
    ('title:""', "empty phrase", 7),
    ('x "  "', "empty phrase", 3),
    ("a OR )", "unexpected ')'", 6),
    ("NOT )", "unexpected ')'", 5),
    ("-foo:bar", "unknown field 'foo' (use title, abstract, author, category)", 2),
    ("a*b*c", "a wildcard may only end a word (quantiz*)", 2),  # the first misplaced *
    ("category:*", "expected a term", 10),
])
def test_each_mistake_has_its_message_and_position(query, message, position):
    with pytest.raises(QuerySyntaxError) as info:
        parse_query(query)
    assert info.value.position == position
    assert str(info.value) == f"{message} at position {position}"


def test_nesting_and_length_are_bounded():
    deep = "(" * MAX_DEPTH + "a" + ")" * MAX_DEPTH
    assert parse_query(deep) == T("a")
    with pytest.raises(QuerySyntaxError, match=f"nested more than {MAX_DEPTH} levels deep at position {MAX_DEPTH + 1}"):
        parse_query("(" + deep + ")")
    nots = "NOT " * MAX_DEPTH + "a"
    assert isinstance(parse_query(nots), Not)
    with pytest.raises(QuerySyntaxError, match=f"nested more than {MAX_DEPTH} levels deep at position "
                                               f"{4 * MAX_DEPTH + 1}"):
        parse_query("NOT " + nots)  # the NOT that goes one level too deep
    assert parse_query("(a) (b) (c)") == And((T("a"), T("b"), T("c")))  # siblings are not depth
    wide = " OR ".join(["(a)"] * 100)
    assert len(parse_query(wide).operands) == 100  # type: ignore[union-attr]
    at_limit = "a" * MAX_LENGTH
    assert parse_query(at_limit) == T(at_limit)
    with pytest.raises(QuerySyntaxError, match=f"longer than {MAX_LENGTH} characters at position {MAX_LENGTH + 1}"):
        parse_query(at_limit + "b")


def test_terms_in_order():
    tree = parse_query('a OR (NOT title:b "c d") -exa*')
    assert terms(tree) == [T("a"), T("b", "title"), T("c d"), T("exa", prefix=True)]
