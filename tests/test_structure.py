"""The package's structure, asserted from its source: models own their networks, the
training loop only trains, and no module reaches into another's private names.

Every module under `forecast/` is parsed with `ast`; imports anywhere in a module count
(module level and inside functions), except under `if TYPE_CHECKING:`, which never runs.
A parent package's `__init__` that a submodule implicitly runs is not an edge: importing
`forecast.models.lstm` does run `forecast/models/__init__.py`, which imports the built-in
models to register them, but Python has the package in `sys.modules` before that, and a
fresh-interpreter import of each key module first (the last test) shows the order works.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "forecast"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import `name` runs."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, str | None, int]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:  # only the branch that runs
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, None, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in MODULES:  # `from forecast.models import lstm`
                    found.append((submodule, None, node.lineno))
                else:
                    found.append((base, alias.name, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


IMPORTS = {name: _imports(name) for name in MODULES}
GRAPH = {
    name: sorted({m for m, _, _ in found if m in MODULES and m != name})
    for name, found in IMPORTS.items()
}
MODEL_SIDE = {
    "forecast.training",
    "forecast.checkpoint",
    "forecast.pipeline",
    "forecast.models.registry",
    "forecast.models.torch_base",
    "forecast.models.base",
} | {m for m in MODULES if m.startswith("forecast.models.") and "." not in m[16:]}


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, []):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return components


def test_the_parser_sees_function_level_imports():
    """The checks below are only as good as the parser: it must see lazy imports."""
    lazy = ast.parse("def f():\n    from forecast.io import atomic_write\n")
    assert any(isinstance(n, ast.ImportFrom) for n in ast.walk(lazy))
    assert "forecast.io" in GRAPH["forecast.runs"]  # module level
    assert "forecast.checkpoint" in GRAPH["forecast.runner"]  # inside a method


def test_no_private_name_is_imported_across_modules():
    offences = [
        f"{MODULES[name].relative_to(ROOT)}:{line} imports {imported}.{what}"
        for name, found in IMPORTS.items()
        for imported, what, line in found
        if imported.startswith("forecast") and imported != name
        and what is not None and what.startswith("_")
    ]  # fmt: skip
    assert offences == []


def test_the_model_and_training_modules_import_each_other_in_no_cycle():
    core = {v: [w for w in ws if w in MODEL_SIDE] for v, ws in GRAPH.items() if v in MODEL_SIDE}
    assert {"forecast.models.lstm", "forecast.models.segment"} <= set(core)
    assert _cycles(core) == []


def test_the_package_has_no_import_cycle():
    assert _cycles(GRAPH) == []


def test_the_training_loop_imports_no_model_registry_or_checkpoint_code():
    banned = ("forecast.models", "forecast.checkpoint", "forecast.pipeline")
    found = [m for m, _, _ in IMPORTS["forecast.training"] if m.startswith(banned)]
    assert found == []


def test_the_torch_model_base_lives_beside_the_other_model_bases():
    from forecast.models.torch_base import TorchForecaster

    assert TorchForecaster.__module__ == "forecast.models.torch_base"
    training = ast.parse(MODULES["forecast.training"].read_text())
    classes = {n.name for n in ast.walk(training) if isinstance(n, ast.ClassDef)}
    assert "TorchForecaster" not in classes


def test_no_model_config_inherits_the_training_config():
    """Architecture configs compose `TrainConfig` (a `train` field); none subclasses it."""
    from forecast.models.registry import get_entry, list_models
    from forecast.training import TrainConfig

    subclasses = [
        f"{MODULES[name].relative_to(ROOT)}: class {node.name}"
        for name in MODULES
        if name.startswith("forecast.models")
        for node in ast.walk(ast.parse(MODULES[name].read_text()))
        if isinstance(node, ast.ClassDef)
        and any(ast.unparse(base).endswith("TrainConfig") for base in node.bases)
    ]
    assert subclasses == []
    for name in list_models():
        entry = get_entry(name)
        assert not issubclass(entry.cls.Config, TrainConfig), name
        if entry.kind == "neural":
            assert isinstance(entry.cls.Config().train, TrainConfig), name


@pytest.mark.parametrize("module", ["forecast.training", "forecast.checkpoint"])
def test_each_key_module_imports_first_in_a_fresh_interpreter(module):
    """Import order cannot break: `module` imported before anything else works."""
    code = f"import {module}; import forecast.models; print(len(forecast.models.list_models()))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip()) > 5
