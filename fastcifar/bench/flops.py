"""The FLOPs of a whole training run, and what share of the device's peak a run achieved.

Convention (the one airbench's published figures follow): a run's FLOPs are the forward and
backward passes of every training step plus the forwards of the final test-time-augmented
evaluation on the 10,000 test images, i.e. exactly the model work inside the timed region
(see train/loop.py). Not counted: the untimed per-epoch validation, the whitening init, the
optimiser and weight-averaging updates (elementwise, or small matrices for Muon), data
augmentation, and elementwise layers (norms, activations), which torch's FlopCounterMode
leaves out; a multiply-add counts as 2 FLOPs. Airbench gives its figures without saying
what they count, so the convention is the one that reproduces them: airbench94 0.350 PFLOPs
(published 0.36; "358 TFLOPs" in its script), airbench94_muon 0.291 (0.29), airbench95 1.34
(1.39), airbench96 4.90 (4.91), and Page's final bag-of-tricks run 1.144 (airbench quotes
1,148 TFLOPs for it); counting training alone gives 0.336, 0.277, 1.30 and 4.84.

The count is exact per step, not one step times the step count: a step's backward depends
on which parameters train, and recipes change that between epochs (airbench freezes its
whitening bias after 3 epochs, which saves the gradient of the first conv's input), and a
resolution curriculum (`progressive_sizes`) trains its first epochs on smaller images.

David Page's DAWNBench argument: FLOPs / peak FLOP/s is the time the run would take at 100%
GPU efficiency, and a recorded time's distance from it shows how much speed is left.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from math import ceil
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..data.cifar10 import IMAGE_SHAPE, TEST_IMAGES, TRAIN_IMAGES
from ..errors import InputError
from ..recipes.fields import config_from_dict
from ..train.device import compute_dtype
from ..train.evaluate import predict
from ..train.setup import set_up_without_data
from ..train.timing import Stopwatch

def count_flops(fn: Callable[[], object]) -> int:
    """The FLOPs torch's FlopCounterMode counts while fn runs."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@dataclass(frozen=True)
class RunFlops:
    recipe: str
    steps: int
    batch_size: int
    train_images: int
    test_images: int
    tta_forwards: float  # forward passes per test image in the final evaluation (mean)
    train: int  # forward + backward of every training step
    eval: int  # the final TTA evaluation

    @property
    def total(self) -> int:
        return self.train + self.eval


def run_flops(recipe, config=None, train_images: int = TRAIN_IMAGES,
              test_images: int = TEST_IMAGES) -> RunFlops:
    """Count the FLOPs of one run of `recipe` (with `config`, default the recipe's), on meta
    tensors: shapes only, no arithmetic, so even the largest recipe counts in a second."""
    config = config or recipe.config
    run = set_up_without_data(recipe, config, train_images)
    training, per_epoch, steps = run.training, run.steps_per_epoch, run.steps
    model = run.model.to("meta").train()
    channels, full_side = IMAGE_SHAPE[0], IMAGE_SHAPE[-1]
    # With a proxy choosing the examples (airbench96_faster), the network trains on its
    # `keep` of each batch, and the proxy's own passes are added below.
    select = training.select
    batch_size = select.keep if select is not None else config.batch_size
    progressive = getattr(config, "progressive_sizes", ())

    step_flops: dict[tuple, int] = {}  # by which parameters train, and the images' side
    train, step = 0, 0
    for epoch in range(ceil(config.epochs)):  # as train/loop.py steps a run
        if training.before_epoch is not None:
            training.before_epoch(epoch)
        # A resolution curriculum trains its first epochs on smaller images (data/loader.py)
        side = min(progressive[epoch], full_side) if epoch < len(progressive) else full_side
        key = (side, *(p.requires_grad for p in model.parameters()))
        if key not in step_flops:
            batch = torch.empty(batch_size, channels, side, side, device="meta")
            # Any scalar loss has the same backward FLOPs through the network.
            step_flops[key] = count_flops(lambda: model(batch).float().sum().backward())
        steps_now = min(per_epoch, steps - step)
        train += steps_now * step_flops[key]
        step += steps_now

    if select is not None:
        train += _proxy_flops(select, config.batch_size, steps)
    # Evaluation FLOPs grow linearly with the images (no batch statistics in eval mode).
    # Selective TTA (hiverge's): plain logits for every image, then the TTA views for the
    # least confident fraction of them.
    one_image = torch.empty(1, *IMAGE_SHAPE, device="meta")
    plain = count_flops(lambda: predict(model, one_image))
    views = count_flops(lambda: predict(model, one_image, config.tta_level))
    fraction = getattr(config, "tta_fraction", 1.0)
    selected = int(test_images * fraction)
    eval_flops = (test_images * views if fraction >= 1
                  else test_images * plain + selected * views)
    return RunFlops(recipe.name, steps, config.batch_size, train_images, test_images,
                    round(eval_flops / plain / test_images, 2), train, eval_flops)


def _proxy_flops(select, batch_size: int, steps: int) -> int:
    """A selecting proxy's work in a run: a forward over every whole batch, and on every
    train_every-th step (0, train_every, ...) a backward through it too."""
    proxy = select.proxy.to("meta").train()
    batch = torch.empty(batch_size, *IMAGE_SHAPE, device="meta")
    forward = count_flops(lambda: proxy(batch))
    forward_backward = count_flops(lambda: proxy(batch).float().sum().backward())
    trained = ceil(steps / select.train_every)
    return (steps - trained) * forward + trained * forward_backward


def lower_bound_seconds(flops: float, peak_tflops: float) -> float:
    """The run's time at 100% of the peak: Page's "40 s at 100% efficiency" bound."""
    return flops / (peak_tflops * 1e12)


def achieved_tflops(flops: float, seconds: float) -> float:
    return flops / seconds / 1e12


def share_of_peak(flops: float, seconds: float, peak_tflops: float) -> float:
    """The fraction of the peak FLOP/s a run of `seconds` achieved."""
    return achieved_tflops(flops, seconds) / peak_tflops


def measure_peak_tflops(device: torch.device, size: int | None = None,
                        min_seconds: float = 0.5, dtype: torch.dtype | None = None) -> float:
    """The TFLOP/s of a size x size matrix product on `device` in `dtype` (default: what
    speed runs use there, float16 on CUDA, float32 elsewhere; give a run's own precision,
    or bfloat16 on an AMX CPU measures several times float32's peak): a practical peak,
    usually below the data sheet's.

    The number of products doubles until one timed pass lasts min_seconds; the shorter
    passes before it (and one product before those) are the warm-up: library heuristics,
    clocks, caches."""
    if size is None:
        size = 8192 if device.type == "cuda" else 1024
    dtype = dtype or compute_dtype(device)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    out = a @ b
    repeats = 1
    while True:
        watch = Stopwatch(device)
        with watch.time("matmul"):
            for _ in range(repeats):
                torch.mm(a, b, out=out)
        if watch.total >= min_seconds:
            return 2 * size**3 * repeats / watch.total / 1e12
        repeats *= 2


@dataclass(frozen=True)
class RecordedRun:
    """What `fastcifar flops --run` needs from a run folder written by `fastcifar train`."""

    path: Path
    recipe: str
    config: dict  # config.json's "config": the recipe's hyperparameters as run
    train_images: int
    test_images: int
    device: str  # the name of the device it ran on
    train_seconds: list[float]  # the timed seconds of each run
    precision: str = "auto"  # --precision as it ran
    recipe_file: dict | None = None  # config.json's record of a --recipe path.py:Name

    @classmethod
    def read(cls, path: Path) -> "RecordedRun":
        path = Path(path)
        if not path.is_dir():
            raise InputError(f"--run {path}: no such run folder")
        config, summary = (_read_json(path / name) for name in ("config.json", "summary.json"))
        try:
            seconds = [float(run["train_seconds"]) for run in summary["runs"]]
            return cls(path, config["recipe"], dict(config["config"]),
                       int(summary["train_images"]), int(summary["test_images"]),
                       summary["device"], seconds, summary.get("precision", "auto"),
                       config.get("recipe_file"))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"--run {path}: not a run folder written by `fastcifar train` "
                             f"(config.json or summary.json lacks {e})") from None

    def recipe_config(self, recipe):
        """The recipe's config with this run's values (JSON turned its tuples into lists)."""
        if recipe.name != self.recipe:
            raise InputError(f"--run {self.path} is a run of {self.recipe}, not {recipe.name}")
        return config_from_dict(recipe.config, self.config, f"--run {self.path}")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"--run {path.parent}: no {path.name}; not a run folder written by "
                         f"`fastcifar train`") from None
    except json.JSONDecodeError as e:
        raise InputError(f"--run: {path} is not valid JSON: {e}") from None


def flops_report(recipe, config, train_images: int, test_images: int,
                 peak: float | None = None, peak_device: str | None = None,
                 recorded: RecordedRun | None = None) -> list[str]:
    """`fastcifar flops`'s lines: the run's FLOPs by part (against the published figure
    when the run is the recipe's own), the time at 100% of a peak, and the share of it a
    recorded run achieved."""
    flops = run_flops(recipe, config, train_images, test_images)
    as_published = (config == recipe.config and train_images == TRAIN_IMAGES
                    and test_images == TEST_IMAGES and recipe.target.pflops is not None)
    published = f"  (published: {recipe.target.pflops:g})" if as_published else ""
    lines = [f"{recipe.name}: {flops.steps} steps of {flops.batch_size} images "
             f"({config.epochs:g} epochs of {train_images} training images)"]
    for part, value, extra in (
            ("training (forward + backward)", flops.train, ""),
            (f"final eval ({test_images} images x {flops.tta_forwards:g} forwards)", flops.eval, ""),
            ("total", flops.total, published)):
        lines.append(f"  {part:<44} {value / 1e15:9.4g} PFLOPs{extra}")
    if peak is not None:
        lines.append(f"at 100% of {peak:.3g} TFLOP/s a run takes at least "
                     f"{lower_bound_seconds(flops.total, peak):.3g} s")
    if recorded is not None:
        seconds = sum(recorded.train_seconds) / len(recorded.train_seconds)
        share = (f", {share_of_peak(flops.total, seconds, peak):.1%} of the peak"
                 if peak is not None else "")
        lines.append(f"run {recorded.path} on {recorded.device}: {len(recorded.train_seconds)} "
                     f"run(s) of {seconds:.3g} timed s on average, "
                     f"{achieved_tflops(flops.total, seconds):.3g} TFLOP/s{share}")
        if peak is not None and share_of_peak(flops.total, seconds, peak) > 1:
            lines.append("note: over 100% means the run computed faster than the peak given: "
                         "a peak measured with --measure-peak is one matrix product's speed, "
                         "which a machine's convolutions can beat (or it was measured while "
                         "the machine was busy); a data sheet's --peak-tflops is the ceiling")
        if peak_device is not None and peak_device != recorded.device:
            lines.append(f"note: the peak was measured on {peak_device}, the run on "
                         f"{recorded.device}")
    return lines


def peak_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of a run's matrix products: what its peak must be measured in."""
    if precision == "bfloat16":
        return torch.bfloat16
    return torch.float32 if precision == "float32" else compute_dtype(device)
