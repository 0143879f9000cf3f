"""The shape of the package: no import cycle among qepi modules, imports that flow one way
through the layers, and the import-weight contracts (checked in a fresh interpreter).

The import graph is read from the source with ``ast``: module-level imports and imports
inside functions alike (a function-level import does not break a cycle, it hides it).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import qepi

ROOT = Path(qepi.__file__).parent

# Lowest first; a module may import from its own layer and the layers below it only.
LAYERS = [
    ("errors", {"qepi.errors"}),
    ("config/circuits", {"qepi", "qepi.config", "qepi.circuits", "qepi.plotting", "qepi.compat"}),
    ("backends", {"qepi.backends"}),
    ("layers", {"qepi.layers"}),
    ("models", {"qepi.models"}),
    ("data", {"qepi.data"}),  # datasets carry a models.InputSpec
    ("training", {"qepi.training"}),
    ("diagnostics", {"qepi.diagnostics"}),  # training monitors, descriptors, OpenQASM
    ("experiments", {"qepi.experiments"}),
    ("bench", {"qepi.bench"}),  # benchmarks reuse experiments (the expression benchmark)
    ("commands", {"qepi.commands"}),
    ("cli", {"qepi.cli"}),
]


def module_names() -> dict[str, Path]:
    """Every module of the qepi package by dotted name (packages by their own name)."""
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = module_names()


def resolve(name: str) -> str | None:
    """The qepi module an imported name belongs to (``qepi.config.Circuit`` -> ``qepi.config``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """The qepi modules ``module`` imports anywhere in its source (relative imports resolved)."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "qepi" or name.startswith("qepi."):
                target = resolve(name)
                if target is not None and target != module:
                    found.add(target)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def layer_of(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module}: in no layer of {LAYERS}; add its package to LAYERS")


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = 1, path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_graph_sees_imports_inside_functions():
    graph = {"a": {"b"}, "b": {"a"}}
    assert find_cycle(graph) == ["a", "b", "a"]
    source = ast.parse("def f():\n    from qepi.config import Config\n")
    assert any(isinstance(n, ast.ImportFrom) for n in ast.walk(source))  # ast.walk reaches them
    assert "qepi.config" in GRAPH["qepi.layers.embedding"]


def test_no_import_cycle_among_qepi_modules():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_flow_down_the_layers(module):
    upward = sorted(t for t in GRAPH[module] if layer_of(t) > layer_of(module))
    names = [f"{t} ({LAYERS[layer_of(t)][0]})" for t in upward]
    assert not upward, f"{module} ({LAYERS[layer_of(module)][0]}) imports a higher layer: {names}"


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT.parent)
    return set(out.stdout.split())


def test_import_qepi_does_not_import_qiskit():
    modules = _modules_after("import qepi, qepi.layers, qepi.models")
    assert "qepi.layers" in modules
    assert not any(m == "qiskit" or m.startswith("qiskit.") for m in modules)


def test_circuits_do_not_import_torch():
    modules = _modules_after("import qepi.circuits")
    assert "qepi.circuits" in modules and "torch" not in modules


def test_cli_help_and_config_show_do_not_import_the_library(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[backend]\nname = 'exact'\n[run]\nname = 'demo'\n")
    modules = _modules_after(f"from qepi.cli import main, build_parser; build_parser(); "
                             f"main(['config', 'show', {str(config)!r}])")
    assert "qepi.commands.experiments" in modules
    heavy = sorted(m for m in modules if m.split(".")[0] in ("torch", "pennylane", "qiskit", "ray"))
    assert not heavy, heavy[:5]
