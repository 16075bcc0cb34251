"""Layers import downward: the import graph of ``lpzero_queue``, read with ``ast``, not imported.

Every ``import`` counts, including those inside functions and under ``TYPE_CHECKING``: a pure
module that names a storage type is coupled to storage. The order (docs/architecture.md):

    cli  >  workflows  >  execution  >  storage  >  pure (benchmarks, proxies, the GP of search)

and all SQL (``sqlalchemy``) lives in ``storage/``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "lpzero_queue"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

PURE = (
    "lpzero_queue.benchmarks",
    "lpzero_queue.proxies",
    "lpzero_queue.search",  # the GP: genotype, variation, selection, pruning, generation
    "lpzero_queue.training",  # models, data and the training loop (jobs are storage/workflows)
    "lpzero_queue.config",  # the settings: read by every layer, so it imports none of them
    "lpzero_queue.errors",
    "lpzero_queue.versions",
    "lpzero_queue._lazy",
)
_SERVICES = ("sqlalchemy", "celery", "redis")


def within(module: str, prefix: str) -> bool:
    """Whether ``module`` is ``prefix`` or lies inside the package ``prefix``."""
    return module == prefix or module.startswith(prefix + ".")


@dataclass(frozen=True)
class Rule:
    """Modules matching ``applies`` import nothing within any of ``forbidden``."""

    name: str
    applies: Callable[[str], bool]
    forbidden: tuple[str, ...]


def _is_pure(module: str) -> bool:
    return any(within(module, p) for p in PURE)


RULES = (
    Rule(
        "pure imports no storage, execution, workflows, cli or service client",
        _is_pure,
        tuple(f"{PACKAGE}.{p}" for p in ("storage", "execution", "workflows", "cli")) + _SERVICES,
    ),
    Rule(
        "storage imports no execution, workflows, cli or search",
        lambda m: within(m, "lpzero_queue.storage"),
        tuple(f"{PACKAGE}.{p}" for p in ("execution", "workflows", "cli", "search")),
    ),
    Rule(
        "execution imports no workflows or cli",
        lambda m: within(m, "lpzero_queue.execution"),
        ("lpzero_queue.workflows", "lpzero_queue.cli"),
    ),
    Rule(
        "workflows import no cli",
        lambda m: within(m, "lpzero_queue.workflows"),
        ("lpzero_queue.cli",),
    ),
    Rule(
        "SQL lives in storage",
        lambda m: within(m, PACKAGE) and not within(m, "lpzero_queue.storage"),
        ("sqlalchemy",),
    ),
)


@dataclass(frozen=True)
class Violation:
    """One import that breaks a rule."""

    module: str
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.module} -> {self.imported} ({self.rule})"


def module_name(path: Path, root: Path = ROOT) -> str:
    """The dotted name of the module at ``path`` inside the package at ``root``."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module ``source`` imports, at any depth.

    ``from a.b import c`` yields ``a.b`` (the layer rules are about packages); from the root,
    ``from lpzero_queue import storage`` yields ``lpzero_queue.storage``. Relative imports are
    resolved against ``module`` (a package's ``__init__`` against itself).
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            if base == PACKAGE:
                found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module name -> what it imports, for every module of the package at ``root``."""
    return {
        module_name(path, root): imports_of(
            path.read_text(encoding="utf-8"),
            module_name(path, root),
            is_package=path.name == "__init__.py",
        )
        for path in sorted(root.rglob("*.py"))
    }


def violations(
    graph: Mapping[str, Iterable[str]],
    rules: Iterable[Rule] = RULES,
) -> list[Violation]:
    """Every import in ``graph`` breaking one of ``rules``."""
    rules = list(rules)
    found = []
    for module, imported in sorted(graph.items()):
        for rule in rules:
            if not rule.applies(module):
                continue
            found.extend(
                Violation(module, target, rule.name)
                for target in sorted(imported)
                if any(within(target, f) for f in rule.forbidden)
            )
    return found


def test_layers_import_downward() -> None:
    broken = violations(import_graph())
    assert not broken, "imports against the layer order:\n" + "\n".join(map(str, broken))


def test_graph_reads_imports_inside_functions_and_relative_ones() -> None:
    source = (
        "import redis\n"
        "from . import sibling\n"
        "from ..storage import Repo\n"
        "from .. import execution\n"
        "def f():\n"
        "    if True:\n"
        "        from lpzero_queue.cli import main\n"
        "    import sqlalchemy.orm\n"
    )
    assert imports_of(source, "lpzero_queue.proxies.mod") == {
        "redis",
        "lpzero_queue.proxies",
        "lpzero_queue.storage",
        "lpzero_queue",
        "lpzero_queue.execution",
        "lpzero_queue.cli",
        "sqlalchemy.orm",
    }
    assert imports_of("from .sibling import x", "lpzero_queue.proxies", is_package=True) == {
        "lpzero_queue.proxies.sibling"
    }


def test_checker_reports_each_violation() -> None:
    graph = {
        "lpzero_queue.proxies.maths": {"numpy", "lpzero_queue.storage.reports"},
        "lpzero_queue.search.genotype": {"sqlalchemy.orm"},
        "lpzero_queue.workflows.search_run": {"lpzero_queue.storage"},  # not a pure module
        "lpzero_queue.storage.runs": {"lpzero_queue.search.genotype", "sqlalchemy"},
        "lpzero_queue.execution.tasks": {"lpzero_queue.storage", "lpzero_queue.workflows.x"},
        "lpzero_queue.workflows.report": {"lpzero_queue.execution", "lpzero_queue.cli._app"},
        "lpzero_queue.cli._app": {"lpzero_queue.workflows", "sqlalchemy"},
        "lpzero_queue.storagex": {"lpzero_queue.cli"},  # a prefix, not the package
    }
    got = [str(v) for v in violations(graph)]
    assert got == [
        "lpzero_queue.cli._app -> sqlalchemy (SQL lives in storage)",
        "lpzero_queue.execution.tasks -> lpzero_queue.workflows.x "
        "(execution imports no workflows or cli)",
        "lpzero_queue.proxies.maths -> lpzero_queue.storage.reports "
        "(pure imports no storage, execution, workflows, cli or service client)",
        "lpzero_queue.search.genotype -> sqlalchemy.orm "
        "(pure imports no storage, execution, workflows, cli or service client)",
        "lpzero_queue.search.genotype -> sqlalchemy.orm (SQL lives in storage)",
        "lpzero_queue.storage.runs -> lpzero_queue.search.genotype "
        "(storage imports no execution, workflows, cli or search)",
        "lpzero_queue.workflows.report -> lpzero_queue.cli._app (workflows import no cli)",
    ]


@pytest.mark.parametrize("module", ["lpzero_queue.workflows", "lpzero_queue.storage"])
def test_orchestration_packages_declare_their_exports(module: str) -> None:
    """Packages re-export their public names through an explicit ``__all__``."""
    init = ROOT / module.split(".", 1)[1] / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8"))
    assigned = [t for node in tree.body if isinstance(node, ast.Assign) for t in node.targets]
    assert any(isinstance(t, ast.Name) and t.id == "__all__" for t in assigned)


def _exported_names(init: Path) -> set[str]:
    """The names a package ``__init__`` exports: its ``__all__`` list or its ``_EXPORTS`` keys."""
    names: set[str] = set()
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.List | ast.Dict)):
            continue
        if any(isinstance(t, ast.Name) and t.id in {"__all__", "_EXPORTS"} for t in node.targets):
            items = node.value.elts if isinstance(node.value, ast.List) else node.value.keys
            names.update(i.value for i in items if isinstance(i, ast.Constant))
    return names


def test_workflow_exports_shadow_no_submodule() -> None:
    """An exported name equal to a submodule's name is replaced by the module once that module is
    imported: ``workflows.run_report`` (the proxy report) stays a function because the search run
    report is ``search_report.py``."""
    init = ROOT / "workflows" / "__init__.py"
    submodules = {p.stem for p in init.parent.glob("*.py")}
    exported = _exported_names(init)
    assert "run_report" in exported
    assert not exported & submodules


def package_graph(graph: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """Which top-level packages of ``lpzero_queue`` import which others."""
    out: dict[str, set[str]] = {}
    for module, imported in graph.items():
        source = module.split(".")[1] if "." in module else module
        for target in imported:
            if within(target, PACKAGE) and "." in target:
                name = target.split(".")[1]
                if name != source:
                    out.setdefault(source, set()).add(name)
    return out


def cycle(packages: Mapping[str, set[str]]) -> list[str] | None:
    """One import cycle between packages (as a path), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(packages.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(packages):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_packages_import_each_other_without_cycles() -> None:
    found = cycle(package_graph(import_graph()))
    assert found is None, "package import cycle: " + " -> ".join(found or [])


def test_cycle_finds_a_package_cycle() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}}) is None
