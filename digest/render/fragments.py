"""`{% cache value %}…{% endcache %}`: a template fragment rendered once per value.

A paper's card reads as the same markup in every digest it appears in (its values are
shared: see email_context.paper_values), so the built-in templates wrap each card in
`{% cache paper.card %}` (the shared values; what is the reader's own, their rating links,
stays outside the fragment); a digest then costs one lookup per card instead of its ~25
expressions. The key is the value's identity, not its contents (hashing a card's values
would cost as much as rendering them): a template author declares with the tag that
the fragment depends on that value alone. The cache holds the value itself, so an id is
never reused while its entry lives; it is emptied when full.
"""

from __future__ import annotations

from typing import Any

from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.parser import Parser
from markupsafe import Markup

FRAGMENTS_KEPT = 20_000
_GET, _KEEP = "_fragment_get", "_fragment_keep"  # not names a template would use


class FragmentCache(Extension):
    tags = {"cache"}

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.fragments: dict[int, tuple[object, Markup]] = {}
        # As filters, not methods: a template calls a filter directly, a method through
        # Context.call, which inspects the callable on every call (~a third of a hit's cost).
        environment.filters[_GET] = self._get
        environment.filters[_KEEP] = self._keep

    def parse(self, parser: Parser) -> nodes.Node | list[nodes.Node]:
        """`{% set c = cached(key) %}{% if c is none %}{% set c %}body{% endset %}{{ keep(key, c) }}
        {% else %}{{ c }}{% endif %}`: plain nodes and one call per hit, not a call block (whose
        caller macro cost more than a card's render)."""
        lineno = next(parser.stream).lineno
        key = parser.parse_expression()
        body = parser.parse_statements(("name:endcache",), drop_needle=True)
        name = "_cached_fragment"
        return [
            nodes.Assign(nodes.Name(name, "store"), nodes.Filter(key, _GET, [], [], None, None)).set_lineno(lineno),
            nodes.If(
                nodes.Test(nodes.Name(name, "load"), "none", [], [], None, None),
                [nodes.AssignBlock(nodes.Name(name, "store"), None, body),
                 nodes.Output([nodes.Filter(key, _KEEP, [nodes.Name(name, "load")], [], None, None)])],
                [],
                [nodes.Output([nodes.Name(name, "load")])],
            ).set_lineno(lineno),
        ]

    def _get(self, value: object) -> Markup | None:
        kept = self.fragments.get(id(value))
        return kept[1] if kept is not None and kept[0] is value else None

    def _keep(self, value: object, text: str) -> Markup:
        if len(self.fragments) >= FRAGMENTS_KEPT:
            self.fragments.clear()
        fragment = Markup(text)  # already escaped: finalize passes it as it is
        self.fragments[id(value)] = (value, fragment)
        return fragment
