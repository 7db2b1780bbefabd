"""Count the kernels a training step launches: the leaf operators (aten ops that call no
other) that torch's profiler records per step, on any device. On a GPU each is a kernel
launch, whose fixed cost (a few microseconds) dominates a speed run's small layers; on a
CPU the count is the same dispatch, so it can be measured anywhere. One exception: a CPU
runs a fused `_foreach_` operator as one operator per tensor, where a GPU launches one
kernel for the whole list (a few, for very long lists); so each count is given twice,
per operator as the CPU runs it and with each `_foreach_` call counted once, as a GPU
launches it.

    python benchmarks/kernel_launches.py --recipe airbench94_muon --batch-size 64
    python benchmarks/kernel_launches.py --recipe airbench94 --json out.json

Reported per step: the training step (forward, loss, backward, optimisers, schedulers),
and the weight-averaging update (lookahead / EMA) where the recipe has one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from fastcifar.recipes import get_recipe
from fastcifar.train.device import resolve_device
from fastcifar.train.loop import training_step
from fastcifar.train.setup import set_up_run


# Operators that only make tensor metadata (views, allocations, dispatch wrappers): no kernel.
METADATA = {"view", "as_strided", "_unsafe_view", "_reshape_alias", "reshape", "resolve_conj",
            "resolve_neg", "empty", "empty_strided", "empty_like", "t", "transpose", "permute",
            "expand", "unsqueeze", "squeeze", "select", "slice", "unbind", "detach", "alias",
            "lift_fresh", "to", "contiguous", "flatten", "view_as", "numpy_T", "mT", "split",
            "chunk", "narrow", "_to_copy", "matmul", "linear", "conv2d", "convolution",
            "_convolution", "result_type", "is_nonzero", "item", "_local_scalar_dense"}


def is_kernel(event) -> bool:
    return event.name.startswith("aten::") and event.name[6:] not in METADATA


def launches_kernel_itself(event) -> bool:
    """A kernel operator none of whose descendants is one (those would be the launches)."""
    stack = list(event.cpu_children)
    while stack:
        child = stack.pop()
        if is_kernel(child):
            return False
        stack.extend(child.cpu_children)
    return True


def leaf_ops(prof) -> int:
    """The operators that would each be a kernel launch on a GPU, _foreach_ ones apart."""
    return sum(1 for e in prof.events() if is_kernel(e) and launches_kernel_itself(e))


def is_foreach(event) -> bool:
    return event.name.startswith("aten::_foreach_")


def inside_foreach(event) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if is_foreach(parent):
            return True
        parent = parent.cpu_parent
    return False


def gpu_launches(prof) -> int:
    """As leaf_ops, but each outermost _foreach_ call is one launch (its per-tensor
    operators on a CPU are none)."""
    events = [e for e in prof.events() if not inside_foreach(e)]
    return sum(1 for e in events if is_foreach(e) or
               (is_kernel(e) and launches_kernel_itself(e)))


def count(recipe_name: str, device: torch.device, batch_size: int, steps: int) -> dict:
    recipe = get_recipe(recipe_name)
    config = dataclasses.replace(recipe.config, batch_size=batch_size, epochs=1)
    images = torch.randn(batch_size, 3, 32, 32, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch_size,), device=device)
    run = set_up_run(recipe, config, images, device, "float32",
                     num_train_images=batch_size * (steps + 2))
    t = run.training
    run.model.train()
    step = lambda: training_step(run.model, images, labels, t.loss, t.optimizers,  # noqa: E731
                                 run.schedulers, run.precision)
    step()  # warm-up: lazily made state (momentum buffers) is not a per-step cost
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    result = {"recipe": recipe_name, "batch_size": batch_size, "steps": steps,
              "torch": torch.__version__, "step_ops": leaf_ops(prof) / steps,
              "step_gpu_launches": gpu_launches(prof) / steps}
    if t.average is not None:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                t.average.update(run.model, 0.5)
        result["average_update_ops"] = leaf_ops(prof) / steps
        result["average_update_gpu_launches"] = gpu_launches(prof) / steps
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", action="append",
                        help="recipe (repeatable; default airbench94 and airbench94_muon)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", help="write the counts to this file")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    results = [count(r, device, args.batch_size, args.steps)
               for r in args.recipe or ["airbench94", "airbench94_muon"]]
    for r in results:
        extra = (f", averaging update {r['average_update_ops']:.0f} "
                 f"({r['average_update_gpu_launches']:.0f})" if "average_update_ops" in r else "")
        print(f"{r['recipe']}: {r['step_ops']:.0f} operators per training step "
              f"({r['step_gpu_launches']:.0f} GPU launches, a _foreach_ call one){extra}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
