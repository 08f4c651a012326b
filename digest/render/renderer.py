"""Templates to e-mail bodies: Jinja → MJML → premailer, and the same compiled once.

The full chain costs tens of milliseconds a digest, nearly all in MJML and premailer,
whose work depends on the template, not on the subscriber. `CompiledRenderer` therefore
runs MJML and premailer once over the template *source* (its Jinja tags pass through both
as text), and keeps the result as a Jinja template: a digest is then one Jinja render.
Values are escaped the way lxml writes them (premailer's last step), so the output is
byte-identical to the full chain; a template that cannot be compiled (Jinja logic outside
<mj-text>/<mj-raw>, say) is detected by rendering a probe both ways, and falls back to
the full chain with a warning rather than rendering differently.
"""

from __future__ import annotations

import difflib
import logging
import re
import textwrap
import traceback
import warnings
from collections.abc import Callable
from functools import lru_cache
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jinja2
from markupsafe import Markup

from ..errors import TemplateError
from .email_context import escape_attribute, escape_text
from .fragments import FragmentCache
from .inlined import inlined

HTML_TEMPLATE = "digest.mjml.j2"
TEXT_TEMPLATE = "digest.txt.j2"
_COMMENT = re.compile(r"\{#.*?#\}", re.DOTALL)
_ATTRIBUTE = re.compile(r"""([\w:-]+)=("[^"]*\{\{[^"]*"|'[^']*\{\{[^']*')""")
_EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_MJML_LEFT = re.compile(r"<(mj-[\w-]+)")  # an MJML tag in the HTML: one MJML did not know, or misplaced
_MJML_ELEMENTS = ["mj-accordion", "mj-accordion-element", "mj-accordion-text", "mj-accordion-title", "mj-button",
                  "mj-carousel", "mj-carousel-image", "mj-column", "mj-divider", "mj-group", "mj-hero", "mj-image",
                  "mj-navbar", "mj-navbar-link", "mj-raw", "mj-section", "mj-social", "mj-social-element",
                  "mj-spacer", "mj-table", "mj-text", "mj-wrapper"]
_INCLUDE = re.compile(r"""\{%-?\s*include\s+["']([^"']+)["']\s*-?%\}""")

# cssutils (through premailer) logs every property it does not know (mso-*, word-break).
logging.getLogger("CSSUTILS").setLevel(logging.CRITICAL)


def builtin_templates() -> Path:
    """The shipped templates: installed as digest/templates; in a checkout, templates/."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "templates"
    return installed if (installed / HTML_TEMPLATE).is_file() else package.parent / "templates"


@lru_cache(maxsize=65_536)
def _escaped(text: str) -> str:
    return escape_text(text)  # the same titles, authors and URLs recur across digests


def _finalize(value: Any) -> Any:
    """Every {{ value }}: markup passes, anything else is escaped as text."""
    if type(value) is str:
        return _escaped(value)
    if isinstance(value, Markup):
        return value
    if value is None:
        return ""
    return escape_text(str(value))


def _attr(value: Any) -> Markup:
    """For values inside attribute quotes (the text escape, and the quote itself)."""
    return _attribute(value) if type(value) is str else _attribute(str(value if value is not None else ""))


@lru_cache(maxsize=16_384)
def _attribute(text: str) -> Markup:
    return Markup(escape_attribute(text))  # a card's label, four times in it, recurs with the paper


@lru_cache(maxsize=16_384)
def _wordwrap(text: str, width: int = 79, break_long_words: bool = True) -> str:
    """Jinja's wordwrap, never at a hyphen: "On-Device" and a URL with a hyphen stay whole
    (a URL broken at its hyphen no longer worked when clicked)."""
    lines = _greedy_lines(text, width) or textwrap.wrap(text, width=width, break_long_words=break_long_words,
                                                        break_on_hyphens=False)
    return "\n".join(lines)


def _greedy_lines(text: str, width: int, first: int = 0) -> list[str] | None:
    """textwrap.wrap's lines (break_on_hyphens=False) for the texts where it comes down to
    filling lines word by word (a first line `first` characters shorter), about 5x faster;
    None for the others. Those are texts of words between single spaces, no word longer than a
    line. `tests/test_render.py` holds the two equal over the samples' titles, abstracts and
    why-lines at several widths, and over generated text."""
    words = text.split(" ")
    if words != text.split() or max(map(len, words)) > width - first:
        return None
    lines: list[str] = []
    line, room = words[0], width - first
    for word in words[1:]:
        if len(line) + 1 + len(word) <= room:
            line += " " + word
        else:
            lines.append(line)
            line, room = word, width
    lines.append(line)
    return lines


def _numbered(text: str, number: int | str, width: int = 79, indent: int = 0) -> str:
    """`(number ~ ". " ~ text)|wordwrap(width)|indent(indent)`, remembered per text and
    width of the number, not per number: a title recurs at every place in a list."""
    prefix = f"{number}. "
    rest = _after_number(text, len(prefix), width, indent) if type(number) is int else None
    return prefix + rest if rest is not None else _indent(_wordwrap(prefix + text, width), indent)


@lru_cache(maxsize=16_384)
def _after_number(text: str, room: int, width: int, indent: int) -> str | None:
    """What follows a number of `room - 2` digits: the same whatever the digits (to the
    wrapping each is a word of the same length, at the first line's start); None where the
    number and its space do not start the first line as they are."""
    prefix = "0" * (room - 2) + ". "
    if not text or text[0].isspace() or "\t" in text or max(map(len, text.split())) + room > width:
        # (a word longer than the first line's room: textwrap breaks it there, not in the whole)
        whole = _indent(_wordwrap(prefix + text, width), indent)  # where wrapping the two apart could differ
        return whole[room:] if whole.startswith(prefix) else None
    return _wrapped_after(text, room, width, indent)[room:]


@lru_cache(maxsize=16_384)
def _wrapped_after(text: str, room: int, width: int, indent: int) -> str:
    lines = _greedy_lines(text, width, room)
    if lines is None:
        lines = textwrap.wrap(text, width=width, initial_indent=" " * room, break_on_hyphens=False)
    else:
        lines[0] = " " * room + lines[0]
    return ("\n" + " " * indent).join(lines)


@lru_cache(maxsize=16_384)
def _indent(text: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    return str(jinja2.filters.do_indent(text, width, first, blank))  # Jinja's, remembered


class _Environment(jinja2.Environment):
    """Jinja, with `a.b` on a dict read as the key first.

    Jinja tries the attribute first: on the dicts an e-mail's values are, every `paper.url`
    raised and caught an AttributeError, a third of a digest's render time. A key takes
    precedence over a dict's method of the same name (no template of ours wants `.items`).
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


def templates_at_hand(folder: Path | None, meanwhile: str) -> Path | None:
    """`folder`, or None (the built-in templates) when it is gone: checked when a run starts, a
    folder lost under a running one is said loudly, and mail goes out meanwhile (a digest held
    back past its grace, a sign-up's confirmation, would be lost). `meanwhile`: what is done."""
    if folder is None or folder.is_dir():
        return folder
    logging.getLogger(__name__).error("templates: no such folder: %s; %s until it is back", folder, meanwhile)
    return None


def environment(directory: Path | None = None, *, html: bool = True) -> jinja2.Environment:
    """Templates from `directory` first (a user's own), then the built-in ones."""
    if directory and not directory.is_dir():  # else every digest would silently be the built-in one
        raise TemplateError(f"templates: no such folder: {directory} (copy the built-in templates/ folder there, "
                            "or remove `templates:` to use the built-in ones)")
    search = [str(directory)] if directory else []
    env = _Environment(
        extensions=[FragmentCache],
        loader=jinja2.FileSystemLoader([*search, str(builtin_templates())]),
        autoescape=False,  # escaping is done by _finalize, the way the HTML serialiser writes
        finalize=_finalize if html else None,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["attr"] = _attr
    env.filters["wordwrap"] = _wordwrap  # the same as Jinja's, remembered: summaries recur
    env.filters["indent"] = _indent
    env.filters["numbered"] = _numbered
    return env


def _located(exc: BaseException, fallback: str) -> str:
    """`file:line: message` for a template error, from Jinja's rewritten traceback."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        where = exc.filename or exc.name or fallback
        return f"{where}:{exc.lineno}: {exc.message}"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2"):
            return f"{frame.filename}:{frame.lineno}: {exc}"
    return f"{fallback}: {exc}"


def _guarded(fn: Callable[..., str], name: str) -> Callable[..., str]:
    def run(*args: Any, **kwargs: Any) -> str:
        try:
            return fn(*args, **kwargs)
        except (jinja2.TemplateError, TypeError, ValueError, AttributeError, KeyError) as exc:
            raise TemplateError(f"template error in {_located(exc, name)}",
                                hint="fix the template, or remove `templates:` to use the built-in ones") from exc
    return run


def rendering(template: jinja2.Template) -> Callable[[dict[str, Any]], str]:
    """`template.render`, without its copying of the globals for every call (a ChainMap read
    twice: ~20 µs of a digest's two renders). The same steps as Jinja's render otherwise,
    errors included: the values over a plain copy of the globals, a Context, the root
    function's pieces joined; an exception rewritten to point at the template's line."""
    env, kept = template.environment, dict(template.globals)

    def render(values: dict[str, Any]) -> str:
        context = env.context_class(env, {**kept, **values}, template.name, template.blocks, globals=kept)
        try:
            return env.concat(template.root_render_func(context))  # type: ignore[attr-defined]
        except Exception:
            env.handle_exception()
            raise  # not reached: handle_exception raises
    return render


def mjml_to_html(mjml: str, name: str = HTML_TEMPLATE) -> str:
    """The MJML as HTML; MJML that cannot be read is the error of template `name` (TemplateError)."""
    from mjml import mjml2html

    try:
        return mjml2html(mjml)
    except Exception as exc:  # noqa: BLE001 - mjml-python raises bare ValueErrors, KeyErrors… on bad markup
        raise TemplateError(f"template error in {name} (or a template it includes): its MJML cannot be "
                            f"read ({exc.__class__.__name__}: {exc})",
                            hint="check that every <mj-…> element is closed and nested as MJML allows "
                                 "(mj-section > mj-column > mj-text…), and that values inside attributes use |attr; "
                                 "or remove `templates:` to use the built-in ones") from None


def inline_css(html: str) -> str:
    """premailer: <style> rules into style attributes; @media rules kept in <style>."""
    import premailer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inlined = premailer.Premailer(
            allow_network=False, keep_style_tags=False, strip_important=False, disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
        ).transform(html, pretty_print=False)
    # premailer drops a doctype not spelled as lxml spells it; without one, clients render in quirks mode
    if html.lstrip()[:9].lower() == "<!doctype" and not inlined.lstrip()[:9].lower() == "<!doctype":
        inlined = "<!doctype html>" + inlined
    return inlined


class NaiveRenderer:
    """The full chain for every digest: Jinja → MJML → premailer."""

    compiled = False
    html_name = HTML_TEMPLATE  # the pair of templates rendered (a subclass may render another)
    text_name = TEXT_TEMPLATE

    def __init__(self, directory: Path | None = None) -> None:
        self.env = environment(directory)
        self.text_env = environment(directory, html=False)
        self.html_template = _load(self.env, self.html_name)
        self.text_template = _load(self.text_env, self.text_name)
        self._text = _guarded(rendering(self.text_template), self.text_name)

    def html(self, values: dict[str, Any]) -> str:
        mjml = _guarded(self.html_template.render, self.html_name)(values)
        return inline_css(mjml_to_html(mjml, self.html_name))

    def text(self, values: dict[str, Any]) -> str:
        return self._text(values)


class CompiledRenderer(NaiveRenderer):
    """MJML and premailer run once over the template; each digest is one Jinja render."""

    compiled = True

    def __init__(self, directory: Path | None = None, probes: list[dict[str, Any]] | None = None) -> None:
        super().__init__(directory)
        self.fallback_reason: str | None = None
        self.compiled_template: jinja2.Template | None = None
        try:
            source: str | None = _expanded(self.env, self.html_name)
        except (jinja2.TemplateError, TemplateError) as exc:  # an include missing…: the full chain says where
            source, self.fallback_reason = None, f"could not read the template ({exc.__class__.__name__}: {exc})"
        unsafe = _unescaped_attributes(source or "")
        if unsafe:  # an error, not a slower path: a title with a quote in it would break every such digest
            raise TemplateError(f"template error in {_where(self.env, unsafe[1])}: the value in "
                                f"{unsafe[0]}={unsafe[1]} needs |attr (write {{{{ … |attr }}}}): a quote in it "
                                "would end the attribute",
                                hint="values in attributes other than href and src go through |attr")
        try:
            page = inlined(source, self.html_name) if source is not None else None
        except TemplateError:
            raise  # MJML that cannot be read: the full chain could not either
        except Exception as exc:  # noqa: BLE001 - any other failure: the full chain still works
            page, self.fallback_reason = None, f"could not compile the template ({exc.__class__.__name__}: {exc})"
        if page is not None and (left := _MJML_LEFT.search(page)):  # MJML copies a tag it does not know
            tag = left.group(1)
            close = difflib.get_close_matches(tag, _MJML_ELEMENTS, n=1)
            raise TemplateError(f"template error in {_where(self.env, '<' + tag)}: <{tag}> is not an MJML element "
                                "where it is, so it would reach the e-mail as it is"
                                + (f"; did you mean <{close[0]}>?" if close and close[0] != tag else ""),
                                hint="see the MJML documentation for the elements and where each may go")
        try:
            if page is not None:
                self.compiled_template = self.env.from_string(_restore_tags(page))
        except Exception as exc:  # noqa: BLE001 - any failure: the full chain still works
            self.fallback_reason = f"could not compile the template ({exc.__class__.__name__}: {exc})"
        render = rendering(self.compiled_template) if self.compiled_template is not None else None
        for probe in probes or []:
            try:
                got = render(probe) if render is not None else None
            except Exception:  # noqa: BLE001 - compiled, it fails: the full chain says why, located, if it fails too
                got = None
            expected = self._full_chain(probe)  # the template's own errors (located) are raised here
            if render is not None and got != expected:
                self.fallback_reason = ("the template renders differently once compiled "
                                        "(Jinja logic outside <mj-text>/<mj-raw>?)")
                break
        if self.fallback_reason:
            self.compiled = False
            self.compiled_template = None
            logging.getLogger(__name__).warning("using the slower full chain: %s", self.fallback_reason)
        elif render is not None:
            self._html = _guarded(render, self.html_name)

    def _full_chain(self, probe: dict[str, Any]) -> str:
        """What the full chain makes of a probe (kept: the same probes come every time)."""
        return inlined(_guarded(self.html_template.render, self.html_name)(probe), self.html_name)

    def html(self, values: dict[str, Any]) -> str:
        if self.compiled_template is None:
            return super().html(values)
        return self._html(values)


def _load(env: jinja2.Environment, name: str) -> jinja2.Template:
    try:
        return env.get_template(name)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template {exc.name!r} not found in {', '.join(env.loader.searchpath)}",  # type: ignore[union-attr]
                            hint="copy the built-in templates/ folder and edit the copy") from exc
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template error in {_located(exc, name)}",
                            hint="fix the template, or remove `templates:` to use the built-in ones") from exc


def _unescaped_attributes(html: str) -> tuple[str, str] | None:
    """The first attribute (name, quoted value) that takes a value without |attr (URLs
    excepted: they are cleaned)."""
    for name, value in _ATTRIBUTE.findall(html):
        if name.lower() in ("href", "src"):
            continue
        if any("|attr" not in expression.replace(" ", "") for expression in _EXPRESSION.findall(value)):
            return name, value
    return None


def _where(env: jinja2.Environment, text: str) -> str:
    """`file:line` of the first template (the user's first) that holds `text`."""
    loader = env.loader
    assert isinstance(loader, jinja2.FileSystemLoader)
    for folder in loader.searchpath:
        for path in sorted(Path(folder).glob("*.j2")):
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            for number, line in enumerate(lines, 1):
                if text in line:
                    return f"{path}:{number}"
    return HTML_TEMPLATE


def _restore_tags(html: str) -> str:
    """Jinja expressions as they were: lxml percent-encodes the spaces of those in URLs."""
    return _EXPRESSION.sub(lambda m: "{{" + unescape(unquote(m.group(1))) + "}}", html)


def _expanded(env: jinja2.Environment, name: str, depth: int = 0) -> str:
    """The template's source with its includes written out (they share the context anyway)."""
    if depth > 10:
        raise TemplateError(f"includes nested too deep at {name}")
    source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
    source = _COMMENT.sub("", source)
    return _INCLUDE.sub(lambda m: _expanded(env, m.group(1), depth + 1), source)
