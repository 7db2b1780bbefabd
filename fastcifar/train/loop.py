"""The training loop every speed-run recipe shares.

One run: build the net, initialise it from data, train for the recipe's epochs, evaluate
with TTA. Timed as airbench times it: data-dependent initialisation, the training epochs
and the final TTA evaluation; not data loading, model building or the per-epoch
(untimed) validation that fills the table.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from math import ceil
from typing import Callable

import torch

from ..data.augment import centre_crop
from ..data.loader import DeviceLoader, normalisation, to_device_tensor
from ..data.dataset import ImageDataset
from ..errors import InputError, RunFailed
from ..optim.schedules import multiplier_scheduler
from .checkpoint import CheckpointFolder, plain, rng_state, set_rng_state, unwrapped
from .device import MixedPrecision, choose_precision, compute_dtype, place_model
from .evaluate import evaluate, evaluation_metrics
from .timing import Stopwatch


@dataclass
class DeviceData:
    """A dataset normalised and moved to the training device once, shared by all runs."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    num_classes: int

    @classmethod
    def from_dataset(cls, data: ImageDataset, device: torch.device, image_size: int = 0,
                     half: bool = True) -> "DeviceData":
        """With `image_size` smaller than the stored images, the test images are their
        centre squares of that side (training crops them at random, see Augmentation).
        With `half`, the device's compute dtype (see place_model), else float32."""
        dtype = compute_dtype(device) if half else torch.float32
        mean, std = normalisation(data.train_images.shape[1])
        labels = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
        test = to_device_tensor(data.test_images, device, dtype, mean, std)
        if image_size and image_size < test.size(-1):
            test = centre_crop(test, image_size).contiguous(memory_format=torch.channels_last)
        return cls(to_device_tensor(data.train_images, device, dtype, mean, std),
                   labels(data.train_labels), test, labels(data.test_labels), len(data.classes))


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float  # mean per example over the epoch's batches (as augmented)
    train_accuracy: float  # top-1 over the epoch's batches
    val_loss: float  # plain cross-entropy, mean per test image, no TTA
    val_accuracy: float  # top-1, no TTA
    val_top5: float
    lr: float  # the multiplier of the recipe's lr at the end of the epoch
    train_seconds: float  # timed seconds so far


@dataclass
class RunResult:
    seed: int
    accuracy: float  # after TTA, fraction 0..1
    accuracy_no_tta: float
    train_seconds: float
    seconds_by_part: dict[str, float]
    epochs: list[EpochRecord] = field(default_factory=list)


def train_run(recipe, config, data: DeviceData, device: torch.device, seed: int,
              on_epoch: Callable[[EpochRecord], None] | None = None,
              model_transform: Callable | None = None, progress: bool = False,
              checkpoints: CheckpointFolder | None = None,
              precision: str = "auto") -> RunResult:
    """Train and evaluate one run of `recipe` with `config`, seeded by `seed`, in
    `precision` (see device.choose_precision; the data must be placed to match).

    With `checkpoints`, the state after every epoch is saved there, and a run that finds a
    last.pt there continues from it: on CPU it ends with the same weights as a run never
    interrupted (the timed seconds carry on from the checkpoint's).
    """
    torch.manual_seed(seed)
    loader = DeviceLoader(data.train_images, data.train_labels, config.batch_size,
                          train=True, augmentation=config.augmentation())
    _, total_steps = config.steps(len(data.train_images))
    mixed, half = choose_precision(precision, device, recipe.mixed_precision)
    model = place_model(recipe.build_model(config, data.num_classes), device, half=half)
    if model_transform is not None:
        model = model_transform(model)
    watch = Stopwatch(device)

    with watch.time("init"):
        training = recipe.setup(model, config, data.train_images, total_steps)
    optimizers, loss_fn, average = training.optimizers, training.loss, training.average
    schedulers = [multiplier_scheduler(opt, training.lr_multipliers, training.momenta)
                  for opt in optimizers]

    step, records = 0, []
    resumed = checkpoints.resume_state() if checkpoints is not None else None
    if resumed is not None:
        step, records = _restore(resumed, model, optimizers, schedulers, average, mixed,
                                 loader, watch, device, seed)

    epochs = progress_bar(range(len(records), ceil(config.epochs)), progress,
                             desc=recipe.name, total=ceil(config.epochs), initial=len(records))
    for epoch in epochs:
        if training.before_epoch is not None:
            training.before_epoch(epoch)
        # Running sums stay on the device: no host sync in the step.
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        with watch.time("train"):
            model.train()
            batches = progress_bar(loader, progress, desc=f"epoch {epoch + 1}",
                                      total=min(len(loader), total_steps - step), leave=False)
            for inputs, labels in batches:
                targets = labels
                if training.batch_transform is not None:
                    inputs, targets = training.batch_transform(inputs, labels, epoch)
                outputs, loss = training_step(model, inputs, targets, loss_fn, optimizers,
                                              schedulers, mixed)
                loss_sum += loss.detach().float()
                correct += (outputs.detach().argmax(1) == labels).sum()
                seen += len(labels)
                step += 1
                if average is not None and step % training.average_every == 0:
                    average.update(model, training.average_decay(step))
                if progress and step % 10 == 0:
                    batches.set_postfix(  # live, at the cost of a host sync
                        loss=f"{loss.item() / (len(labels) * training.loss_scale):.3f}",
                        acc=f"{correct.item() / seen:.3f}")
                if step >= total_steps:
                    break
            if step >= total_steps and average is not None:
                average.copy_to(model)  # end on the averaged weights

        # Once per epoch (outside the timed region): a NaN loss never recovers, so stop.
        if not torch.isfinite(loss_sum):
            raise RunFailed(f"the loss became {loss_sum.item()} in epoch {epoch + 1} (by step "
                            f"{step}); the run diverged: try a lower lr")
        val = evaluation_metrics(_evaluation_model(model, average, step, total_steps),
                                 data.test_images, data.test_labels, mixed)
        record = EpochRecord(
            epoch=epoch + 1, train_loss=loss_sum.item() / (seen * training.loss_scale),
            train_accuracy=correct.item() / seen, val_loss=val["loss"],
            val_accuracy=val["top1"], val_top5=val["top5"],
            lr=float(training.lr_multipliers[min(step, total_steps)]),
            train_seconds=watch.total)
        records.append(record)
        if progress:
            epochs.set_postfix(val_acc=f"{record.val_accuracy:.4f}")
        if checkpoints is not None:
            checkpoints.save(_state(recipe, config, seed, step, records, model, optimizers,
                                    schedulers, average, mixed, loader, watch, device),
                             record.val_accuracy)
        if on_epoch is not None:
            on_epoch(record)

    with watch.time("tta_eval"):
        tta_accuracy = evaluate(model, data.test_images, data.test_labels, config.tta_level,
                                mixed)
    return RunResult(seed=seed, accuracy=tta_accuracy, accuracy_no_tta=records[-1].val_accuracy,
                     train_seconds=watch.total, seconds_by_part=dict(watch.seconds),
                     epochs=records)


def _state(recipe, config, seed, step, records, model, optimizers, schedulers, average,
           mixed, loader, watch, device) -> dict:
    """What a checkpoint holds (see train/checkpoint.py)."""
    return {"recipe": recipe.name, "config": plain(config), "seed": seed,
            "epoch": len(records), "step": step, "records": plain(records),
            "model": unwrapped(model).state_dict(),
            "optimizers": [o.state_dict() for o in optimizers],
            "schedulers": [s.state_dict() for s in schedulers],
            "average": average.state_dict() if average is not None else None,
            "scaler": _scaler(mixed).state_dict() if _scaler(mixed) is not None else None,
            "loader": loader.state_dict(), "seconds": dict(watch.seconds),
            "rng": rng_state(device)}


def _scaler(mixed: MixedPrecision | None):
    return mixed.scaler if mixed is not None else None


def _restore(state, model, optimizers, schedulers, average, mixed, loader, watch, device,
             seed) -> tuple[int, list[EpochRecord]]:
    if state["seed"] != seed:
        raise InputError(f"the checkpoint is of seed {state['seed']}, not {seed}")
    unwrapped(model).load_state_dict(state["model"])
    for target, saved in zip(optimizers, state["optimizers"], strict=True):
        target.load_state_dict(saved)
    for target, saved in zip(schedulers, state["schedulers"], strict=True):
        target.load_state_dict(saved)
    if average is not None:
        average.load_state_dict(state["average"])
    if _scaler(mixed) is not None and state.get("scaler"):
        _scaler(mixed).load_state_dict(state["scaler"])
    loader.load_state_dict(state["loader"])
    watch.seconds.update(state["seconds"])
    set_rng_state(state["rng"], device)
    return state["step"], [EpochRecord(**r) for r in state["records"]]


def training_step(model, inputs, targets, loss_fn, optimizers, schedulers,
                  mixed: MixedPrecision | None = None):
    """The hot path: forward, loss, backward, every optimiser and lr scheduler stepped.
    Nothing here waits for the device (a GradScaler's inf check aside)."""
    scaler = mixed.scaler if mixed is not None else None
    with mixed.autocast() if mixed is not None else contextlib.nullcontext():
        outputs = model(inputs)
        loss = loss_fn(outputs, targets)
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    (scaler.scale(loss) if scaler is not None else loss).backward()
    for opt in optimizers:
        if scaler is not None:
            scaler.step(opt)
        else:
            opt.step()
    if scaler is not None:
        scaler.update()
    for scheduler in schedulers:
        scheduler.step()
    return outputs, loss


def _evaluation_model(model, average, step, total_steps):
    """Mid-run, an EMA that is kept apart from the weights is evaluated on a copy."""
    if average is None or average.copy_back or step >= total_steps:
        return model
    return average.evaluation_model(model)


def progress_bar(iterable, enabled: bool, **bar):
    """A tqdm bar over `iterable` when enabled (the epochs' bar holds the batches' bar)."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, disable=None, dynamic_ncols=True, **bar)
