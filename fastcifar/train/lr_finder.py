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
import importlib.util
import itertools
import json
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from ..data.loader import DeviceLoader
from ..errors import InputError, RunFailed
from .device import MixedPrecision, choose_precision, place_model
from .loop import progress_bar, training_step

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

MIN_DROP = 0.02  # a curve whose smoothed loss never fell by 2% has no usable descent
VALLEY_DEPTH = 2 / 3  # the valley rule's point: this far down the descent's loss drop
RULES = ("valley", "steepest", "min_div_10")  # also the order of preference

RESULT_FILE = "lr_find.json"
PLOT_FILE = "lr_find.png"


# --- Suggestion rules: pure functions of the multipliers and the smoothed losses -----------

def steepest(multipliers, smoothed) -> float | None:
    """Where the smoothed loss falls fastest against log(lr), on the way down to its
    minimum; the first tenth of the points (where the EMA has little history) and the
    last twentieth are left out. None if the loss never fell."""
    x, y = _curve(multipliers, smoothed)
    lowest = int(np.argmin(y))
    first, last = len(y) // 10, min(lowest, len(y) - 1 - len(y) // 20)
    if not _fell(y) or last - first < 1:
        return None
    slopes = np.gradient(y, np.log(x))[first:last + 1]
    i = int(np.argmin(slopes))
    return float(x[first + i]) if slopes[i] < 0 else None


def valley(multipliers, smoothed) -> float | None:
    """The point VALLEY_DEPTH of the way down the longest descent of the curve (its longest
    series of points each lower than the last, bumps skipped), measured in loss rather than
    in lr so that it does not depend on where the sweep started. None when that descent is
    too short (fewer than max(3, a tenth of the points)) or too shallow (under MIN_DROP)."""
    x, y = _curve(multipliers, smoothed)
    top, bottom, points = _longest_descent(y)
    if points < max(3, len(y) // 10) or not y[bottom] < y[top] - MIN_DROP * abs(y[top]):
        return None
    goal = y[top] - VALLEY_DEPTH * (y[top] - y[bottom])
    return float(x[top + int(np.argmax(y[top:bottom + 1] <= goal))])


def min_div_10(multipliers, smoothed) -> float | None:
    """A tenth of the multiplier at the smoothed loss's minimum (None if it never fell)."""
    x, y = _curve(multipliers, smoothed)
    return float(x[np.argmin(y)] / 10) if _fell(y) else None


def recommend(multipliers, smoothed) -> tuple[str | None, str]:
    """(the rule to follow, why): valley unless it is degenerate, then steepest, then
    min_div_10; none when the loss never fell."""
    x, y = _curve(multipliers, smoothed)
    if not _fell(y):
        return None, (f"the smoothed loss never fell by {MIN_DROP:.0%}: no lr in the sweep "
                      f"trains; sweep a wider range or more steps")
    found = {rule: SUGGESTION_RULES[rule](x, y) for rule in RULES}
    if found["valley"] is not None:
        rule, why = "valley", ("a point 2/3 of the way down the longest descent of the loss: "
                               "still learning fast, with margin below the minimum")
    elif found["steepest"] is not None:
        rule, why = "steepest", ("the descent is too short or shallow for valley; the "
                                 "steepest fall of the loss is the next most robust point")
    else:
        rule, why = "min_div_10", ("no clear descent for valley or steepest; a tenth of the "
                                   "lr at the loss minimum is the cautious choice")
    if int(np.argmin(y)) >= len(y) - max(1, len(y) // 20):
        why += ("; the loss was still falling at the end of the sweep, so the best lr may be "
                "higher: sweep to a larger end")
    return rule, why


SUGGESTION_RULES: dict[str, Callable] = {"steepest": steepest, "valley": valley,
                                         "min_div_10": min_div_10}


def _curve(multipliers, smoothed) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(multipliers, dtype=float), np.asarray(smoothed, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"expected two equally long curves of 2+ points, got {x.shape}, {y.shape}")
    if not np.all(np.diff(x) > 0) or x[0] <= 0:
        raise ValueError("multipliers must be positive and increasing")
    # A non-finite loss ends a sweep; it is never the minimum nor part of a descent.
    return x, np.where(np.isfinite(y), y, np.inf)


def _fell(y: np.ndarray) -> bool:
    """Did the loss fall by MIN_DROP from the highest point before its minimum?"""
    lowest = int(np.argmin(y))
    peak = y[:lowest + 1].max()
    return y[lowest] < peak - MIN_DROP * abs(peak)


def _longest_descent(y: np.ndarray) -> tuple[int, int, int]:
    """(first index, last index, length) of the longest strictly decreasing subsequence."""
    length, first = np.ones(len(y), dtype=int), np.arange(len(y))
    for i in range(1, len(y)):
        higher = np.flatnonzero(y[:i] > y[i])
        if len(higher):
            j = higher[np.argmax(length[higher])]  # the first of the longest, on ties
            length[i], first[i] = length[j] + 1, first[j]
    last = int(np.argmax(length))
    return int(first[last]), last, int(length[last])


# --- The result ----------------------------------------------------------------------------

@dataclass
class Suggestion:
    rule: str
    multiplier: float  # of the lrs the sweep started from
    loss: float  # the smoothed loss there
    values: dict[str, float]  # each lr setting times the multiplier, e.g. {"lr": 5.9}


@dataclass
class LRFinderResult:
    multipliers: list[float]  # the multiplier of every step taken
    losses: list[float]  # each step's loss per example (nan if it was not finite)
    smoothed: list[float]  # the bias-corrected EMA of the losses
    stopped: str  # why the sweep ended
    base_lrs: dict[str, float]  # the lr settings that multiplier 1 stands for
    suggestions: dict[str, Suggestion | None]  # by rule; None where a rule finds nothing
    recommended: str | None  # a rule name, or None if no lr in the sweep trains
    reason: str  # why that rule
    tuned_lrs: dict[str, float] | None = None  # the recipe's own lrs, to compare with
    recipe: str | None = None
    config: dict | None = None
    settings: dict = field(default_factory=dict)  # start, end, steps, beta, seed, ...

    @property
    def recommendation(self) -> Suggestion | None:
        return self.suggestions[self.recommended] if self.recommended else None

    def lrs(self) -> dict[str, list[float]]:
        """Every step's lr setting by name, in the config's units."""
        return {name: [base * m for m in self.multipliers] for name, base in self.base_lrs.items()}

    def times_tuned(self, multiplier: float) -> float | None:
        """How many times the recipe's tuned lr a multiplier of the base lrs is."""
        if not self.tuned_lrs:
            return None
        name = main_lr(self.base_lrs)
        return multiplier * self.base_lrs[name] / self.tuned_lrs[name]

    def to_dict(self) -> dict:
        suggestions = {r: dataclasses.asdict(s) if s else None for r, s in self.suggestions.items()}
        return {"recipe": self.recipe, "config": self.config, "settings": self.settings,
                "base_lrs": self.base_lrs, "tuned_lrs": self.tuned_lrs,
                "recommended": self.recommended, "reason": self.reason,
                "suggestions": suggestions, "stopped": self.stopped,
                "multipliers": self.multipliers, "lrs": self.lrs(),
                "losses": [_finite_or_none(v) for v in self.losses],
                "smoothed": [_finite_or_none(v) for v in self.smoothed]}

    @classmethod
    def from_dict(cls, d: dict) -> "LRFinderResult":
        nan = float("nan")
        return cls(multipliers=d["multipliers"],
                   losses=[nan if v is None else v for v in d["losses"]],
                   smoothed=[nan if v is None else v for v in d["smoothed"]],
                   stopped=d["stopped"], base_lrs=d["base_lrs"],
                   suggestions={r: Suggestion(**s) if s else None
                                for r, s in d["suggestions"].items()},
                   recommended=d["recommended"], reason=d["reason"], tuned_lrs=d["tuned_lrs"],
                   recipe=d["recipe"], config=d["config"], settings=d["settings"])


def main_lr(lrs: dict[str, float]) -> str:
    """The lr setting a plot's axis and a comparison use: `lr` if there is one."""
    return "lr" if "lr" in lrs else next(iter(lrs))


def suggestions_for(multipliers, smoothed, base_lrs: dict[str, float]) -> dict:
    """Every rule's Suggestion (or None) for a smoothed curve."""
    x, y = _curve(multipliers, smoothed)
    found = {}
    for rule, fn in SUGGESTION_RULES.items():
        m = fn(x, y)
        found[rule] = None if m is None else Suggestion(
            rule, m, float(np.interp(np.log(m), np.log(x), y)),
            {name: base * m for name, base in base_lrs.items()})
    return found


def _finite_or_none(v: float) -> float | None:
    return v if math.isfinite(v) else None  # JSON has no NaN


# --- The sweep -----------------------------------------------------------------------------

class BiasCorrectedEMA:
    """An exponential moving average whose early values are not pulled towards 0."""

    def __init__(self, beta: float):
        self.beta, self.average, self.count = beta, 0.0, 0

    def update(self, value: float) -> float:
        self.count += 1
        self.average = self.beta * self.average + (1 - self.beta) * value
        return self.average / (1 - self.beta ** self.count)


def smooth(values, beta: float) -> list[float]:
    ema = BiasCorrectedEMA(beta)
    return [ema.update(v) for v in values]


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
                  mixed: MixedPrecision | None = None) -> LRFinderResult:
    """Train `model` for up to `num_steps` steps of (inputs, targets) from `batches`, step k
    with every parameter group's lr at its starting lr times m_k, m_k geometric from `start`
    to `end`; stop early when the loss is not finite or its smoothed value exceeds
    `diverge_factor` times its best. Then put everything back as it was (see restored).

    `batches` is re-iterated when it runs out, or called for a fresh iterable if callable.
    `loss_fn(outputs, targets)` is `loss_scale` times the batch's summed loss (1: a sum,
    as the recipes' losses are; 1/batch_size: a mean); the losses recorded are per example.
    `base_lrs` names the settings that multiplier 1 stands for (default: each group's
    starting lr, named optimizer<i>.group<j>). `beta` is the smoothing EMA's (default: see
    default_beta). `mixed`: the step's precision, as in train.loop.training_step."""
    check_sweep(start, end, num_steps, beta, diverge_factor)
    beta = default_beta(num_steps) if beta is None else beta
    if base_lrs is None:
        base_lrs = {f"optimizer{i}.group{j}": float(g["lr"]) for i, o in enumerate(optimizers)
                    for j, g in enumerate(o.param_groups)}
    multipliers = np.geomspace(start, end, num_steps)
    with restored(model, optimizers):
        losses, stopped = _sweep(model, optimizers, loss_fn, _endless(batches), multipliers,
                                 beta, diverge_factor, loss_scale, progress, mixed)
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
           loss_scale, progress, mixed) -> tuple[list[float], str]:
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
        _, loss = training_step(model, inputs, targets, loss_fn, optimizers, (), mixed)
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
    with preserved_rng(devices):
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


@contextmanager
def preserved_rng(devices: Iterable[torch.device] = ()):
    """Restore the CPU random generator, and those of any CUDA or MPS device among
    `devices`, when the block ends."""
    cuda = {torch.device(d.type, d.index if d.index is not None else torch.cuda.current_device())
            for d in devices if d.type == "cuda"}
    states = [(torch.set_rng_state, torch.get_rng_state())]
    states += [(lambda s, d=d: torch.cuda.set_rng_state(s, d), torch.cuda.get_rng_state(d))
               for d in cuda]
    if any(d.type == "mps" for d in devices):
        states.append((torch.mps.set_rng_state, torch.mps.get_rng_state()))
    try:
        yield
    finally:
        for set_state, state in states:
            set_state(state)


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
    with preserved_rng([device]):
        torch.manual_seed(seed)
        loader = DeviceLoader(data.train_images, data.train_labels, config.batch_size,
                              train=True, augmentation=config.augmentation())
        _, total_steps = config.steps(len(data.train_images))
        mixed, half = choose_precision(precision, device, recipe.mixed_precision)
        model = place_model(recipe.build_model(config, data.num_classes), device, half=half)
        training = recipe.setup(model, config, data.train_images, total_steps)
        result = lr_range_test(model, training.optimizers, training.loss,
                               _recipe_batches(loader, training), start, end, num_steps,
                               beta, diverge_factor, base_lrs=base, progress=progress,
                               loss_scale=training.loss_scale, mixed=mixed)
    result.recipe, result.config = recipe.name, json.loads(json.dumps(dataclasses.asdict(config)))
    result.tuned_lrs = lr_fields(recipe.config)
    result.settings.update(seed=seed, device=str(device), batch_size=config.batch_size,
                           train_images=len(data.train_images))
    return result


def _recipe_batches(loader: DeviceLoader, training):
    """The training loop's batches, epoch after epoch, with its hooks applied."""
    for epoch in itertools.count():
        if training.before_epoch is not None:
            training.before_epoch(epoch)
        for inputs, labels in loader:
            if training.batch_transform is not None:
                yield training.batch_transform(inputs, labels, epoch)
            else:
                yield inputs, labels


def write_result(result: LRFinderResult, folder: Path, plot: bool = True) -> list[Path]:
    """Write lr_find.json and (with `plot`) lr_find.png into `folder`, each atomically."""
    from ..report.records import RunFolder

    out = RunFolder(folder)
    out.write_json(RESULT_FILE, result.to_dict())
    written = [out.path / RESULT_FILE]
    if plot:
        from ..report.plots import lr_finder_figure, save_png
        save_png(lr_finder_figure(result), out.path / PLOT_FILE)
        written.append(out.path / PLOT_FILE)
    return written


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
                   out: Path | None = None, **finder_settings):
    """(`config` with its lrs times the finder's recommended multiplier, a message saying
    so). The result is read from `path` (lr_find.json or its folder), which must be of the
    same recipe and the same lr settings, or, when `path` is None, found by running the
    finder (and written to `out` if given)."""
    notes = []
    if path is None:
        result = find_lr(recipe, config, data, device, seed, **finder_settings)
        if out is not None:
            write_result(result, out, plot=importlib.util.find_spec("matplotlib") is not None)
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


def summary_lines(result: LRFinderResult) -> list[str]:
    """The suggestions as a small table, the recommendation and why, and how it compares
    with the recipe's tuned lr."""
    def number(value, spec):
        return "-" if value is None else format(value, spec)

    header = ["rule", "multiplier", *result.base_lrs, *(["x tuned"] if result.tuned_lrs else [])]
    rows = [header]
    for rule in RULES:
        s = result.suggestions.get(rule)
        rows.append([rule + (" *" if rule == result.recommended else ""),
                     number(s and s.multiplier, ".3g"),
                     *(number(s and s.values[n], ".4g") for n in result.base_lrs),
                     *([number(s and result.times_tuned(s.multiplier), ".3g")]
                       if result.tuned_lrs else [])])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(row, widths))) for row in rows]
    best = result.recommendation
    if best is None:
        return [*lines, f"no recommendation: {result.reason}"]
    lines.append(f"recommended (*): {best.rule}: {result.reason}")
    name = main_lr(result.base_lrs)
    if result.tuned_lrs:
        lines.append(f"{name} {best.values[name]:.4g} is {result.times_tuned(best.multiplier):.3g}x"
                     f" the recipe's tuned {name} {result.tuned_lrs[name]:.4g}")
    return lines
