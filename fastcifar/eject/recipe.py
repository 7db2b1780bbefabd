"""The two blocks of an ejected file that are the recipe's own: its config as one flat
dataclass (every field with its resolved value, unit and reason; the methods the run calls),
and its classes with only the methods the run calls (its build_model and setup)."""

from __future__ import annotations

import ast
import dataclasses
import re
import textwrap
import types
import typing
from dataclasses import dataclass

from ..errors import InputError
from ..recipes.base import field_notes
from ..recipes.fields import field_domains
from .collect import Import, is_dunder, methods, source, super_calls

WIDTH = 100  # the longest line written


def class_node(cls: type) -> ast.ClassDef:
    node = source(cls.__module__).names.get(cls.__name__)
    if not isinstance(node, ast.ClassDef):
        raise InputError(f"cannot eject: no source for the class {cls.__qualname__}")
    return node


def docstring_lines(cls: type) -> list[str]:
    node = class_node(cls)
    first = node.body[0] if node.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
            first.value.value, str):
        return source(cls.__module__).text(first.lineno, first.end_lineno)
    return []


def type_text(hint) -> str:
    """A field's type as the file states it (the domains are in its comment)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(a) for a in args)
    if origin is not None:
        inner = ", ".join("..." if a is Ellipsis else type_text(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    return "None" if hint is type(None) else getattr(hint, "__name__", repr(hint))


def literal(value) -> str:
    """A value as Python source, strings in double quotes as the package writes them."""
    if isinstance(value, str) and not set(value) & set("\"'\\\n"):
        return f'"{value}"'
    if isinstance(value, tuple):
        return f"({', '.join(map(literal, value))}{',' if len(value) == 1 else ''})"
    return repr(value)


def commented(line: str, comment: str, indent: str = "    ") -> list[str]:
    """`line  # comment`, or the comment on lines of its own above it where too long."""
    if not comment:
        return [line]
    if len(line) + 4 + len(comment) <= WIDTH:
        return [f"{line}  # {comment}"]
    return [f"{indent}# {text}" for text in textwrap.wrap(comment, WIDTH - len(indent) - 2)] + [
        line]


@dataclass(frozen=True)
class ConfigBlock:
    """The recipe's config, resolved, as one dataclass of its own."""

    config: object
    default: object  # the recipe's own config, to mark the values set apart from it
    key = ("config",)
    home = "config"
    order = ("", 0)
    imports = frozenset({Import("dataclasses", "dataclass", "dataclass")})

    @property
    def names(self) -> list[str]:
        return [type(self.config).__name__]

    def _methods(self) -> dict[str, tuple[str, ast.FunctionDef]]:
        """Each method's nearest definition in the config's classes."""
        found = {}
        for cls in type(self.config).__mro__[:-1]:
            for name, node in methods(class_node(cls)).items():
                found.setdefault(name, (cls.__module__, node))
        return found

    def runs(self, dropped: frozenset) -> list[tuple[str, list]]:
        return [(module, [node]) for name, (module, node) in self._methods().items()
                if name not in dropped]

    def defined_with(self) -> list:
        return []

    def droppable(self, attributes: set[str]) -> frozenset:
        return frozenset(name for name in self._methods()
                         if not (is_dunder(name) or name in attributes))

    def text(self, dropped: frozenset) -> str:
        config, cls = self.config, type(self.config)
        hints = typing.get_type_hints(cls)
        notes, domains = field_notes(cls), field_domains(cls)
        changed = [f.name for f in dataclasses.fields(config)
                   if getattr(config, f.name) != getattr(self.default, f.name)]
        what = (f"the recipe's but {', '.join(changed)} (--set)" if changed
                else "the recipe's own")
        lines = ["@dataclass(frozen=True)", f"class {cls.__name__}:",
                 *textwrap.wrap(f'"""The hyperparameters, {what}: each with its unit and '
                                f'reason."""', WIDTH - 4, initial_indent="    ",
                                subsequent_indent="    "), ""]
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            domain = (f"({'each ' if isinstance(value, tuple) else ''}{domains[f.name]})"
                      if f.name in domains else "")
            was = (f"(the recipe's: {literal(getattr(self.default, f.name))})"
                   if f.name in changed else "")
            lines += commented(f"    {f.name}: {type_text(hints[f.name])} = {literal(value)}",
                               " ".join(filter(None, (was, domain, notes.get(f.name)))))
        for name, (module, node) in self._methods().items():
            if name in dropped:
                continue
            if super_calls(node):
                raise InputError(f"cannot eject: {cls.__name__}.{name} calls super(), and the "
                                 f"ejected config is one class")
            lines += ["", *source(module).source_of(node)]
        return "\n".join(lines)


@dataclass(frozen=True)
class RecipeBlock:
    """The recipe's classes, each with only the methods the run calls (the nearest
    definition of each, and those it calls through super()); the leaf class always."""

    recipe: object
    key = ("recipe",)
    order = ("", 0)
    imports = frozenset()

    @property
    def home(self) -> str:
        return type(self.recipe).__module__

    @property
    def chain(self) -> list[type]:
        return list(type(self.recipe).__mro__[:-1])

    @property
    def names(self) -> list[str]:
        return [cls.__name__ for cls in self.chain]

    def live(self, attributes: set[str]) -> dict[type, set[str]]:
        kept = {cls: set() for cls in self.chain}
        for name in {n for cls in self.chain for n in methods(class_node(cls))}:
            if not (is_dunder(name) or name in attributes):
                continue
            for cls in self.chain:
                node = methods(class_node(cls)).get(name)
                if node is not None:
                    kept[cls].add(name)
                    if name not in super_calls(node):
                        break
        return kept

    def droppable(self, attributes: set[str]) -> frozenset:
        live = self.live(attributes)
        return frozenset(f"{cls.__name__}.{name}" for cls in self.chain
                         for name in methods(class_node(cls)) if name not in live[cls])

    def _kept(self, dropped: frozenset) -> list[tuple[type, list[ast.FunctionDef]]]:
        return [(cls, [node for name, node in methods(class_node(cls)).items()
                       if f"{cls.__name__}.{name}" not in dropped]) for cls in self.chain]

    def runs(self, dropped: frozenset) -> list[tuple[str, list]]:
        return [(cls.__module__, nodes) for cls, nodes in self._kept(dropped)]

    def defined_with(self) -> list:
        return []

    def text(self, dropped: frozenset) -> str:
        kept = self._kept(dropped)
        shown = [cls for i, (cls, nodes) in enumerate(kept) if nodes or i == 0]
        own = {name for cls in self.chain for name in methods(class_node(cls))}
        blocks = []
        for cls in reversed(shown):
            nodes = dict(kept)[cls]
            base = next((c.__name__ for c in cls.__mro__[1:] if c in shown), None)
            lines = [f"class {cls.__name__}{f'({base})' if base else ''}:"]
            lines += docstring_lines(cls)
            if cls is shown[0]:
                if not docstring_lines(cls):
                    lines += textwrap.wrap(f'"""{self.recipe.name}: {self.recipe.summary}"""',
                                           WIDTH - 4, initial_indent="    ",
                                           subsequent_indent="    ")
                lines += self._attributes(kept, own)
            for node in nodes:
                lines += ["", *source(cls.__module__).source_of(node)][len(lines) == 1:]
            blocks.append("\n".join(lines))
        # The config classes the methods' annotations name are one class in the file.
        config = type(self.recipe.config)
        text = "\n\n\n".join(blocks)
        for other in config.__mro__[1:-1]:
            text = re.sub(rf"\b{other.__name__}\b", config.__name__, text)
        return text

    def _attributes(self, kept, own: set[str]) -> list[str]:
        """The recipe's values its methods read as self.name: each as a class attribute."""
        read = sorted({n.attr for _, nodes in kept for node in nodes for n in ast.walk(node)
                       if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load)
                       and isinstance(n.value, ast.Name) and n.value.id == "self"
                       and n.attr not in own})
        lines = []
        for name in read:
            value = getattr(self.recipe, name)
            if not isinstance(value, (bool, int, float, str, tuple, type(None))):
                raise InputError(f"cannot eject: the recipe's methods read self.{name}, "
                                 f"which is not a plain value")
            lines.append(f"    {name} = {literal(value)}")
        return lines

