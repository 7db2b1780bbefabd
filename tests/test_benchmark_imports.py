"""benchmarks/ as a harness: its scripts import each other one way, never in a circle, and
the package never imports them (the benchmarks build on fastcifar, not the reverse)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
PACKAGE = ROOT / "fastcifar"


def scripts() -> dict[str, Path]:
    """The benchmarks' modules by the name they import each other by (the scripts put
    benchmarks/ on sys.path)."""
    return {path.stem: path for path in sorted(BENCHMARKS.glob("*.py"))}


def imported(path: Path) -> set[str]:
    """The top-level names of every module `path` imports, anywhere in its file (a function
    that imports late still makes an edge)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_no_benchmark_script_imports_itself_in_a_circle():
    names = scripts()
    graph = {name: imported(path) & set(names) - {name} for name, path in names.items()}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as circle:
        raise AssertionError("circular imports in benchmarks/ (each imported by the next): "
                             + " <- ".join(circle.args[1])) from None


def test_the_ports_machinery_knows_no_family_and_the_families_not_each_other():
    graph = {name: imported(path) for name, path in scripts().items()}
    assert not graph["ports"] & {"airbench_ports", "frontier_ports", "reference_ports"}
    assert "frontier_ports" not in graph["airbench_ports"]
    assert "airbench_ports" not in graph["frontier_ports"]


def test_the_package_imports_no_benchmark_script():
    names = set(scripts()) | {"benchmarks"}
    upward = [f"{path.relative_to(ROOT)} imports {name}"
              for path in sorted(PACKAGE.rglob("*.py")) for name in imported(path) & names]
    assert not upward, "\n".join(upward)
