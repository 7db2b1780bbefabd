"""The LR range test ("LR finder"): train briefly while the lr grows exponentially, and read
a good lr off the loss curve (Leslie Smith, arXiv 1506.01186; popularised by fastai).

The sweep is in units of a multiplier of the lrs the optimisers start with, which for a
recipe are its config's `lr` and `*_lr` values: multiplier 1 is the tuned setting, and a
suggestion carries straight back into the config (see scale_lrs).

What sets this finder apart from the usual ones:
- It leaves no trace. The model's weights, buffers and gradients, every optimiser's state
  and lrs, and the random generators are put back exactly as they were, also when the
  sweep fails half-way, so a run after it is the run it would have been.
- It sweeps the recipe as it trains: its model, initialisation, optimisers (several, as
  Muon + SGD), loss, augmentation and batch transform, and its answer is config values.
- Each suggestion rule is a pure function of (multipliers, smoothed losses), and the
  recommendation says which rule it took and why, or that no lr in the sweep trains.
- The smoothing spans the same share of the sweep whatever its length (see DEFAULT_BETA).
  An EMA lags: on made-up curves the suggestions of a 100-step sweep come out 0.2 to 0.7
  decades above those of the noise-free curve, so treat them as upper ends.

What the sweep leaves out: the recipe's lr schedule and its weight averaging (lookahead,
EMA); it measures how the optimisers' own steps respond to the lr from the run's start.
Only the lrs are multiplied: where a recipe sets weight decay per step independently of the
lr (airbench's decoupled form), torch's decay per step grows with the multiplier in the
sweep, where a run with its lrs times m would keep it (airbench94: 0.2% of each weight per
step at 1x, 0.6% at 3x instead of 0.2%).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from ..data.loader import DeviceLoader
from ..errors import InputError, RunFailed
from .device import Precision, choose_precision
from .loop import prepared_batch, progress_bar, training_step
from .lr_rules import (SUGGESTION_RULES, BiasCorrectedEMA, LRFinderResult, recommend, smooth,
                       suggestions_for)
from .setup import set_up_run

# Two decades either side of the tuned lrs: the tuned value sits mid-sweep whichever way it
# is off, and the divergence rule ends the sweep early once the lr is far too high.
DEFAULT_START = 1e-2
DEFAULT_END = 1e2
DEFAULT_STEPS = 100
# The loss's EMA (bias-corrected) has beta 0.98 in a 100-step sweep, and 0.98^(100/steps) in
# others: it always averages over the same share of the lr range (0.98 over 15 steps would
# average away the whole curve).
DEFAULT_BETA = 0.98
BETA_STEPS = 100
DEFAULT_DIVERGE = 4.0  # stop once the smoothed loss exceeds this times its best
MIN_STEPS = 5

RESULT_FILE = "lr_find.json"


def default_beta(num_steps: int) -> float:
    return DEFAULT_BETA ** (BETA_STEPS / num_steps)


def check_sweep(start: float, end: float, num_steps: int, beta: float | None = None,
                diverge_factor: float = DEFAULT_DIVERGE) -> None:
    if not (0 < start < end and math.isfinite(end)):
        raise InputError(f"the sweep needs 0 < start < end (multipliers of the lrs), got "
                         f"start {start:g}, end {end:g}")
    if num_steps < MIN_STEPS:
        raise InputError(f"the sweep needs at least {MIN_STEPS} steps, got {num_steps}")
    if beta is not None and not 0 <= beta < 1:
        raise InputError(f"the smoothing beta must be in [0, 1), got {beta:g}")
    if not diverge_factor > 1:
        raise InputError(f"the divergence factor must be above 1, got {diverge_factor:g}")


def lr_range_test(model: torch.nn.Module, optimizers: list[torch.optim.Optimizer],
                  loss_fn: Callable, batches: Iterable | Callable[[], Iterable],
                  start: float = DEFAULT_START, end: float = DEFAULT_END,
                  num_steps: int = DEFAULT_STEPS, beta: float | None = None,
                  diverge_factor: float = DEFAULT_DIVERGE, loss_scale: float = 1.0,
                  base_lrs: dict[str, float] | None = None, progress: bool = False,
                  precision: Precision | None = None) -> LRFinderResult:
    """Train `model` for up to `num_steps` steps of (inputs, targets) from `batches`, step k
    with every parameter group's lr at its starting lr times m_k, m_k geometric from `start`
    to `end`; stop early when the loss is not finite or its smoothed value exceeds
    `diverge_factor` times its best. Then put everything back as it was (see restored).

    `batches` is re-iterated when it runs out, or called for a fresh iterable if callable.
    `loss_fn(outputs, targets)` is `loss_scale` times the batch's summed loss (1: a sum,
    as the recipes' losses are; 1/batch_size: a mean); the losses recorded are per example.
    `base_lrs` names the settings that multiplier 1 stands for (default: each group's
    starting lr, named optimizer<i>.group<j>). `beta` is the smoothing EMA's (default: see
    default_beta). `precision`: the step's, as in train.loop.training_step (default
    float32 on the model's device)."""
    check_sweep(start, end, num_steps, beta, diverge_factor)
    beta = default_beta(num_steps) if beta is None else beta
    if base_lrs is None:
        base_lrs = {f"optimizer{i}.group{j}": float(g["lr"]) for i, o in enumerate(optimizers)
                    for j, g in enumerate(o.param_groups)}
    multipliers = np.geomspace(start, end, num_steps)
    if precision is None:
        device = next(model.parameters()).device
        precision = choose_precision("float32", device, recipe_mixed=False)
    with restored(model, optimizers):
        losses, stopped = _sweep(model, optimizers, loss_fn, _endless(batches), multipliers,
                                 beta, diverge_factor, loss_scale, progress, precision)
    taken = [float(m) for m in multipliers[:len(losses)]]
    smoothed = smooth(losses, beta)
    if len(taken) >= MIN_STEPS:
        suggestions = suggestions_for(taken, smoothed, base_lrs)
        rule, reason = recommend(taken, smoothed)
    else:
        suggestions, rule = dict.fromkeys(SUGGESTION_RULES), None
        reason = f"the sweep ended after {len(taken)} step(s): start it at a lower multiplier"
    return LRFinderResult(
        multipliers=taken, losses=losses, smoothed=smoothed, stopped=stopped,
        base_lrs=dict(base_lrs), suggestions=suggestions, recommended=rule, reason=reason,
        settings={"start": start, "end": end, "steps": num_steps, "beta": beta,
                                 "diverge_factor": diverge_factor})


def _sweep(model, optimizers, loss_fn, batches, multipliers, beta, diverge_factor,
           loss_scale, progress, precision) -> tuple[list[float], str]:
    """The sweep's steps: (each step's loss per example, why it stopped)."""
    start_lrs = [[g["lr"] for g in opt.param_groups] for opt in optimizers]
    ema, best, losses = BiasCorrectedEMA(beta), math.inf, []
    model.train()
    steps = progress_bar(multipliers, progress, desc="lr sweep", leave=False)
    for k, m in enumerate(steps):
        for opt, lrs in zip(optimizers, start_lrs):
            for group, lr in zip(opt.param_groups, lrs):
                group["lr"] = lr * float(m)
        inputs, targets = next(batches)
        _, loss = training_step(model, inputs, targets, loss_fn, optimizers, (), precision)
        value = loss.item() / (len(inputs) * loss_scale)
        losses.append(value if math.isfinite(value) else math.nan)
        if not math.isfinite(value):
            return losses, f"the loss became {value} at step {k + 1} (multiplier {m:.3g})"
        smoothed = ema.update(value)
        best = min(best, smoothed)
        if progress:
            steps.set_postfix(multiplier=f"{m:.3g}", loss=f"{smoothed:.3f}")
        if smoothed > diverge_factor * best:
            return losses, (f"diverged at step {k + 1} (multiplier {m:.3g}): the smoothed "
                            f"loss exceeded {diverge_factor:g}x its best")
    return losses, f"completed all {len(multipliers)} steps"


def _endless(batches):
    """Batches without end: `batches` iterated again (or called again) each time it runs out."""
    while True:
        count = 0
        for batch in (batches() if callable(batches) else batches):
            count += 1
            yield batch
        if count == 0:
            raise InputError("the LR finder ran out of batches: give it a re-iterable (a list, "
                             "a DataLoader) or a function that returns a fresh iterable")


def _forked_rng(devices: Iterable[torch.device]):
    """torch.random.fork_rng over the CPU's generator and those of the CUDA or MPS devices
    among `devices`: each is put back when the block ends."""
    kind = next((d.type for d in devices if d.type in ("cuda", "mps")), "cuda")
    indices = sorted({d.index or 0 for d in devices if d.type == kind})
    return torch.random.fork_rng(devices=indices, device_type=kind)


@contextmanager
def restored(model: torch.nn.Module, optimizers: list[torch.optim.Optimizer]):
    """Put back, when the block ends however it ends: the model's state_dict (weights and
    BatchNorm statistics), its gradients and train/eval modes, every optimiser's state
    (momentum buffers, step counts) and hyperparameters (lrs) in their own dicts, and the
    CPU and the model's CUDA/MPS random generators. Not covered: state outside these, such
    as a hook's private counter."""
    weights = copy.deepcopy(model.state_dict())
    grads = [(p, None if p.grad is None else p.grad.clone()) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    optimizer_states = [({p: copy.deepcopy(s) for p, s in opt.state.items()},
                         [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
                          for g in opt.param_groups]) for opt in optimizers]
    devices = {t.device for t in itertools.chain(model.parameters(), model.buffers())}
    with _forked_rng(devices):
        try:
            yield
        finally:
            model.load_state_dict(weights)
            for p, grad in grads:
                p.grad = grad
            for module, mode in modes:
                module.training = mode
            for opt, (state, groups) in zip(optimizers, optimizer_states):
                opt.state.clear()
                opt.state.update(state)
                for group, saved in zip(opt.param_groups, groups):
                    for key in set(group) - set(saved) - {"params"}:
                        del group[key]
                    group.update(saved)


# --- Recipes: sweep their lrs, apply a multiplier, save and read results -------------------

def lr_fields(config) -> dict[str, float]:
    """The config's lr settings: `lr` and every field ending in `_lr`."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if f.name == "lr" or f.name.endswith("_lr")}


def scale_lrs(config, multiplier: float):
    """The config with `lr` and every `*_lr` field multiplied by `multiplier`."""
    if not (multiplier > 0 and math.isfinite(multiplier)):
        raise InputError(f"an lr multiplier must be a positive number, got {multiplier}")
    return dataclasses.replace(config, **{name: value * multiplier
                                          for name, value in lr_fields(config).items()})


def find_lr(recipe, config, data, device: torch.device, seed: int = 0,
            start: float = DEFAULT_START, end: float = DEFAULT_END,
            num_steps: int = DEFAULT_STEPS, beta: float | None = None,
            diverge_factor: float = DEFAULT_DIVERGE, progress: bool = False,
            precision: str = "auto") -> LRFinderResult:
    """The LR range test of `recipe` with `config` on `data` (a DeviceData): the run's model,
    initialisation, optimisers, loss, augmentation, batch transform and precision, as
    train_run sets them up for seed `seed`, swept over multipliers of the config's lr
    settings. The global random state is left as it was."""
    check_sweep(start, end, num_steps, beta, diverge_factor)
    config.validate()
    base = lr_fields(config)
    if not base:
        raise InputError(f"{recipe.name}'s config has no lr or *_lr setting to sweep")
    with _forked_rng([device]):
        torch.manual_seed(seed)
        loader = DeviceLoader(data.train_images, data.train_labels, config.batch_size,
                              config.augmentation())
        parts = set_up_run(recipe, config, data.train_images, device, precision,
                           data.num_classes)
        result = lr_range_test(parts.model, parts.training.optimizers, parts.training.loss,
                               _recipe_batches(loader, parts.training, parts.precision),
                               start, end, num_steps,
                               beta, diverge_factor, base_lrs=base, progress=progress,
                               loss_scale=parts.training.loss_scale, precision=parts.precision)
    result.recipe, result.config = recipe.name, json.loads(json.dumps(dataclasses.asdict(config)))
    result.tuned_lrs = lr_fields(recipe.config)
    result.settings.update(seed=seed, device=str(device), batch_size=config.batch_size,
                           train_images=len(data.train_images))
    return result


def _recipe_batches(loader: DeviceLoader, training, precision):
    """The training loop's batches, epoch after epoch, with its hooks applied."""
    for epoch in itertools.count():
        if training.before_epoch is not None:
            training.before_epoch(epoch)
        for inputs, labels in loader:
            inputs, targets, *_ = prepared_batch(training, inputs, labels, epoch, precision)
            yield inputs, targets


def read_result(path: Path, recipe) -> LRFinderResult:
    """A saved result (lr_find.json, or a folder holding one) of `recipe`'s finder."""
    path = Path(path)
    file = path / RESULT_FILE if path.is_dir() else path
    try:
        result = LRFinderResult.from_dict(json.loads(file.read_text()))
    except FileNotFoundError:
        raise InputError(f"{file}: no such file; expected the {RESULT_FILE} written by "
                         f"`fastcifar lr-find`, or its folder") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{file}: not a result of `fastcifar lr-find` ({e})") from None
    if result.recipe != recipe.name:
        raise InputError(f"{file} is the LR finder's result for recipe {result.recipe!r}, not "
                         f"{recipe.name!r}: run `fastcifar lr-find --recipe {recipe.name}`")
    return result


def lr_from_finder(path: Path | None, recipe, config, data, device: torch.device, seed: int,
                   save: Callable[[LRFinderResult], None] | None = None, **finder_settings):
    """(`config` with its lrs times the finder's recommended multiplier, a message saying
    so). The result is read from `path` (lr_find.json or its folder), which must be of the
    same recipe and the same lr settings, or, when `path` is None, found by running the
    finder (and handed to `save` if given, to keep)."""
    notes = []
    if path is None:
        result = find_lr(recipe, config, data, device, seed, **finder_settings)
        if save is not None:
            save(result)
        source = f"the LR finder ({len(result.multipliers)} steps, {result.stopped})"
    else:
        result = read_result(path, recipe)
        current = lr_fields(config)
        if set(result.base_lrs) != set(current) or any(
                not math.isclose(result.base_lrs[k], v) for k, v in current.items()):
            raise InputError(f"{path}: the finder swept multipliers of {_settings(result.base_lrs)}"
                             f", but this config has {_settings(current)}; run the finder "
                             f"again with this config")
        differ = _config_changes(result.config or {}, config)
        if differ:
            notes.append(f"note: the finder ran with {', '.join(differ)}; its lr may not "
                         f"fit this config")
        source = str(path)
    best = result.recommendation
    if best is None:
        raise RunFailed(f"the LR finder found no lr to recommend: {result.reason}")
    new = scale_lrs(config, best.multiplier)
    changes = ", ".join(f"{k} {v:.4g} -> {getattr(new, k):.4g}"
                        for k, v in lr_fields(config).items())
    return new, "\n".join([f"lr from {source}: {best.rule} rule, {best.multiplier:.3g}x: "
                           f"{changes}", *notes])


def _settings(values: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in values.items())


def _config_changes(saved: dict, config) -> list[str]:
    """`name=saved value` for each non-lr hyperparameter the saved config sets otherwise."""
    current = json.loads(json.dumps(dataclasses.asdict(config)))
    lrs = lr_fields(config)
    return [f"{k}={v}" for k, v in saved.items()
            if k not in lrs and k in current and current[k] != v]
