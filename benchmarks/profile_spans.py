"""What a profile holds inside a clock's spans: the kernels the timed code launched and the
time the device was busy in them, by kind of operation, counted the same way for ours and
for an original (run_profile.py). A span is a profiler range: ours, the Stopwatch's
`fastcifar timed: PART` for each part its record's clock covers; an original's, its port's
`original timed`, between its own start and stop of its clock (profile_pairs.py).

What counts, read from the profiler's raw events (torch's EventList takes minutes for a
whole run, these seconds):
- on a GPU: each kernel, memcpy and memset on the device whose launching host operator (the
  innermost one open at the launch) started inside a span, with its time on the device. A
  span is a stretch of time, not of one thread: autograd launches a GPU's backward from a
  thread of its own, while the span's thread waits in backward();
- on a CPU, and under the CUDA stand-in (tests/standin/), whose kernels run on the CPU, the
  device is the CPU: each operator a GPU would launch as one kernel (launch_count.py's rule)
  that started inside a span, with its time on the host.
Each launch falls in the first of CATEGORIES that the outermost aten operator around it
matches (a convolution's, not the matrix product a CPU computes it by; on a GPU the
kernel's own name where no aten operator launched it: a graph replay, a compiled kernel).
"""

from __future__ import annotations

import bisect
import gzip
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity

from launch_count import operator_tree

DEVICE_WORK = {"kernel", "gpu_memcpy", "gpu_memset"}  # kineto's activity types of device work
KEY_CHARS = 100  # a kernel's name is cut to this (templated names run to hundreds)
LISTED = 60  # kernels kept per side in the JSON, the longest-running first
DIFFERENCES = 8  # rows of each kind in a pair's table of differences

# (category, words of an operator's or kernel's name), tried in order.
CATEGORIES = (
    ("optimiser and multi-tensor", ("_foreach_", "multi_tensor", "fused_sgd", "fused_adam")),
    ("convolution", ("conv", "fprop", "dgrad", "wgrad", "implicit_gemm")),
    ("matrix product", ("mm", "gemm", "matmul", "linear", "cutlass")),
    ("normalisation", ("batch_norm", "layer_norm", "group_norm", "bn_fw", "bn_bw")),
    ("pooling", ("pool",)),
    ("loss and softmax", ("softmax", "nll_loss", "cross_entropy", "logsumexp")),
    ("indexing and random", ("index", "gather", "scatter", "flip", "roll", "rand", "uniform",
                             "normal_", "bernoulli", "pad", "nonzero", "sort", "topk",
                             "masked", "repeat", "unfold")),
    ("copy and conversion", ("copy", "clone", "memcpy", "local_scalar", "cat", "stack")),
    ("allocation and fill", ("resize", "fill", "zero", "memset", "ones", "full", "arange",
                             "scalar_tensor")),
    ("reduction", ("sum", "mean", "norm", "max", "min", "reduce", "var", "std", "prod",
                   "all", "any")),
    ("compiled (triton)", ("triton",)),
    ("elementwise", ("add", "mul", "sub", "div", "lerp", "relu", "silu", "gelu", "sigmoid",
                     "tanh", "sqrt", "neg", "exp", "log", "pow", "clamp", "sign", "abs",
                     "threshold", "elementwise", "reciprocal", "where", "eq", "lt", "gt",
                     "ge", "le", "ne", "round", "floor", "xor")),
)
OTHER = "other"
CONVERSIONS = {"to", "type_as"}  # copy and conversion too (names too short to search for)


def activities(device: torch.device) -> list[ProfilerActivity]:
    """What the profiler records: the host's operators, and on a GPU its kernels (not
    under the CUDA stand-in: a CPU build of torch has no GPU to record, and asking it to
    slows a whole run down by minutes)."""
    gpu = device.type == "cuda" and torch.backends.cuda.is_built()
    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])


def write_trace(prof, trace: Path) -> None:
    """The profile as a gzipped Chrome trace (chrome://tracing or ui.perfetto.dev)."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(raw))
        with open(raw, "rb") as f, gzip.open(trace, "wb") as out:
            shutil.copyfileobj(f, out)


def category(operator: str, kernel: str = "") -> str:
    """The kind of work a launch does, by its aten operator's name, else its kernel's."""
    name = (operator[6:] if operator.startswith("aten::") else kernel or operator).lower()
    if name in CONVERSIONS:
        return "copy and conversion"
    return next((kind for kind, words in CATEGORIES if any(w in name for w in words)), OTHER)


def outermost_aten(ops, i: int) -> str:
    """The name of the outermost aten operator around ops[i] (itself, if none is)."""
    name = ops[i].name
    while i >= 0:
        if ops[i].name.startswith("aten::"):
            name = ops[i].name
        i = ops[i].parent
    return name


@dataclass(frozen=True, slots=True)
class Launch:
    key: str  # the kernel's name on a GPU, the operator's on a CPU
    category: str
    start: int  # ns: its host operator's start and end
    end: int
    seconds: float  # busy on the device


def launches(prof, ops) -> tuple[list[Launch], str, int]:
    """Every launch of the profile (the GPU's device work, else the CPU's kernel operators),
    which device was busy in them, and how many of the GPU's had no host operator to place
    them by (none open at the launch)."""
    events = list(prof.profiler.kineto_results.events())
    device = [e for e in events if e.activity_type() in DEVICE_WORK]
    if not device:
        return [Launch(op.name, category(outermost_aten(ops, i)), op.start, op.end,
                       (op.end - op.start) / 1e9)
                for i, op in enumerate(ops) if op.gpu_launch], "cpu", 0
    host = {e.correlation_id(): e for e in events
            if e.device_type() == torch.autograd.DeviceType.CPU and not e.is_async()
            and e.linked_correlation_id() == 0}
    in_tree = {(op.name, op.start): i for i, op in enumerate(ops)}
    found = []
    for kernel in device:
        op = host.get(kernel.linked_correlation_id())
        if op is None:
            continue
        i = in_tree.get((op.name(), op.start_ns()))
        operator = op.name() if i is None else outermost_aten(ops, i)
        found.append(Launch(kernel.name()[:KEY_CHARS], category(operator, kernel.name()),
                            op.start_ns(), op.end_ns(), kernel.duration_ns() / 1e9))
    return found, "gpu", len(device) - len(found)


def account(prof, span_names) -> dict:
    """The launches inside the ranges named `span_names`: in total, by category and by
    kernel, and per span (where it starts and ends, and its first and last launch, all in
    the profile's ns), with how many fell outside every span and how many could not be
    placed."""
    ops = operator_tree(prof)
    spans = sorted((op.start, op.end) for op in ops if op.name in span_names)
    starts = [start for start, _ in spans]
    found, device, unplaced = launches(prof, ops)
    per_span = [{"start": start, "end": end, "launches": 0, "first": None, "last": None}
                for start, end in spans]
    kinds: dict[str, list] = defaultdict(lambda: [0, 0.0])
    keys: dict[tuple[str, str], list] = defaultdict(lambda: [0, 0.0])
    outside = 0
    for launch in found:
        i = bisect.bisect_right(starts, launch.start) - 1
        if i < 0 or launch.start >= spans[i][1]:
            outside += 1
            continue
        span = per_span[i]
        span["launches"] += 1
        span["first"] = min(launch.start, span["first"] or launch.start)
        span["last"] = max(launch.end, span["last"] or 0)
        for row in (kinds[launch.category], keys[launch.key, launch.category]):
            row[0] += 1
            row[1] += launch.seconds
    listed = sorted(keys.items(), key=lambda item: -item[1][1])
    return {"device": device, "span_names": sorted(span_names), "spans": per_span,
            "span_seconds": sum(end - start for start, end in spans) / 1e9,
            "launches": sum(n for n, _ in kinds.values()),
            "busy_seconds": sum(s for _, s in kinds.values()), "launches_outside": outside,
            "launches_unplaced": unplaced,
            "categories": {k: {"launches": n, "seconds": s} for k, (n, s) in
                           sorted(kinds.items(), key=lambda item: -item[1][1])},
            "kernels": [{"kernel": k, "category": c, "launches": n, "seconds": s}
                        for (k, c), (n, s) in listed[:LISTED]],
            "kernels_not_listed": len(listed[LISTED:])}


def differences(ours: dict, original: dict) -> dict:
    """The kernels (of a category) whose launches, and whose busy seconds, differ most
    between the sides: ours less the original's (one a side's list leaves out counts as
    none there)."""
    rows = {}
    for sign, side in ((1, ours), (-1, original)):
        for k in side["kernels"]:
            row = rows.setdefault((k["kernel"], k["category"]), {
                "kernel": k["kernel"], "category": k["category"], "launches": 0, "seconds": 0.0})
            row["launches"] += sign * k["launches"]
            row["seconds"] += sign * k["seconds"]
    return {what: [r for r in sorted(rows.values(), key=lambda r: -abs(r[what])) if r[what]]
            [:DIFFERENCES] for what in ("launches", "seconds")}


def table(title: str, sides: dict[str, dict]) -> str:
    """Each side's launches and busy seconds by category, side by side."""
    device = "GPU" if any(s["device"] == "gpu" for s in sides.values()) else "CPU"
    kinds = list(dict.fromkeys(k for side in sides.values() for k in side["categories"]))
    lines = [title, " " * 26 + "".join(f"{name:>24}" for name in sides),
             f"{'category':26}" + f"{'launches':>13}{device + ' s':>11}" * len(sides)]
    for kind in kinds + ["total"]:
        cells = ""
        for side in sides.values():
            row = ({"launches": side["launches"], "seconds": side["busy_seconds"]}
                   if kind == "total" else side["categories"].get(kind, {"launches": 0,
                                                                         "seconds": 0.0}))
            cells += f"{row['launches']:13,}{row['seconds']:11.4f}"
        lines.append(f"{kind:26}{cells}")
    return "\n".join(lines)


def differences_text(rows: dict) -> str:
    lines = ["largest differences, ours less the original's:"]
    for what, unit in (("launches", "launches"), ("seconds", "s busy")):
        for r in rows[what]:
            value = f"{r[what]:+,}" if what == "launches" else f"{r[what]:+.4f}"
            lines.append(f"  {value:>10} {unit:8} {r['kernel'][:70]} ({r['category']})")
    return "\n".join(lines)
