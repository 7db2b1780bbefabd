"""Instruments for a run under the CUDA stand-in (tests/standin/), in this process: a clock
whose spans are the torch.cuda.Event pairs a run reads, labels for the profile (the parts
a launch falls in), the GPU's branches, and an original's port imported as a module.
launch_parity.py counts a run's launches with them; tests/test_clock_spans.py puts its own
clock in, to see which parts of a run each side's timer covers; run_profile.py runs a port's
own __main__ block (run_main_block) with its run profiled.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib.util
import inspect
import os
import sys
import types
import warnings
from pathlib import Path

import torch
from torch.autograd.profiler import record_function
from torch.overrides import TorchFunctionMode

from launch_count import LABEL

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "standin"))
import cuda_standin  # noqa: E402


class Clock:
    """torch.cuda.Event, as the stand-in's, that also marks the profile where it is
    recorded; each elapsed_time read makes the span between two marks a timed one."""

    def __init__(self):
        self.spans: list[tuple[str, str]] = []
        self.marks = 0
        clock = self

        class Event(cuda_standin._Event):
            def record(self, stream=None):
                super().record(stream)
                clock.marks += 1
                self.mark = f"{LABEL}clock#{clock.marks}"
                with record_function(self.mark):
                    pass

            def elapsed_time(self, end):
                clock.spans.append((self.mark, end.mark))
                return super().elapsed_time(end)

        self.Event = Event


IS_CUDA = torch.Tensor.is_cuda  # the property


class LikeAGPU(TorchFunctionMode):
    """Tensor.is_cuda is True, as on a GPU, for the code that picks its path by it."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__self__", None) is IS_CUDA:
            return True
        return func(*args, **(kwargs or {}))


class ForwardLabels:
    """Each outermost call of a module with parameters (a network, not a loss) is labelled
    forward in training mode and evaluation in eval mode."""

    def __init__(self):
        self.depth, self.open = 0, []

    def before(self, module, args):
        if self.depth == 0 and next(module.parameters(), None) is not None:
            label = record_function(LABEL + ("forward" if module.training else "evaluation"))
            label.__enter__()
            self.open.append(label)
            self.top = module
        self.depth += 1

    def after(self, module, args, output):
        self.depth -= 1
        if self.depth == 0 and self.open and module is self.top:
            self.open.pop().__exit__(None, None, None)

    @contextlib.contextmanager
    def installed(self):
        hooks = [torch.nn.modules.module.register_module_forward_pre_hook(self.before),
                 torch.nn.modules.module.register_module_forward_hook(self.after,
                                                                      always_call=True)]
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()


def labelled(function, part: str, what: str = ""):
    """`function` with its work labelled `part` (and `what` it is); a generator's work is
    labelled at each item (a loader's augmentation runs when the first batch is asked for)."""
    name = LABEL + part + (f":{what}" if what else "")
    if inspect.isgeneratorfunction(function):
        @functools.wraps(function)
        def items(*args, **kwargs):
            iterator = function(*args, **kwargs)
            while True:
                with record_function(name):
                    try:
                        item = next(iterator)
                    except StopIteration:
                        return
                yield item
        return items

    @functools.wraps(function)
    def call(*args, **kwargs):
        with record_function(name):
            return function(*args, **kwargs)
    return call


@contextlib.contextmanager
def patched(owner, attribute: str, make):
    """owner.attribute replaced by make(it) for the block."""
    saved = inspect.getattr_static(owner, attribute)
    own = attribute in vars(owner)
    setattr(owner, attribute, make(getattr(owner, attribute)))
    try:
        yield
    finally:
        if own:
            setattr(owner, attribute, saved)
        else:
            delattr(owner, attribute)


def find(module, dotted: str):
    """(owner, attribute) of module's `A.b` or `b`, or None if it has none."""
    *path, attribute = dotted.split(".")
    owner = module
    for part in path:
        owner = getattr(owner, part, None)
    return (owner, attribute) if owner is not None and hasattr(owner, attribute) else None


def import_port(path: Path) -> types.ModuleType:
    """The port at `path` as a module: its definitions (its __main__ block does not run)."""
    spec = importlib.util.spec_from_file_location(f"port_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    argv, sys.argv = sys.argv, [str(path)]  # (they read their own source through argv[0])
    try:
        spec.loader.exec_module(module)
    finally:
        sys.argv = argv
    return module


def run_main_block(module: types.ModuleType, path: Path, argv: list) -> None:
    """The `if __name__ == "__main__":` block of the port at `path` (imported as `module`),
    run with sys.argv = [path, *argv] in the module's globals: it calls the module's
    functions as they are there, patched or not."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If)
                 and ast.unparse(node.test) == "__name__ == '__main__'")
    saved, sys.argv = sys.argv, [str(path), *map(str, argv)]
    try:
        exec(compile(ast.Module(block.body, []), str(path), "exec"), vars(module))
    finally:
        sys.argv = saved


@contextlib.contextmanager
def under_standin(clock=None):
    """The CUDA stand-in, a clock in place of torch.cuda.Event (`clock`, whose Event is the
    stand-in's; by default a Clock) and GPU branches, in this process, for the block; torch's
    globals that an original sets as it imports (cuDNN's autotuning, Dynamo's cache limits
    and shapes) are put back after it."""
    standin = cuda_standin.StandIn(devices=1).install()
    clock = clock or Clock()
    saved_event, torch.cuda.Event = torch.cuda.Event, clock.Event
    mode = LikeAGPU()
    dynamo_config, benchmark = torch._dynamo.config.save_config(), torch.backends.cudnn.benchmark
    dynamo = os.environ.get("TORCHDYNAMO_DISABLE")  # (the CPU ports set it too)
    os.environ["TORCHDYNAMO_DISABLE"] = "1"  # both sides run uncompiled (eager kernels)
    # One thread: the count is the same, and a few tiny kernels a step run many times
    # faster than with threads that wait for each other on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with mode, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield clock
    finally:
        if dynamo is None:
            os.environ.pop("TORCHDYNAMO_DISABLE", None)
        else:
            os.environ["TORCHDYNAMO_DISABLE"] = dynamo
        torch.set_num_threads(threads)
        torch.cuda.Event = saved_event
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (it sets Dynamo's deprecated options too)
            torch._dynamo.config.load_config(dynamo_config)
        torch.backends.cudnn.benchmark = benchmark
        standin.uninstall()
