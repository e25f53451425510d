"""The package's layout is its architecture: each room imports only from its own or a lower floor."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src/clothing"
# commands on top; models and analysis (peers, neither imports the other) below them; data; the core.
FLOOR = {"commands": 3, "models": 2, "analysis": 2, "data": 1, "": 0}


def room(module: str) -> str:
    """``clothing.models.classifier`` -> ``models``; a module at the package's root -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FLOOR else ""


def imports(path: Path) -> set[str]:
    """Every ``clothing`` module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("clothing"):
            names = [f"{node.module}.{alias.name}" for alias in node.names]
            found |= {name for name in names if module_path(name)} or {node.module}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("clothing")}
    return found


def module_path(module: str) -> Path | None:
    path = REPO / "src" / Path(*module.split("."))
    return next((p for p in (path.with_suffix(".py"), path / "__init__.py") if p.is_file()), None)


MODULES = {".".join(p.relative_to(REPO / "src").with_suffix("").parts): p for p in PACKAGE.rglob("*.py")}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.endswith("__init__")))
def test_a_module_imports_only_its_own_room_or_a_lower_floor(module: str) -> None:
    upward = {
        target
        for target in imports(MODULES[module])
        if room(target) != room(module) and FLOOR[room(target)] >= FLOOR[room(module)]
    }
    assert upward == set()


def test_stages_use_the_library_not_the_commands() -> None:
    for stage in (REPO / "stages").glob("*.py"):
        assert {m for m in imports(stage) if room(m) == "commands"} == set(), stage.name


def test_no_import_cycle() -> None:
    graph = {m: {t for t in imports(p) if t in MODULES} for m, p in MODULES.items()}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module not in done:
            for target in graph[module]:
                visit(target, (*path, module))
            done.add(module)

    for module in graph:
        visit(module, ())
