"""A config's fields: the domain each one's annotation states (`lr: Positive = 11.5`), and
its values read from text (`--set`, `tune --space`), from keywords and from a run's
record, each checked against its field's type and domain before any work. A `config` here
is a recipe's: a frozen dataclass, base.TrainConfig or a subclass of it."""

from __future__ import annotations

import dataclasses
import inspect
import math
import typing
from dataclasses import dataclass
from typing import Annotated

from ..errors import InputError

@dataclass(frozen=True)
class Domain:
    """The values a numeric field, or each item of a tuple field, may take: an interval as
    mathematics writes it ("[0, 1)", "(0, inf)"), and its words in a message ("in [0, 1)"
    unless given)."""

    interval: str
    words: str = ""

    def __post_init__(self) -> None:
        if self.interval[:1] not in ("[", "(") or self.interval[-1:] not in ("]", ")"):
            raise ValueError(f"Domain {self.interval!r}: expected an interval such as '[0, 1)'")
        self.ends()  # two numbers between the brackets, or a ValueError now

    def ends(self) -> tuple[float, float]:
        low, high = (float(end) for end in self.interval[1:-1].split(","))
        return low, high

    def __contains__(self, value) -> bool:
        low, high = self.ends()
        return ((low < value if self.interval[0] == "(" else low <= value)
                and (value < high if self.interval[-1] == ")" else value <= high))

    def __str__(self) -> str:
        return self.words or f"in {self.interval}"


# The domains of config fields, each stated once, as the field's annotation
# (`lr: Positive = 11.5`). A subclass that only changes a default (`lr: float = 10.0`)
# keeps its parent's (field_domains); --set, keyword values, `tune --space` and validate()
# refuse a value outside it, naming the field (_checked_value).
Positive = Annotated[float, Domain("(0, inf)", "positive")]
NonNegative = Annotated[float, Domain("[0, inf)", "0 or more")]
Fraction = Annotated[float, Domain("[0, 1]")]
FractionBelowOne = Annotated[float, Domain("[0, 1)")]
OpenFraction = Annotated[float, Domain("(0, 1)")]  # e.g. a Nesterov momentum (torch: above 0)
Count = Annotated[int, Domain("[1, inf)", "at least 1")]
NonNegativeInt = Annotated[int, Domain("[0, inf)", "0 or more")]
ImageSide = Annotated[int, Domain("[16, inf)", "at least 16, as the networks pool three times")]


def config_from_dict(defaults, values: dict, source: str):
    """A recipe's config with the values a run recorded as JSON (which turned its tuples
    into lists); `source` names the record in the message if it does not fit."""
    known = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(defaults)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InputError(f"{source}: {type(defaults).__name__} has no hyperparameter(s) "
                         f"{', '.join(unknown)}; was it written by another version?")
    return dataclasses.replace(defaults, **{
        k: tuple(v) if isinstance(known[k], tuple) else v for k, v in values.items()})


def override(config, assignments: list[str]):
    """Apply `key=value` strings (`--set`) to a config (parse_assignments)."""
    return dataclasses.replace(config, **parse_assignments(config, assignments))


def parse_assignments(config, assignments: list[str],
                      source: str = "--set") -> dict:
    """`key=value` strings as {field: value}, each read as its field's type and checked
    (checked_values); `source` names the option they came from in a message."""
    values = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise InputError(f"{source} {assignment!r}: expected key=value")
        values[key] = parse_value(config, key, text.strip(), source)
    return checked_values(config, values, source)


def parse_value(config, key: str, text: str, source: str = "--set"):
    """One field's value read from text as the field's type, not yet checked against its
    domain (`tune --space` reads a range's ends before it checks them)."""
    _check_known(config, key, f"{source} {key}={text}")
    return _parse_value(key, text, typing.get_type_hints(type(config))[key], source)


def with_values(config, values: dict, source: str = "keyword"):
    """The config with these fields replaced, each checked (checked_values)."""
    return dataclasses.replace(config, **checked_values(config, values, source))


def checked_values(config, values: dict, source: str) -> dict:
    """The values, each of its field's type (an int for an int, a finite number for a
    float, true or false for a bool, a tuple or list of the item type for a tuple) and
    within its domain; `source` names where they came from in a message."""
    hints, domains = typing.get_type_hints(type(config)), field_domains(type(config))
    checked = {}
    for key, value in values.items():
        _check_known(config, key, f"{source} {key}")
        checked[key] = _checked_value(key, value, hints[key], domains.get(key), source)
    return checked


def check_domains(config, source: str) -> None:
    """Every field that has a domain holds a value within it: the defaults a recipe or a
    recipe file sets are checked as --set's values are."""
    checked_values(config, {key: getattr(config, key) for key in field_domains(type(config))},
                   source)


def field_domains(config_type: type) -> dict[str, Domain]:
    """Each field's Domain, from the nearest class in the hierarchy whose annotation of it
    states one: a subclass that only changes a default (`lr: float = 10.0`, as a recipe
    file does) keeps its parent's."""
    domains = {}
    for cls in reversed(config_type.__mro__):
        if dataclasses.is_dataclass(cls):
            for key, annotation in inspect.get_annotations(cls, eval_str=True).items():
                if typing.get_origin(annotation) is tuple:  # a tuple's items have the domain
                    annotation = typing.get_args(annotation)[0]
                for domain in getattr(annotation, "__metadata__", ()):
                    if isinstance(domain, Domain):
                        domains[key] = domain
    return domains


def _check_known(config, key: str, where: str) -> None:
    names = [f.name for f in dataclasses.fields(config)]
    if key not in names:
        raise InputError(f"{where}: {type(config).__name__} has no hyperparameter {key!r}; "
                         f"known: {', '.join(names)}")


def _checked_value(key: str, value, kind, domain: Domain | None, source: str):
    value = _typed_value(key, value, kind, source)
    items = value if isinstance(value, tuple) else (value,)
    if domain is not None and not all(item in domain for item in items):
        subject = f"each of {key}" if isinstance(value, tuple) else key
        raise InputError(f"{source} {key}={value!r}: {subject} must be {domain}")
    return value


def _typed_value(key: str, value, kind, source: str):
    def fail(expected):
        return InputError(f"{source} {key}={value!r}: expected {expected}")

    if kind is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                kind is int and not float(value).is_integer()):
            raise fail("an integer" if kind is int else "a number")
        if not math.isfinite(value):
            raise fail("a finite number")
        return kind(value)
    if kind is str:
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if typing.get_origin(kind) is tuple:
        if not isinstance(value, (tuple, list)):
            raise fail("a tuple")
        item = typing.get_args(kind)[0]
        return tuple(_typed_value(key, v, item, source) for v in value)
    raise fail(f"a value of type {kind}")


def _parse_value(key: str, text: str, kind, source: str):
    def fail(expected):
        return InputError(f"{source} {key}={text}: expected {expected}")

    if kind is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise fail("true or false")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise fail("an integer" if kind is int else "a number") from None
    if kind is str:
        return text
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        try:
            return tuple(item(v) for v in text.strip("()").split(",") if v.strip())
        except ValueError:
            raise fail(f"comma-separated {item.__name__} values") from None
    raise fail(f"a value of type {kind}")
