"""The package's structure: no import cycles between its modules, and no module (nor a test or a
benchmark) reaching into another module's private names."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "saliency_sanity"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def imported_modules(tree: ast.AST, current: str) -> set[str]:
    """The package's modules a module imports (anywhere in it: lazy imports count too)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith(PACKAGE)}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            for alias in node.names:  # `from package import module` imports the module
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
    return {name for name in found if name in MODULES and name != current}


def import_graph() -> dict[str, set[str]]:
    return {name: imported_modules(ast.parse(path.read_text()), name) for name, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def private_uses(path: Path) -> list[str]:
    """``from saliency_sanity.x import _name`` and ``x._name`` on an imported module of the package."""
    tree = ast.parse(path.read_text())
    modules_bound: set[str] = set()
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    uses.append(f"{path.name}:{node.lineno} imports {node.module}.{alias.name}")
                if f"{node.module}.{alias.name}" in MODULES:
                    modules_bound.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules_bound |= {alias.asname or alias.name.split(".")[0] for alias in node.names
                              if alias.name.startswith(PACKAGE)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules_bound
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            uses.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return uses


def test_the_package_has_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 30 and graph[f"{PACKAGE}.harness"]  # the graph was really read
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_name_is_used_across_modules():
    files = [*MODULES.values(), *sorted((ROOT / "tests").glob("*.py")), *sorted((ROOT / "benchmarks").glob("*.py"))]
    uses = [use for path in files for use in private_uses(path)]
    assert uses == []


def test_the_private_name_check_finds_one(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(f"from {PACKAGE}.runtime import _hidden\nfrom {PACKAGE} import runtime\nruntime._other()\n")
    assert len(private_uses(sample)) == 2


def test_the_figure_step_does_not_import_torch():
    """A figure job reads CSVs and npz files: importing torch (and torchvision) would cost each of the run's
    dozens of figure jobs seconds (about 6 s of its 10 s start on the reference machine)."""
    import subprocess
    import sys

    code = ("import sys; import saliency_sanity.cli, saliency_sanity.figures; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'captum')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
