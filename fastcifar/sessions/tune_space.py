"""What a tuning study searches and what its trials share: the space (recipe
hyperparameters as ranges or choices, `lr=4:20:log, flip=random|alternating`), parsed and
checked against each field's type and domain before any trial, and the checks that keep a
study to one space and one session (recipe source, data, fixed settings) over every worker
and call that continues it."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass

from ..errors import InputError
from ..recipes import get_recipe
from ..recipes.fields import parse_value, with_values
from ..train.identity import SAME_RUN, differences


@dataclass(frozen=True)
class Dimension:
    """One axis of the search: a range (ints or floats, optionally log-spaced) or choices."""

    name: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple = ()

    def distribution(self):
        """The Optuna distribution `suggest` draws from (what a study records per trial)."""
        from optuna.distributions import (CategoricalDistribution, FloatDistribution,
                                          IntDistribution)
        if self.choices:
            return CategoricalDistribution(self.choices)
        if isinstance(self.low, int):
            return IntDistribution(self.low, self.high, log=self.log)
        return FloatDistribution(self.low, self.high, log=self.log)

    def suggest(self, trial):
        if self.choices:
            return trial.suggest_categorical(self.name, list(self.choices))
        if isinstance(self.low, int):
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


def parse_space(text: str, recipe_name: str, config=None) -> list[Dimension]:
    """`name=low:high[:log]` or `name=a|b|c`, comma-separated, each name a hyperparameter
    of the recipe and each value of its type, one a run can take: the config (the
    recipe's, or `config`, which holds the values fixed for every trial) with each choice,
    or either end of a range, passes the checks `--set` passes. Refused, naming the part,
    otherwise."""
    config = get_recipe(recipe_name).config if config is None else config
    hints = typing.get_type_hints(type(config))

    def parsed(name: str, value: str):
        return parse_value(config, name, value.strip(), "--space")

    def check(name: str, value) -> None:
        """A choice the run itself would refuse is refused now, before any trial: outside
        the field's domain (a message naming both), or by the config's other checks."""
        tried = with_values(config, {name: value}, "--space")
        try:
            tried.validate()
        except InputError as e:
            raise InputError(f"--space {name}={value}: {e}") from None

    dims = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, spec = part.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not spec:
            raise InputError(f"--space {part!r}: expected name=low:high[:log] or name=a|b|c")
        if "|" in spec:
            values = [parsed(name, v) for v in spec.split("|")]
            for value in values:
                check(name, value)
            dims.append(Dimension(name, choices=tuple(values)))
            continue
        bounds = spec.split(":")
        log = len(bounds) == 3 and bounds[2] == "log"
        if len(bounds) not in (2, 3) or (len(bounds) == 3 and not log):
            raise InputError(f"--space {part!r}: expected {name}=low:high or {name}=low:high:log")
        if hints.get(name) not in (int, float):
            parsed(name, bounds[0])  # an unknown name says so
            raise InputError(f"--space {part!r}: {name} is not a number; give its choices "
                             f"as {name}=a|b")
        low, high = (parsed(name, b) for b in bounds[:2])
        if not low < high or (log and low <= 0):
            raise InputError(f"--space {part!r}: expected low < high" +
                             (" and low > 0 on a log scale" if log else ""))
        check(name, low)
        check(name, high)
        dims.append(Dimension(name, low, high, log))
    if not dims:
        raise InputError("--space names no hyperparameter; e.g. --space \"lr=4:20:log\"")
    if len({d.name for d in dims}) != len(dims):
        raise InputError(f"--space {text!r}: a hyperparameter is named twice")
    return dims


SPACE = "space"  # the study's user attribute that holds its space, as Optuna distributions


def check_space(study, dims: list[Dimension], where, new: str) -> None:
    """A study searches one space: its first worker records it, and a worker given another
    (Optuna would refuse other choices mid-trial, and mix other ranges into its model) is
    refused before it runs a trial. A study recorded before the space was kept is judged
    by its trials' distributions."""
    from optuna.distributions import distribution_to_json, json_to_distribution
    given = {d.name: d.distribution() for d in dims}
    if SPACE in study.user_attrs:
        stored = {k: json_to_distribution(v) for k, v in study.user_attrs[SPACE].items()}
    else:
        stored = {k: v for t in study.get_trials(deepcopy=False)
                  for k, v in t.distributions.items()}
    if stored and stored != given:
        raise InputError(f"--space {space_text(given)}: the study {study.study_name} in "
                         f"{where} searches {space_text(stored)}; continue it with that "
                         f"--space, or give a new {new}")
    if SPACE not in study.user_attrs:
        study.set_user_attr(SPACE, {k: distribution_to_json(v) for k, v in given.items()})


SESSION = "session"  # the study's user attribute: what its trials share (see check_session)


def check_session(study, record: dict, dims: list[Dimension], where, new: str) -> None:
    """A study's trials differ in their searched values only: the first trial records
    what a run folder records of its session (recipe source, data, settings, the config
    but the searched fields), and a trial of a later worker or call that was given
    another recipe, data or fixed option is refused before it trains, naming what
    differs (its values would otherwise be compared with runs of another setting)."""
    shared = json.loads(json.dumps({k: record[k] for k in SAME_RUN if k in record},
                                   default=dataclasses.asdict))
    if SESSION not in study.user_attrs:
        study.set_user_attr(SESSION, shared)
        return
    found = differences(study.user_attrs[SESSION], shared, tuple(d.name for d in dims))
    if found:
        raise InputError(f"the study {study.study_name} in {where} was searched with other "
                         f"settings ({'; '.join(found)}): give the ones it was made with to "
                         f"continue it, or a new {new}")


def space_text(distributions: dict) -> str:
    """Optuna distributions in --space's syntax, by name."""
    from optuna.distributions import CategoricalDistribution
    parts = []
    for name, d in sorted(distributions.items()):
        if isinstance(d, CategoricalDistribution):
            parts.append(f"{name}={'|'.join(map(str, d.choices))}")
        else:
            parts.append(f"{name}={d.low:g}:{d.high:g}{':log' if d.log else ''}")
    return ",".join(parts)
