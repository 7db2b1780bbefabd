"""What makes a run folder's runs the ones a session asks for: the recipe's source (its
digest), the data's (see ImageData.digest), every hyperparameter and session setting, and
the kind of device. A session that continues a folder (reuse.py) and a tuning study's
trials compare them, and stop naming each difference."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import sys
from pathlib import Path

from ..files import file_digest


def recipe_digest(recipe) -> str | None:
    """sha256 over the sha256 of each module that defines the recipe: its class's and its
    config's, and their parents' (shipped recipe modules, a recipe file as it was
    imported). None for a recipe defined where no source file is (an interactive
    session)."""
    modules = dict.fromkeys(sys.modules[c.__module__]
                            for c in (*type(recipe).__mro__, *type(recipe.config).__mro__)
                            if c.__module__ != "builtins")
    digest = hashlib.sha256()
    try:
        for module in modules:
            digest.update((getattr(module, "__source_sha256__", None)
                           or file_digest(Path(inspect.getsourcefile(module)))).encode())
    except (OSError, TypeError):
        return None
    return digest.hexdigest()


# What makes a run folder's runs the ones a session asks for: the same recipe (its source
# too), the same data (its digest), the same hyperparameters and session settings, on the
# same kind of device. (Not checkpoints: whether the runs kept them does not change them.)
SAME_RUN = ("recipe", "recipe_sha256", "data_sha256", "config", "size", "subset",
            "test_subset", "subset_seed", "runs", "seed", "init_seed", "order_seed",
            "augment_seed", "precision", "compile", "lr_from_finder", "ddp",
            "record_examples", "device")


def differences(recorded: dict, expected: dict, ignore_config: tuple[str, ...] = ()) -> list[str]:
    """What differs between a run folder's config.json (`recorded`) and what a session
    would record (`expected`), each as `name: X there, Y here`; hyperparameters one by
    one, except those in `ignore_config` (the lrs an LR finder sets)."""
    labels = {"recipe_sha256": "recipe source", "data_sha256": "data"}

    def shown(key, value):
        if key in labels:
            return f"sha256 {value[:12]}..." if value else "not recorded"
        return repr(value)

    def comparable(key, value):
        if key == "device":  # the kind of device: cuda:0 and cuda:1 train alike
            return str(value).split(":")[0]
        return list(value) if isinstance(value, tuple) else value

    def compare(key, old, new, label):
        if comparable(key, old) != comparable(key, new):
            found.append(f"{label}: {shown(key, old)} there, {shown(key, new)} here")

    found: list[str] = []
    for key in SAME_RUN:
        if key == "config":
            old, new = recorded.get("config") or {}, _config_dict(expected["config"])
            for name in dict.fromkeys([*old, *new]):
                if name not in ignore_config:
                    compare(name, old.get(name, "absent"), new.get(name, "absent"), name)
        elif key in labels:  # a folder that does not record them cannot be checked
            compare(key, recorded.get(key), expected.get(key), labels[key])
        elif key in recorded:  # (a setting older folders lack: its default is taken)
            compare(key, recorded[key], expected.get(key), key)
    return found


def _config_dict(config) -> dict:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
