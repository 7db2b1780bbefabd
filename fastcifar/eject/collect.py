"""Collecting the package's own source for one standalone file: from a few blocks (the
driver's functions, the recipe, its config), every top-level function, class and constant
their code reads, found by name in its module and through that module's imports, with the
third-party imports they need; each class without the methods nothing calls (and without
checkpointing)."""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from torch import nn

from ..errors import InputError

PACKAGE = "fastcifar"
# A speed run saves nothing to resume from: the methods that save and restore a run's state
# are left out of every class but a network (whose state_dict weight averaging reads).
CHECKPOINT_METHODS = frozenset({"state_dict", "load_state_dict", "__setstate__"})


@dataclass(frozen=True)
class Source:
    """A module's source: its lines, its syntax tree, the statement binding each top-level
    name, and the package its relative imports start from."""

    name: str
    path: Path
    lines: tuple[str, ...]
    tree: ast.Module
    names: dict

    @property
    def package(self) -> str:
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]

    def text(self, start: int, end: int) -> list[str]:
        """Lines start..end (1-based, inclusive)."""
        return list(self.lines[start - 1:end])

    def first_line(self, node: ast.stmt) -> int:
        """Where `node` starts: its first decorator, or the comment lines just above it."""
        line = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", ()))])
        while line > 1 and self.lines[line - 2].strip().startswith("#"):
            line -= 1
        return line

    def source_of(self, node: ast.stmt) -> list[str]:
        return self.text(self.first_line(node), node.end_lineno)


@cache
def source(module: str) -> Source:
    path = Path(inspect.getsourcefile(importlib.import_module(module)))
    text = path.read_text()
    tree = ast.parse(text)
    names = {}
    for node in tree.body:
        for name in bound_at_top(node):
            names[name] = node
    return Source(module, path, tuple(text.splitlines()), tree, names)


def bound_at_top(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [a.asname or a.name.split(".")[0] for a in node.names]
    return []


def in_package(module: str) -> bool:
    return module == PACKAGE or module.startswith(PACKAGE + ".")


@dataclass(frozen=True, order=True)
class Import:
    """A third-party or standard-library name: `import module [as bound]`, or (with `name`)
    `from module import name [as bound]`."""

    module: str
    name: str | None
    bound: str

    def statement(self) -> str:
        if self.name is None:
            alias = "" if self.bound == self.module.split(".")[0] else f" as {self.bound}"
            return f"import {self.module}{alias}"
        alias = "" if self.bound == self.name else f" as {self.bound}"
        return f"from {self.module} import {self.name}{alias}"

    @property
    def standard(self) -> bool:
        return self.module.split(".")[0] in sys.stdlib_module_names


def resolve(module: str, name: str):
    """What `name` read in `module`'s code is: a Definition, an Import, or None (a builtin
    or a local)."""
    src = source(module)
    node = src.names.get(name)
    if node is None:
        return None
    if isinstance(node, ast.Import):
        alias = next(a for a in node.names if (a.asname or a.name.split(".")[0]) == name)
        if in_package(alias.name):
            raise InputError(f"cannot eject: {module} imports the module {alias.name}")
        return Import(alias.name, None, name)
    if isinstance(node, ast.ImportFrom):
        alias = next(a for a in node.names if (a.asname or a.name) == name)
        target = absolute(src, node)
        if not in_package(target):
            return Import(target, alias.name, name)
        found = resolve(target, alias.name)
        if not isinstance(found, Definition) or name != alias.name:
            raise InputError(f"cannot eject: {module} imports {target}.{alias.name}"
                             f"{' as ' + name if name != alias.name else ''}, not a function, "
                             f"class or constant of the package under its own name")
        return found
    return Definition(module, node)


def absolute(src: Source, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module
    base = src.package.split(".")
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def reads(nodes, module: str) -> tuple[set[str], set[str]]:
    """(the free names the nodes' code reads, the attribute names it reads), annotations
    aside: the file is `from __future__ import annotations`, so they are never evaluated."""
    loads, bound, attributes = set(), set(), set()
    # A class's functions, and those given: their names bind no name in the code read.
    methods_of = {n for n in nodes if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            bound |= {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs,
                                      args.vararg, args.kwarg) if a is not None}
            stack += [*args.defaults, *(d for d in args.kw_defaults if d is not None)]
            if isinstance(node, ast.Lambda):
                stack.append(node.body)
            else:
                if node not in methods_of:
                    bound.add(node.name)
                stack += [*node.decorator_list, *node.body]
            continue
        if isinstance(node, ast.AnnAssign):
            stack += [node.target] + ([node.value] if node.value is not None else [])
            continue
        if isinstance(node, ast.ClassDef):
            bound.add(node.name)
            methods_of |= set(methods(node).values())
        elif isinstance(node, ast.Name):
            (loads if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.Attribute):
            attributes.add(node.attr)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.ImportFrom) and (
                    node.level or in_package(node.module or "")):
                raise InputError(f"cannot eject: {module} imports from the package inside a "
                                 f"function (line {node.lineno})")
            bound |= set(bound_at_top(node))
        stack.extend(ast.iter_child_nodes(node))
    return loads - bound, attributes


def at_definition(node: ast.stmt) -> list[ast.AST]:
    """What runs when `node` itself runs: decorators, bases, defaults, a class body's
    statements, an assignment's value (not a function's body)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return [*node.decorator_list, *node.args.defaults,
                *(d for d in node.args.kw_defaults if d is not None)]
    if isinstance(node, ast.ClassDef):
        return [*node.decorator_list, *node.bases, *(k.value for k in node.keywords),
                *(part for statement in node.body for part in at_definition(statement))]
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.Expr)):
        return [node.value] if node.value is not None else []
    return [node]


def methods(node: ast.ClassDef) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in node.body if isinstance(n, (ast.FunctionDef,
                                                           ast.AsyncFunctionDef))}


def is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def super_calls(node: ast.AST) -> set[str]:
    """The methods `node` calls as super().name."""
    return {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Call) and isinstance(n.value.func, ast.Name)
            and n.value.func.id == "super"}


@dataclass(frozen=True)
class Definition:
    """A top-level function, class or constant of a module of the package."""

    module: str
    node: ast.stmt

    @property
    def key(self) -> tuple:
        return (self.module, self.node.lineno)

    @property
    def home(self) -> str:
        """The module whose section of the file it goes in."""
        return self.module

    @property
    def order(self) -> tuple:
        """Its place among the blocks that read none of each other."""
        return self.key

    @property
    def names(self) -> list[str]:
        return bound_at_top(self.node)

    def runs(self, dropped: frozenset) -> list[tuple[str, list]]:
        """(module, nodes) of its code that runs, `dropped` methods aside."""
        if isinstance(self.node, ast.ClassDef):
            return [(self.module, [n for n in self.node.body
                                   if getattr(n, "name", None) not in dropped]
                     + [*self.node.decorator_list, *self.node.bases])]
        return [(self.module, [self.node])]

    def defined_with(self) -> list[tuple[str, list]]:
        return [(self.module, at_definition(self.node))]

    def droppable(self, attributes: set[str]) -> frozenset:
        """Its methods no code calls (by name, as a network's forward is not), and its
        checkpointing."""
        if not isinstance(self.node, ast.ClassDef):
            return frozenset()
        cls = getattr(importlib.import_module(self.module), self.node.name)
        outer = [base for base in cls.__mro__[1:] if not in_package(base.__module__)]
        network = issubclass(cls, nn.Module)
        return frozenset(
            name for name in methods(self.node)
            if (name in CHECKPOINT_METHODS and not network) or not (
                is_dunder(name) or name in attributes
                or any(hasattr(base, name) for base in outer if base is not object)))

    def text(self, dropped: frozenset) -> str:
        src = source(self.module)
        lines = src.source_of(self.node)
        start = src.first_line(self.node)
        left_out = [m for m in methods(self.node).values() if m.name in dropped] if isinstance(
            self.node, ast.ClassDef) else []
        for method in sorted(left_out, key=lambda m: -m.lineno):
            del lines[src.first_line(method) - start:method.end_lineno - start + 1]
        return "\n".join(single_blank_lines(lines))


def single_blank_lines(lines: list[str]) -> list[str]:
    kept = []
    for line in lines:
        if not (line.strip() == "" and kept and kept[-1].strip() == ""):
            kept.append(line)
    return kept


@dataclass
class Collected:
    blocks: dict  # key -> block
    imports: set
    needs: dict  # key -> the keys of the blocks its code reads
    first: dict  # key -> the keys of the blocks that must be defined before it
    dropped: dict  # key -> its methods left out


def collect(seeds: list) -> Collected:
    """Every block the seeds reach, each class with only the methods that code reached
    calls by name: a method called grows what is reached, so until nothing more is."""
    attributes: set[str] = set()
    while True:
        found = _closure(seeds, attributes)
        now = set()
        for key, block in found.blocks.items():
            for module, nodes in block.runs(found.dropped[key]):
                now |= reads(nodes, module)[1]
        if now == attributes:
            return found
        attributes = now


def _closure(seeds: list, attributes: set[str]) -> Collected:
    found = Collected({}, set(), {}, {}, {})
    queue = list(seeds)
    while queue:
        block = queue.pop()
        if block.key in found.blocks:
            continue
        found.blocks[block.key] = block
        found.imports |= getattr(block, "imports", frozenset())
        dropped = found.dropped[block.key] = block.droppable(attributes)
        for what, parts in (("needs", block.runs(dropped)),
                            ("first", block.defined_with())):
            keys = getattr(found, what).setdefault(block.key, set())
            for module, nodes in parts:
                for name in sorted(reads(nodes, module)[0]):
                    target = resolve(module, name)  # (None: a builtin or a local)
                    if isinstance(target, Import):
                        found.imports.add(target)
                    elif target is not None:
                        keys.add(target.key)
                        queue.append(target)
    return found
