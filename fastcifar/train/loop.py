"""The training loop every speed-run recipe shares.

One run: build the net, initialise it from data, train for the recipe's epochs, evaluate
with TTA. Timed as airbench times it: data-dependent initialisation, the training epochs
and the final TTA evaluation; not data loading, model building or the per-epoch
(untimed) validation that fills the table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import ceil
from typing import Callable

import torch

from ..data.loader import DeviceLoader, to_device_tensor
from ..data.dataset import ImageDataset
from ..errors import RunFailed
from ..optim.schedules import multiplier_scheduler
from .device import compute_dtype, place_model
from .evaluate import evaluate
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
    def from_dataset(cls, data: ImageDataset, device: torch.device) -> "DeviceData":
        dtype = compute_dtype(device)
        labels = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
        return cls(to_device_tensor(data.train_images, device, dtype), labels(data.train_labels),
                   to_device_tensor(data.test_images, device, dtype), labels(data.test_labels),
                   len(data.classes))


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float  # mean per example, over the epoch's last batch
    train_accuracy: float  # on the epoch's last batch
    val_accuracy: float  # no TTA
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
              model_transform: Callable | None = None, progress: bool = False) -> RunResult:
    """Train and evaluate one run of `recipe` with `config`, seeded by `seed`."""
    torch.manual_seed(seed)
    loader = DeviceLoader(data.train_images, data.train_labels, config.batch_size,
                          train=True, augmentation=config.augmentation())
    _, total_steps = config.steps(len(data.train_images))
    model = place_model(recipe.build_model(config, data.num_classes), device)
    if model_transform is not None:
        model = model_transform(model)
    watch = Stopwatch(device)

    with watch.time("init"):
        training = recipe.setup(model, config, data.train_images, total_steps)
    optimizers, loss_fn, average = training.optimizers, training.loss, training.average
    schedulers = [multiplier_scheduler(opt, training.lr_multipliers) for opt in optimizers]

    step, records = 0, []
    for epoch in range(ceil(config.epochs)):
        if training.before_epoch is not None:
            training.before_epoch(epoch)
        with watch.time("train"):
            model.train()
            for inputs, labels in _maybe_progress(loader, progress, f"epoch {epoch + 1}"):
                targets = labels
                if training.batch_transform is not None:
                    inputs, targets = training.batch_transform(inputs, labels, epoch)
                outputs, loss = training_step(model, inputs, targets, loss_fn, optimizers,
                                              schedulers)
                step += 1
                if average is not None and step % training.average_every == 0:
                    average.update(model, training.average_decay(step))
                if step >= total_steps:
                    break
            if step >= total_steps and average is not None:
                average.copy_to(model)  # end on the averaged weights

        # Once per epoch (outside the timed region): a NaN loss never recovers, so stop.
        if not torch.isfinite(loss):
            raise RunFailed(f"the loss became {loss.item()} in epoch {epoch + 1} (step {step}); "
                            f"the run diverged: try a lower lr")
        record = EpochRecord(
            epoch=epoch + 1,
            train_loss=loss.item() / len(labels),
            train_accuracy=(outputs.detach().argmax(1) == labels).float().mean().item(),
            val_accuracy=evaluate(_evaluation_model(model, average, step, total_steps),
                                  data.test_images, data.test_labels),
            lr=float(training.lr_multipliers[step]),
            train_seconds=watch.total)
        records.append(record)
        if on_epoch is not None:
            on_epoch(record)

    with watch.time("tta_eval"):
        tta_accuracy = evaluate(model, data.test_images, data.test_labels, config.tta_level)
    return RunResult(seed=seed, accuracy=tta_accuracy, accuracy_no_tta=records[-1].val_accuracy,
                     train_seconds=watch.total, seconds_by_part=dict(watch.seconds),
                     epochs=records)


def training_step(model, inputs, targets, loss_fn, optimizers, schedulers):
    """The hot path: forward, loss, backward, every optimiser and lr scheduler stepped.
    Nothing here waits for the device."""
    outputs = model(inputs)
    loss = loss_fn(outputs, targets)
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt, scheduler in zip(optimizers, schedulers):
        opt.step()
        scheduler.step()
    return outputs, loss


def _evaluation_model(model, average, step, total_steps):
    """Mid-run, an EMA that is kept apart from the weights is evaluated on a copy."""
    if average is None or average.copy_back or step >= total_steps:
        return model
    return average.evaluation_model(model)


def _maybe_progress(loader, enabled: bool, desc: str):
    if not enabled:
        return loader
    from tqdm.auto import tqdm
    return tqdm(loader, desc=desc, leave=False, disable=None)
