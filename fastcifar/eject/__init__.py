"""`fastcifar eject`: one recipe's whole run as one standalone file, as airbench94.py is.

The file is generated, never kept: its hyperparameters are the recipe's resolved config,
and every other line is the package's own code (collect.py finds what the run reaches from
the driver, driver.py), section by section in the order a reader meets a run: the network,
the optimiser, the recipe, the data, the loop, TTA, timing, then the driver. It imports
torch, numpy and the standard library (Pillow for image files), never fastcifar."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

from ..errors import InputError
from ..recipes import get_recipe, override
from ..version import __version__
from .collect import Collected, Definition, collect, in_package, source
from .recipe import WIDTH, ConfigBlock, RecipeBlock

DRIVER = "fastcifar.eject.driver"
# The sections, each by the modules whose code it holds (the longest prefix decides).
SECTIONS = (
    ("Hyperparameters", ("config",)),
    ("The network", ("fastcifar.models",)),
    ("The optimiser: its updates, schedules and weight averaging", ("fastcifar.optim",)),
    ("The recipe: the network and its training put together", ("fastcifar.recipes",)),
    ("The data: reading it, its subsets, the loader and augmentation",
     ("fastcifar.data", "fastcifar.errors")),
    ("The training loop", ("fastcifar", "fastcifar.train")),
    ("Evaluation with test-time augmentation", ("fastcifar.train.evaluate",)),
    ("Timing", ("fastcifar.train.timing",)),
    ("The run", ("fastcifar.eject",)),
)


def eject(recipe, out: str | Path, overrides: list[str] = ()) -> Path:
    """Write `recipe`'s run (with `overrides`, `--set`'s KEY=VALUE strings) to `out`."""
    out = Path(out)
    out.write_text(eject_source(recipe, overrides))
    return out


def eject_source(recipe, overrides: list[str] = ()) -> str:
    """The text of `recipe`'s standalone file (see the module's docstring)."""
    recipe = get_recipe(recipe)
    if not in_package(type(recipe).__module__):
        raise InputError(f"cannot eject {recipe.name}: only the package's own recipes eject")
    config = override(recipe.config, list(overrides))
    config.validate()
    found = collect([ConfigBlock(config, recipe.config), RecipeBlock(recipe),
                     Definition(DRIVER, source(DRIVER).names["main"])])
    check_names(found)
    runs: list[tuple[int, list]] = []  # the sections, as the blocks' order has them
    for key in ordered(found):
        index = section_of(found.blocks[key].home)
        if not runs or runs[-1][0] != index:
            runs.append((index, []))
        runs[-1][1].append(key)
    parts = [f"{header(recipe, overrides)}\n\n{imports(found)}"]
    for index, keys in runs:
        parts.append(section_title(index, [found.blocks[k].home for k in keys], recipe))
        parts += [found.blocks[k].text(found.dropped.get(k, frozenset())) for k in keys]
    parts.append(f'if __name__ == "__main__":\n    raise SystemExit(main({type(recipe).__name__}(), '
                 f'{type(config).__name__}(), mixed_precision={recipe.mixed_precision!r}))')
    return "\n\n\n".join(parts) + "\n"


def header(recipe, overrides) -> str:
    """The file's docstring: the recipe's own module docstring, then what the file is."""
    told = "".join(f" --set {o}" for o in overrides)
    described = (ast.get_docstring(source(type(recipe).__module__).tree)
                 or f"{recipe.name}: {recipe.summary}")
    what = (f"Written by `fastcifar eject {recipe.name}{told}` (fastcifar {__version__}): "
            f"the hyperparameters, then fastcifar's own code for everything this recipe's run "
            f"calls, as it stands in the modules each section names (a class without the "
            f"methods the run never calls), then the run. Checkpoints, per-example records "
            f"and progress bars are left out; data-parallel runs remain only as arguments "
            f"left None (`group`, `wrap`). It needs torch and numpy, and Pillow for image "
            f"files:")
    return "\n".join([f'"""{described}', "", f"Published: {recipe.target.text}.", "",
                      *textwrap.wrap(what, WIDTH - 8), "",
                      "    python FILE.py --data PATH [--subset N] [--test-subset N] "
                      "[--epochs E]", "                   [--device D] [--seed S]", '"""', "",
                      "from __future__ import annotations"])


def imports(found: Collected) -> str:
    """The imports, standard library first, `import x` before `from x import y`."""
    groups = []
    for standard in (True, False):
        chosen = [i for i in found.imports if i.standard == standard]
        names: dict[str, list[str]] = {}
        for i in sorted(i for i in chosen if i.name):
            names.setdefault(i.module, []).append(i.statement().partition(" import ")[2])
        groups.append("\n".join(sorted(i.statement() for i in chosen if i.name is None)
                                + [f"from {module} import {', '.join(sorted(bound))}"
                                   for module, bound in sorted(names.items())]))
    return "\n\n".join(g for g in groups if g)


def check_names(found: Collected) -> None:
    """Every name the file defines or imports, once: two blocks of one name (from two
    modules) cannot share its namespace."""
    owners: dict[str, set] = {}
    for i in found.imports:
        owners.setdefault(i.bound, set()).add(i.statement())
    for block in found.blocks.values():
        for name in block.names:
            owners.setdefault(name, set()).add(f"{block.home} line {block.order[1]}")
    clashes = {name: sorted(o) for name, o in owners.items() if len(o) > 1}
    if clashes:
        raise InputError(f"cannot eject: names defined twice: {clashes}")


def section_of(home: str) -> int:
    matches = [(len(prefix), i) for i, (_, prefixes) in enumerate(SECTIONS)
               for prefix in prefixes if home == prefix or home.startswith(prefix + ".")]
    if not matches:
        raise InputError(f"cannot eject: {home} is no module of the package")
    return max(matches)[1]


def section_title(index: int, homes: list[str], recipe) -> str:
    files = list(dict.fromkeys(h.replace(".", "/") + ".py" for h in homes if h != "config"))
    told = f" ({', '.join(files)})" if files else f" (`fastcifar recipes --show {recipe.name}`)"
    rule = "# " + "-" * (WIDTH - 2)
    return "\n".join([rule, *textwrap.wrap(SECTIONS[index][0] + told, WIDTH - 2,
                                           initial_indent="# ", subsequent_indent="#   "),
                      rule])


def ordered(found: Collected) -> list:
    """The blocks section by section; in each, every block after those it reads (a
    depth-first walk in source order); then any block moved up before one whose definition
    runs it (a default value, a base class)."""
    blocks = found.blocks
    by_section: dict[int, list] = {}
    for key in sorted(blocks, key=lambda k: blocks[k].order):
        by_section.setdefault(section_of(blocks[key].home), []).append(key)
    result: list = []
    for section, keys in sorted(by_section.items()):
        done: set = set()

        def visit(key):
            if key in done:
                return
            done.add(key)
            for dep in sorted(found.needs[key] | found.first[key], key=lambda k: blocks[k].order):
                if section_of(blocks[dep].home) == section:
                    visit(dep)
            result.append(key)

        for key in keys:
            visit(key)
    moved = True
    while moved:
        moved = False
        for i, key in enumerate(result):
            late = [dep for dep in found.first[key] if result.index(dep) > i]
            if late:
                result.remove(late[0])
                result.insert(i, late[0])
                moved = True
                break
    return result
