"""The package's architecture: imports run one way, down the layers of the data flow,
and nothing imports in a circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fastcifar"

# Lowest first. A module may import from its own layer and the layers below it. Each layer
# is a package or, at the ground and the top, a module of the package's root: no module
# of a package sits in a layer other than its package's.
LAYERS = [
    ("fastcifar.errors", "fastcifar.files", "fastcifar.stats", "fastcifar.version"),
    ("fastcifar.data",),
    ("fastcifar.models",),
    ("fastcifar.optim",),
    ("fastcifar.recipes",),
    ("fastcifar.train",),
    ("fastcifar.bench",),
    ("fastcifar.report",),
    ("fastcifar.sessions",),  # sessions and what drives many: above train, bench and report
    ("fastcifar.api", "fastcifar.cli", "fastcifar.eject", "fastcifar.__main__", "fastcifar"),
]


def layer_of(module: str) -> int:
    """The layer of the longest prefix that names the module."""
    best, depth = None, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > depth:
                best, depth = i, len(prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """The fastcifar modules `name` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("fastcifar")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("fastcifar"):
                continue
            known = modules()
            for alias in node.names:  # `from . import x` may name a submodule
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return found


def test_every_layer_is_a_package_or_a_root_module():
    for prefixes in LAYERS:
        for prefix in prefixes:
            parts = prefix.split(".")
            assert len(parts) <= 2, f"{prefix}: a module inside a package has a layer of its own"


def test_imports_run_down_the_layers():
    upward = []
    for name, path in modules().items():
        for target in imports(name, path):
            if layer_of(target) > layer_of(name):
                upward.append(f"{name} (layer {layer_of(name)}) imports {target} "
                              f"(layer {layer_of(target)})")
    assert not upward, "\n".join(upward)


def test_no_module_imports_itself_in_a_circle():
    graph = {name: imports(name, path) - {name} for name, path in modules().items()}
    # A package's __init__ gathers its modules: an edge into it from a module inside it is
    # the usual Python layout, not a circle of logic, so only edges between modules count.
    done, on_path = set(), []

    def visit(node):
        if node in on_path:
            raise AssertionError("circular imports: " + " -> ".join(
                on_path[on_path.index(node):] + [node]))
        if node in done:
            return
        on_path.append(node)
        for target in graph.get(node, ()):
            if not (node.startswith(target + ".")):  # a module importing its own package
                visit(target)
        on_path.pop()
        done.add(node)

    for node in graph:
        visit(node)


def test_every_module_imports_in_a_fresh_interpreter_top_layer_first():
    order = [m for m in sorted(modules(), key=layer_of, reverse=True)
             if m != "fastcifar.__main__"]  # which runs the command
    code = "import importlib\nfor m in %r:\n    importlib.import_module(m)\n" % order
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_no_module_is_over_350_lines_and_the_command_modules_under_250():
    lengths = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {n: k for n, k in lengths.items() if n.startswith("fastcifar.cli") and k >= 250} == {}
    assert {n: k for n, k in lengths.items() if k > 350} == {}
