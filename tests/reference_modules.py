"""The original scripts in ../shared/references, imported as modules so that a test can call
their own functions on the same inputs as fastcifar's blocks (never copied: the files are
read where they lie, unmodified).

They import torchvision at the top, which does not import beside the CPU build of torch
here and is not a dependency of fastcifar: a stand-in module takes its place, enough for
the names they touch at import time, and argv[0] names the script. Their module-level settings of torch (Dynamo's cache
limits, cudnn.benchmark) are put back afterwards. A function they decorate with
`torch.compile` is reached, uncompiled, through `eager(function)`."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

REFERENCES = Path(__file__).resolve().parents[2] / "shared" / "references"

needs_references = pytest.mark.skipif(
    not REFERENCES.is_dir(), reason=f"the original scripts are not here ({REFERENCES})")

_loaded: dict[str, types.ModuleType] = {}


@contextlib.contextmanager
def _torchvision_stand_in():
    names = ("torchvision", "torchvision.transforms", "torchvision.datasets")
    saved = {name: sys.modules.get(name) for name in names}
    package = types.ModuleType("torchvision")
    package.transforms = types.ModuleType("torchvision.transforms")
    package.datasets = types.ModuleType("torchvision.datasets")
    sys.modules.update({"torchvision": package, "torchvision.transforms": package.transforms,
                        "torchvision.datasets": package.datasets})
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


@contextlib.contextmanager
def _torch_settings_restored():
    dynamo = torch._dynamo.config
    keys = ("cache_size_limit", "accumulated_cache_size_limit", "automatic_dynamic_shapes")
    saved = {k: getattr(dynamo, k) for k in keys if hasattr(dynamo, k)}
    benchmark = torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        for key, value in saved.items():
            setattr(dynamo, key, value)
        torch.backends.cudnn.benchmark = benchmark


def reference_module(relative: str) -> types.ModuleType:
    """The script at REFERENCES/relative, imported once (its `__main__` block does not run);
    skips the test when the references are not beside the checkout."""
    path = REFERENCES / relative
    if not path.is_file():
        pytest.skip(f"the original script is not here ({path})")
    if relative not in _loaded:
        name = "reference_" + "".join(c if c.isalnum() else "_" for c in relative)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        argv = sys.argv
        sys.argv = [str(path)]  # (hiverge's script reads its own source through argv[0])
        try:
            with _torchvision_stand_in(), _torch_settings_restored():
                spec.loader.exec_module(module)
        finally:
            sys.argv = argv
        _loaded[relative] = module
    return _loaded[relative]


def eager(function):
    """The Python function under a `torch.compile` decorator (itself if there is none)."""
    return getattr(function, "_torchdynamo_orig_callable", function)


HIVERGE = "hiverge-cifar10-speedrun/cifar10_speedrun.py"
FABLE_E1 = "fulcrum-cifar-10-speedrun/fable-100m/recipes/e1_1.74s_single-gpu_CHAMPION.py"
FABLE_E5 = "fulcrum-cifar-10-speedrun/fable-100m/recipes/e5_1.80s_single-gpu.py"
