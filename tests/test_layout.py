"""The package reads like the pipeline: gather → match → render → deliver → subscribe → web, each stage
importing only the stages before it (plus the base: models, errors, config, query, ids, kept, readfile, store),
and SQL, SMTP and HTTP each kept in their one place."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "digest"
STAGES = ["gather", "match", "render", "deliver", "subscribe", "web"]
BASE = {"models", "errors", "config", "query", "ids", "kept", "readfile", "store"}
TOP = {"cli", "checks", "daemon", "demo", "__main__", "__init__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module the file imports, at the top or inside a function, as absolute names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                found.add(target)
                if not node.module:  # from . import a, b
                    found |= {f"{target}.{alias.name}" for alias in node.names}
            else:
                found.add(node.module or "")
    return found


def part_of(module: str) -> str | None:
    """The stage, base or top-level name a digest module belongs to."""
    parts = module.split(".")
    if parts[0] != "digest":
        return None
    if len(parts) == 1:
        return "__init__"
    return parts[1]


def rank(part: str) -> int:
    if part in BASE:
        return 0
    if part in STAGES:
        return 1 + STAGES.index(part)
    return len(STAGES) + 1  # cli, daemon, demo: may use everything


def violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, imported in sorted(graph.items()):
        own = part_of(module)
        assert own is not None
        for target in sorted(imported):
            other = part_of(target)
            if other is None or other == own:
                continue
            if rank(other) > rank(own) or (rank(own) == 0 and other not in BASE):
                found.append(f"{module} imports {target} ({other} comes after {own})")
    return found


def project_graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def test_the_folder_listing_shows_the_stages():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert set(STAGES) | {"store"} <= folders
    for name in [*STAGES, "store"]:
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
        assert doc and "\n" not in doc.strip(), f"{name}/__init__.py needs a one-line docstring"
    loose = {p.stem for p in PACKAGE.glob("*.py")}
    assert loose <= BASE | TOP, f"modules outside the stages: {sorted(loose - BASE - TOP)}"


def test_each_stage_imports_only_stages_before_it():
    assert violations(project_graph()) == []


def test_the_check_catches_a_stage_importing_a_later_one():
    graph = project_graph()
    graph["digest.match.matcher"] = graph["digest.match.matcher"] | {"digest.render.compose"}
    graph["digest.store.ledger"] = graph["digest.store.ledger"] | {"digest.deliver.smtp"}
    assert violations(graph) == [
        "digest.match.matcher imports digest.render.compose (render comes after match)",
        "digest.store.ledger imports digest.deliver.smtp (deliver comes after store)",
    ]


def test_sql_smtp_and_http_each_stay_in_their_place():
    graph = project_graph()

    def users(library: str) -> set[str]:
        return {m for m, imported in graph.items() if any(i == library or i.startswith(library + ".") for i in imported)}

    assert all(m.startswith("digest.store") for m in users("sqlalchemy")), users("sqlalchemy")
    assert users("smtplib") == {"digest.deliver.smtp"}
    assert all(m.startswith("digest.gather") for m in users("urllib3")), users("urllib3")
    assert all(m.startswith("digest.web") for m in users("http.server")), users("http.server")
    assert not users("sqlalchemy") & users("smtplib")


def test_every_package_is_installed():
    """pyproject.toml lists the packages to install: a new stage left out would be missing
    from a non-editable install (`pip install .`) while the tests, run from the checkout, pass."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {module_name(p.parent / "__init__.py") for p in PACKAGE.rglob("__init__.py")}
    assert found - {"digest.templates"} <= listed, sorted(found - listed)
