"""The import structure is plain and points one way: reference <- adapters <- conformance.

Read from the source with ``ast``: every import between normspec's packages is a plain
``import``/``from`` statement (never a module name in a string), the reference imports nothing
else of normspec, adapters import only the reference and their own package, and the CLI modules
do not import each other in a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"reference": "normspec.reference", "adapters": "normspec.adapters",
            "conformance": "normspec.conformance"}
ALLOWED = {
    "normspec.reference": {"normspec.reference"},
    "normspec.adapters": {"normspec.adapters", "normspec.reference"},
    "normspec.conformance": {"normspec.conformance", "normspec.adapters", "normspec.reference",
                             "normspec.spec"},
}


def _modules() -> list[tuple[str, str, Path]]:
    found = []
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            found.append((name, package, path))
    return found


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """Absolute names of the normspec modules ``path`` imports, with line numbers."""
    return _imports_of(name, path.read_text(encoding="utf-8"), path.name == "__init__.py")


def _imports_of(name: str, source: str, is_package: bool) -> list[tuple[str, int]]:
    tree = ast.parse(source)
    here = name if is_package else name.rsplit(".", 1)[0]
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("normspec")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("normspec"):
                out += [(f"{target}.{a.name}" if target in ("normspec",) else target,
                         node.lineno) for a in node.names]
    return out


MODULES = _modules()


def _top(module: str) -> str:
    return ".".join(module.split(".")[:2])


@pytest.mark.parametrize(("name", "package", "path"), MODULES, ids=[m[0] for m in MODULES])
def test_imports_point_one_way(name: str, package: str, path: Path) -> None:
    bad = [(m, line) for m, line in _imports(name, path) if _top(m) not in ALLOWED[package]]
    assert not bad, f"{name} imports {bad}; {package} may import only {sorted(ALLOWED[package])}"


@pytest.mark.parametrize(("name", "package", "path"), MODULES, ids=[m[0] for m in MODULES])
def test_no_normspec_module_is_imported_by_a_string(name: str, package: str, path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden = [node.lineno for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
              and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr))
              and "normspec" in ast.unparse(node.args[0])]
    assert not hidden, f"{name}: import_module('normspec...') at lines {hidden}; import plainly"


def test_cli_subcommands_do_not_import_the_cli_module() -> None:
    cli = {n: p for n, _, p in MODULES if n.startswith("normspec.conformance.cli_")}
    assert cli, "no CLI subcommand modules found"
    for name, path in cli.items():
        targets = {m for m, _ in _imports(name, path)}
        assert "normspec.conformance.cli" not in targets, f"{name} imports the cli module"


def test_the_rules_can_fail() -> None:
    # A reference module importing the runner, relatively or absolutely, breaks the first rule.
    for source in ("from normspec.conformance import runner\n",
                   "from ..conformance import runner\n"):
        imports = [m for m, _ in _imports_of("normspec.reference.probe", source, False)]
        assert [_top(m) for m in imports] == ["normspec.conformance"], source
