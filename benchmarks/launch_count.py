"""What a kernel launch is, and where a run's launches fall: the rule every count here
uses (kernel_launches.py, launch_parity.py), the tree of host operators a profile makes,
and the analysis of a profiled run by its clock's timed spans and its labelled parts.

A launch is a leaf kernel operator that torch's profiler records on the host: an aten
operator that is not metadata (METADATA) and calls no other kernel operator. A CPU runs a
fused `_foreach_` operator as one operator per tensor, where a GPU launches one kernel for
the whole list: the GPU's count takes each outermost `_foreach_` call once.
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter
from dataclasses import dataclass

import torch

from fastcifar.train.timing import TIMED

LABEL = "launches:"  # the profiler ranges that label a part (standin_instruments.py adds them)

# Operators that only make tensor metadata (views, allocations, dispatch wrappers): no kernel.
METADATA = {"view", "as_strided", "_unsafe_view", "_reshape_alias", "reshape", "resolve_conj",
            "resolve_neg", "empty", "empty_strided", "empty_like", "t", "transpose", "permute",
            "expand", "unsqueeze", "squeeze", "select", "slice", "unbind", "detach", "alias",
            "lift_fresh", "to", "contiguous", "flatten", "view_as", "numpy_T", "mT", "split",
            "chunk", "narrow", "_to_copy", "matmul", "linear", "conv2d", "convolution",
            "_convolution", "result_type", "is_nonzero", "item", "_local_scalar_dense"}


# Left out of the tree: metadata operators, whose kernel descendants (a reshape's copy) hang
# from the next operator up instead, which changes no count; but not the conversions (to,
# _to_copy), which say that the copy under them converts a tensor.
SKIPPED = {f"aten::{name}" for name in METADATA - {"to", "_to_copy"}}


def is_kernel(name: str) -> bool:
    return name.startswith("aten::") and name[6:] not in METADATA


def is_foreach(name: str) -> bool:
    return name.startswith("aten::_foreach_")


@dataclass(slots=True)
class Operator:
    """One operator (or labelled range) the profiler recorded on the host, in a tree: the
    ranges that open inside it on its thread are its descendants."""

    name: str
    start: int  # ns
    end: int
    parent: int = -1  # index in the list, -1 for none
    kernel: bool = False  # a kernel operator (is_kernel)
    kernel_below: bool = False  # some descendant is a kernel operator
    inside_foreach: bool = False  # some ancestor is a _foreach_ operator

    @property
    def leaf_kernel(self) -> bool:
        """A kernel operator none of whose descendants is one (those would be the
        launches): a launch, counted per operator as a CPU runs them."""
        return self.kernel and not self.kernel_below

    @property
    def gpu_launch(self) -> bool:
        """As leaf_kernel, but each outermost _foreach_ call is one launch (its per-tensor
        operators on a CPU are none): the counting rule of every figure here."""
        if self.inside_foreach:
            return False
        return is_foreach(self.name) or self.leaf_kernel


def operator_tree(prof) -> list[Operator]:
    """The host operators and labelled ranges of a finished profile, sorted by start, each
    with its parent, less the SKIPPED ones. Read from the profiler's raw events: building
    torch's EventList for a whole run's half a million events takes minutes, this seconds."""
    cpu = torch.autograd.DeviceType.CPU
    rows = []
    for e in prof.profiler.kineto_results.events():
        name = e.name()
        if name not in SKIPPED and e.device_type() == cpu and not e.is_async():
            rows.append((e.start_ns(), -e.end_ns(), e.start_thread_id(), name))
    rows.sort()
    kinds: dict[str, tuple[bool, bool]] = {}  # name -> (is_kernel, is_foreach)
    ops: list[Operator] = []
    foreach: list[bool] = []
    stacks: dict[int, list[int]] = {}  # per thread, the open ranges
    for start, minus_end, thread, name in rows:
        kind = kinds.get(name)
        if kind is None:
            kind = kinds[name] = (is_kernel(name), is_foreach(name))
        stack = stacks.setdefault(thread, [])
        while stack and ops[stack[-1]].end <= start:
            stack.pop()
        parent = stack[-1] if stack else -1
        inside = parent >= 0 and (foreach[parent] or ops[parent].inside_foreach)
        stack.append(len(ops))
        ops.append(Operator(name, start, -minus_end, parent, kind[0], False, inside))
        foreach.append(kind[1])
    for op in reversed(ops):  # children come after their parent
        if op.parent >= 0 and (op.kernel or op.kernel_below):
            ops[op.parent].kernel_below = True
    return ops


def leaf_ops(prof) -> int:
    """The operators that would each be a kernel launch on a GPU, _foreach_ ones apart."""
    return sum(op.leaf_kernel for op in operator_tree(prof))


def gpu_launches(prof) -> int:
    """The launches on a GPU: leaf kernel operators, each outermost _foreach_ call once."""
    return sum(op.gpu_launch for op in operator_tree(prof))


# The parts a launch can fall in, and how the report groups them.
GROUPS = {
    "forward+backward": ("forward", "backward", "glue"),
    "optimisers": ("optimisers",),
    "averaging": ("averaging",),
    "data": ("data",),
    "per-run extras": ("init", "tta", "evaluation", "other"),
}
PARTS = tuple(part for parts in GROUPS.values() for part in parts)


def outermost_part(ops: list[Operator], i: int) -> str | None:
    """The part of the outermost labelled range around ops[i], if any."""
    part = None
    while i >= 0:
        name = ops[i].name
        if name.startswith(LABEL) and not name.startswith(LABEL + "clock"):
            part = name[len(LABEL):].split(":")[0]
        elif name.startswith(("Optimizer.step#", "Optimizer.zero_grad#")):
            part = "optimisers"
        elif name.startswith("autograd::engine::evaluate_function"):
            part = "backward"
        i = ops[i].parent
    return part


def timed_part(ops: list[Operator], i: int) -> str | None:
    """The part of fastcifar's Stopwatch (init, train, tta_eval) that ops[i] ran in."""
    while i >= 0:
        if ops[i].name.startswith(TIMED):
            return ops[i].name[len(TIMED):]
        i = ops[i].parent
    return None


def is_conversion(ops: list[Operator], i: int) -> bool:
    """A launch of a conversion called as such (.float(), .to(dtype), .to(memory_format)),
    not of a scalar operand's wrapping inside an arithmetic operator."""
    outermost = None
    while i >= 0:
        if ops[i].name.startswith("aten::"):
            outermost = ops[i].name
        i = ops[i].parent
    return outermost in ("aten::to", "aten::_to_copy", "aten::type_as")


def analyse(ops: list[Operator], spans: list[tuple[str, str]]) -> dict:
    """The launches inside the clock's spans: the run's by part, and each step's; with the
    operators launched in each part, over the run and in the median step."""
    marks = {op.name: op for op in ops if op.name.startswith(LABEL + "clock")}
    timed = sorted((marks[a].end, marks[b].start) for a, b in spans)
    if not timed:
        raise RuntimeError("the run read no clock: nothing was timed")
    starts = [s for s, _ in timed]
    forwards = [op.start for op in ops if op.name == LABEL + "forward"]
    resets = [op.start for op in ops if op.name == LABEL + "init:CifarNet.reset"]
    run = {part: Counter() for part in PARTS}
    stopwatch = Counter()  # ours: by the Stopwatch's part
    steps: dict[int, list[tuple[str, str, bool]]] = {}  # by forward: (part, op, conversion)
    conversions = Counter()  # by part
    for i, op in enumerate(ops):
        if not op.gpu_launch:
            continue
        s = bisect.bisect_right(starts, op.start) - 1
        if s < 0 or op.start >= timed[s][1]:
            continue  # outside the clock
        part = outermost_part(ops, i)
        f = bisect.bisect_right(forwards, op.start) - 1
        in_step = f >= 0 and forwards[f] >= timed[s][0] and part not in ("init", "tta")
        part = part or ("glue" if in_step else "other")
        conversion = is_conversion(ops, i)
        run[part][op.name] += 1
        conversions[part] += conversion
        stopwatch[timed_part(ops, i)] += 1
        if in_step:
            steps.setdefault(f, []).append((part, op.name, conversion))
    totals = [len(step) for step in steps.values()]
    median = statistics.median_low(totals) if totals else 0
    step = next((s for s in steps.values() if len(s) == median), [])
    step_ops = {part: Counter() for part in PARTS}
    for part, name, _ in step:
        step_ops[part][name] += 1
    return {"run": sum(sum(c.values()) for c in run.values()), "step": median,
            "steps": len(steps), "step_mean": round(statistics.fmean(totals), 1) if totals else 0,
            "step_min": min(totals, default=0), "step_max": max(totals, default=0),
            "timed_spans": len(timed), "conversions_in_run": sum(conversions.values()),
            "run_conversions_by_part": {k: n for k, n in conversions.items() if n},
            "weight_resets": sum(any(a <= t < b for a, b in timed) for t in resets),
            "conversions_in_step": sum(c for _, _, c in step),
            "run_parts": {part: sum(c.values()) for part, c in run.items()},
            "step_parts": {part: sum(c.values()) for part, c in step_ops.items()},
            "run_by_stopwatch_part": {k: n for k, n in stopwatch.items() if k is not None},
            "step_operators": {part: dict(c.most_common()) for part, c in step_ops.items() if c},
            "run_operators": {part: dict(c.most_common()) for part, c in run.items() if c}}
