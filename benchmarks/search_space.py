"""What benchmarks/search.py searches: the space (a recipe's fields, as choices or ranges),
read from `--space` text or a JSON file and checked against the recipe's config before any
run, and the candidates drawn from it, seeded.

In JSON each key is a dimension: a list of choices, or {"low", "high", "log"} for a range.
A choice may be a bundle of fields that must move together (an object, its optional
"label" naming it in the table), e.g. a run's epochs with the epoch its lr decay ends:

    {"schedule": [{"label": "E1", "epochs": 8.875, "decay_epochs": 8.5},
                  {"label": "-0.25", "epochs": 8.625, "decay_epochs": 8.25}],
     "whiten_images": [5000, 2000], "muon_lr": {"low": 0.2, "high": 0.25}}

The `--space` text is `fastcifar tune`'s (`muon_lr=0.2:0.25,whiten_images=5000|2000`;
fastcifar/sessions/tune_space.py), which has no bundles or tuple values.
"""

from __future__ import annotations

import itertools
import json
import math
import typing
from pathlib import Path

import numpy as np

from fastcifar.errors import InputError
from fastcifar.recipes.fields import checked_values, with_values
from fastcifar.sessions.tune_space import Dimension, parse_space

LABEL = "label"  # a bundle's name in the table, not a field

# Issue 39's ideas for fable94_e1, as a space (E1's own value first in each): its 32 px
# phase cut by 0.25, 0.5 or 0.75 epochs, the decay still ending 0.375 epochs before the end
# (Muon's renormalisation schedule and its target magnitude run over the same decay, so
# they follow the shorter curriculum); the 24 and 28 px phases longer; fewer images for the
# whitening (its init is on Fulcrum's clock); hiverge's selective TTA (off Fulcrum's clock:
# it matters with --clock full); Muon's lr; a longer or denser lookahead tail.
DEFAULT_SPACE = {
    "schedule": [{LABEL: "E1", "epochs": 8.875, "decay_epochs": 8.5},
                 {LABEL: "32px-0.25", "epochs": 8.625, "decay_epochs": 8.25},
                 {LABEL: "32px-0.5", "epochs": 8.375, "decay_epochs": 8.0},
                 {LABEL: "32px-0.75", "epochs": 8.125, "decay_epochs": 7.75}],
    "progressive_sizes": [[24, 24, 24, 28, 28, 28], [24, 24, 24, 24, 28, 28],
                          [24, 24, 24, 28, 28, 28, 28]],
    "whiten_images": [5000, 2000, 960],
    "tta_fraction": [1.0, 0.25],
    "muon_lr": [0.2255, 0.205, 0.245],
    "lookahead": [{LABEL: "E1", "lookahead_tail": 8, "lookahead_every": 4},
                  {LABEL: "tail16", "lookahead_tail": 16, "lookahead_every": 4},
                  {LABEL: "every2", "lookahead_tail": 8, "lookahead_every": 2}],
}
# The rehearsal's (tests, --rehearsal): a bundle, a tuple and a plain field, on runs of
# one epoch.
REHEARSAL_SPACE = {
    "schedule": [{LABEL: "one", "epochs": 1.0, "decay_epochs": 1.0},
                 {LABEL: "short", "epochs": 0.75, "decay_epochs": 0.75}],
    "progressive_sizes": [[24], [28]],
    "tta_fraction": [1.0, 0.25],
}


def read_space(text: str | None, file: str | None, config, default: dict) -> list[Dimension]:
    """The dimensions of `--space` text, or of a JSON file, or of `default`."""
    if text and file:
        raise InputError("give --space or --space-file, not both")
    if text:
        return parse_space(text, "", config)
    if file:
        try:
            spec = json.loads(Path(file).read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"--space-file {file}: not a readable JSON space ({e})") from None
        return space_from_json(spec, config, f"--space-file {file}")
    return space_from_json(default, config, "the default space")


def space_from_json(spec, config, source: str) -> list[Dimension]:
    """A JSON space's dimensions, every choice and both ends of every range checked as a
    run would check them (the config's own checks too)."""
    if not isinstance(spec, dict) or not spec:
        raise InputError(f"{source}: expected an object of dimensions, e.g. "
                         f'{{"whiten_images": [5000, 2000]}}')
    hints = typing.get_type_hints(type(config))
    dims = []
    for name, value in spec.items():
        where = f"{source}: {name}"
        if isinstance(value, list) and value:
            choices = tuple(choice_value(config, name, c, where) for c in value)
            if len(set(map(shown, choices))) != len(choices):
                raise InputError(f"{where}: a choice is given twice")
            dims.append(Dimension(name, choices=choices))
        elif isinstance(value, dict) and {"low", "high"} <= set(value) <= {"low", "high", "log"}:
            if hints.get(name) not in (int, float):
                raise InputError(f"{where}: a range needs a numeric field of "
                                 f"{type(config).__name__}")
            low, high = (checked(config, {name: value[k]}, where)[name] for k in ("low", "high"))
            log = bool(value.get("log", False))
            if not low < high or (log and low <= 0):
                raise InputError(f"{where}: expected low < high" +
                                 (" and low > 0 on a log scale" if log else ""))
            dims.append(Dimension(name, low, high, log))
        else:
            raise InputError(f"{where}: expected a list of choices or "
                             f'{{"low": ..., "high": ..., "log": false}}')
    return dims


def choice_value(config, name: str, value, where: str):
    """One choice: a bundle (a dict of fields, and a label) or a value of the field `name`."""
    if isinstance(value, dict):
        fields = {k: v for k, v in value.items() if k != LABEL}
        if not fields:
            raise InputError(f"{where}: a bundle {value} names no field")
        return {**({LABEL: str(value[LABEL])} if LABEL in value else {}),
                **checked(config, fields, where)}
    return checked(config, {name: value}, where)[name]


def checked(config, values: dict, where: str) -> dict:
    """The values typed as their fields (tuples as tuples), refused if a run would refuse
    them."""
    values = checked_values(config, values, where)
    try:
        with_values(config, values, where).validate()
    except InputError as e:
        raise InputError(f"{where}: {e}") from None
    return values


def overrides(dims: list[Dimension], values: dict) -> dict:
    """The fields a candidate's values set (a bundle's fields, or the field itself)."""
    fields = {}
    for dim in dims:
        value = values[dim.name]
        fields.update({k: v for k, v in value.items() if k != LABEL}
                      if isinstance(value, dict) else {dim.name: value})
    return fields


def shown(value) -> str:
    """A value as the table shows it: a bundle by its label (or its fields)."""
    if isinstance(value, dict):
        return value.get(LABEL) or ",".join(f"{k}={shown(v)}" for k, v in value.items())
    if isinstance(value, (tuple, list)):
        return "x".join(map(str, value))
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def space_record(dims: list[Dimension]) -> dict:
    """The space as JSON (a study's record of it, compared when it is continued)."""
    return {d.name: jsonable(list(d.choices)) if d.choices else
            {"low": d.low, "high": d.high, "log": d.log} for d in dims}


def jsonable(value):
    """Tuples as lists, as JSON reads them back: a value recorded compares equal to it."""
    return json.loads(json.dumps(value))


def draw_candidates(dims: list[Dimension], config, count: int, seed: int) -> list[dict]:
    """`count` candidates, each {"values": {dimension: value}, "overrides": {field: value}}:
    every combination where the choices make no more than `count` (ranges aside), else
    drawn at random by `seed` (ranges uniformly, or log-uniformly), without repeats. A
    combination the config refuses (checked as a run would), or that is the base config
    itself (the baseline, run anyway), is left out."""
    rng = np.random.default_rng(seed)
    grid = (list(itertools.product(*(d.choices for d in dims)))
            if all(d.choices for d in dims) else [])
    if grid and len(grid) <= count + 1:
        draws = iter(grid)
    else:
        draws = (tuple(draw(d, rng) for d in dims) for _ in range(200 * count))
    found, seen = [], set()
    for combination in draws:
        values = dict(zip((d.name for d in dims), combination))
        fields = overrides(dims, values)
        key = json.dumps(jsonable(fields), sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        try:
            tried = with_values(config, fields, "the space")
            tried.validate()
        except InputError:
            continue
        if tried == config:
            continue
        found.append({"values": jsonable(values), "overrides": jsonable(fields)})
        if len(found) == count:
            break
    return found


def draw(dim: Dimension, rng: np.random.Generator):
    if dim.choices:
        return dim.choices[rng.integers(len(dim.choices))]
    if isinstance(dim.low, int):
        if dim.log:
            return int(round(math.exp(rng.uniform(math.log(dim.low), math.log(dim.high)))))
        return int(rng.integers(dim.low, dim.high + 1))
    if dim.log:
        return float(math.exp(rng.uniform(math.log(dim.low), math.log(dim.high))))
    return float(rng.uniform(dim.low, dim.high))
