"""The shape of the package: imports run downward only, files and functions stay small.

Each source file is parsed (nothing is imported), so these tests are cheap.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"keras_vit": ROOT / "keras_vit", "keras_vit.kernels": ROOT / "kernels"}

# Lowest first: a module may import its own level and the levels below it, never above.
LEVELS = (
    ("keras_vit.numerics", "keras_vit.variants", "keras_vit.atomic", "keras_vit.imagenet"),
    ("keras_vit.images", "keras_vit.kernels"),
    ("keras_vit.layers",),
    ("keras_vit.checkpoints",),
    ("keras_vit.models",),
    ("keras_vit.data", "keras_vit.analysis"),
    ("keras_vit.training", "keras_vit.serving"),
    ("keras_vit.cli", "keras_vit.train"),
)
MAX_FILE_LINES = 350
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    modules = {}
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([package, *parts])] = path
    return modules


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The keras_vit modules that ``name`` imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            # `from package import module` imports the module itself.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _level(module: str) -> int | None:
    for level, prefixes in enumerate(LEVELS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    return None


def test_every_module_has_a_level():
    assert [m for m in MODULES if m != "keras_vit" and _level(m) is None] == []


def test_no_upward_import():
    upward = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if module != "keras_vit" and target != "keras_vit" and _level(target) > _level(module)
    ]
    assert upward == []
    # The package's face (keras_vit/__init__) is for users and the command line only.
    assert [m for m, t in GRAPH.items() if "keras_vit" in t and _level(m) < len(LEVELS) - 1] == []


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target) :] + [target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in MODULES:
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_files_and_functions_stay_small(module):
    path = MODULES[module]
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_FILE_LINES, f"{path} has too many lines"
    long = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if ast.get_docstring(node) is not None:
                body = body[1:]
            if body and body[-1].end_lineno - body[0].lineno + 1 > MAX_FUNCTION_LINES:
                long.append(f"{node.name} ({body[-1].end_lineno - body[0].lineno + 1} lines)")
    assert long == [], f"{path}: functions over {MAX_FUNCTION_LINES} lines of code"
