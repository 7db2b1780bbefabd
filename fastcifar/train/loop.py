"""The training loop every recipe shares.

One run: build the net (or re-initialise one an earlier run trained), initialise it from
data, train for the recipe's epochs, evaluate with TTA. Timed as airbench times it:
data-dependent initialisation, the training epochs and the final TTA evaluation; not data
loading, model building or the per-epoch (untimed) validation that fills the table.
"""

from __future__ import annotations

from math import ceil
from typing import Callable

import torch

from ..data.loader import DeviceData, DeviceLoader
from ..errors import RunFailed
from .checkpoint import CheckpointFolder, RunState
from .data_parallel import DataParallel, synced_batch_norms
from .device import Precision
from .evaluate import evaluate_with_logits, evaluation_metrics
from .example_records import ExampleRecorder
from .results import EpochRecord, RunResult
from .seeds import RunSeeds
from .setup import RunParts, set_up_run
from .timing import Stopwatch


def train_run(recipe, config, data: DeviceData, device: torch.device, seed: int | RunSeeds,
              on_epoch: Callable[[EpochRecord], None] | None = None,
              model_transform: Callable | None = None, progress: bool = False,
              checkpoints: CheckpointFolder | None = None,
              precision: str = "auto", group: DataParallel | None = None,
              model: torch.nn.Module | None = None,
              record_examples: bool = False) -> RunResult:
    """Train and evaluate one run of `recipe` with `config`, seeded by `seed` (or seeds
    fixed apart, see seeds.py), in
    `precision` (see device.choose_precision; the data must be in its weights' dtype).

    With `checkpoints`, the state after every epoch is saved there, and a run that finds a
    last.pt there continues from it: on CPU it ends with the same weights as a run never
    interrupted (the timed seconds carry on from the checkpoint's).

    With `group`, the run is one rank's part of a data-parallel run (see data_parallel.py):
    its share of every batch, the evaluation sharded, the checkpoint (if this rank has
    the folder: rank 0) handed to every rank on resume.

    With `model`, a network an earlier run of this recipe and config trained, the run
    trains it, re-initialised in place, instead of building one (see setup.set_up_run):
    a compiled network is compiled once. Not under `group` with sync_bn: SyncedBatchNorm
    replaces the recipe's BatchNorms after its set-up, which finds them by type.

    With `record_examples`, the result's `examples` holds what every training image did in
    every epoch and the test images' final logits (see example_records.py); not under `group`.
    """
    synced = group is not None and config.sync_bn
    if synced and model is not None:
        raise ValueError("train_run: with sync_bn each run builds its own network")
    seeds = seed if isinstance(seed, RunSeeds) else RunSeeds(seed)
    seed = seeds.run
    torch.manual_seed(seeds.init_seed())
    order, augment = seeds.generators(data.train_images.device)
    loader = DeviceLoader(data.train_images, data.train_labels, config.batch_size,
                          config.augmentation(), group.share() if group else (0, 1),
                          order=order, augment=augment)
    watch = Stopwatch(device)
    parts = set_up_run(recipe, config, data.train_images, device, precision, data.num_classes,
                       model_transform=model_transform, init_timer=watch.time("init"),
                       model=model)
    if synced:
        synced_batch_norms(parts.model)
    run = RunState(recipe.name, config, seed, device, parts, loader, watch,
                   examples=ExampleRecorder(len(data.train_labels), device)
                   if record_examples else None)
    saved = checkpoints.resume_state() if checkpoints is not None else None
    if group is not None:
        saved = group.from_leader(saved)
    if saved is not None:
        run.load_state_dict(saved)

    model, training = parts.model, parts.training
    epochs = progress_bar(range(len(run.records), ceil(config.epochs)), progress,
                          desc=recipe.name, total=ceil(config.epochs), initial=len(run.records))
    for epoch in epochs:
        with watch.time("train"):
            last = train_epoch(run, epoch, progress, group)
        loss_sum, correct, seen = batch_metrics(*last)  # outside the clock
        if run.examples is not None:
            run.examples.end_epoch()
        if group is not None:  # the global batches' loss and accuracy, not this rank's
            sums = group.sum(torch.stack([loss_sum.double(), correct.double(),
                                          torch.tensor(seen, dtype=torch.float64,
                                                       device=run.device)]))
            loss_sum, correct, seen = sums[0], sums[1], int(sums[2])
        # Once per epoch (outside the timed region): a NaN loss never recovers, so stop.
        if not torch.isfinite(loss_sum):
            raise RunFailed(f"the loss became {loss_sum.item()} in epoch {epoch + 1} (by step "
                            f"{run.step}); the run diverged: try a lower lr")
        val = evaluation_metrics(evaluation_model(parts, run.step), data.test_images,
                                 data.test_labels, parts.precision, group)
        record = EpochRecord(
            epoch=epoch + 1, train_loss=loss_sum.item() / (seen * training.loss_scale),
            train_accuracy=correct.item() / seen, val_loss=val["loss"],
            val_accuracy=val["top1"], val_top5=val["top5"],
            lr=float(training.lr_multipliers[min(run.step, parts.steps)]),
            train_seconds=watch.total)
        run.records.append(record)
        if progress:
            epochs.set_postfix(val_acc=f"{record.val_accuracy:.4f}")
        if checkpoints is not None:
            checkpoints.save(run.state_dict(), record.val_accuracy)
        if on_epoch is not None:
            on_epoch(record)

    with watch.time("tta_eval"):
        tta_accuracy, logits = evaluate_with_logits(
            model, data.test_images, data.test_labels, config.tta_level, parts.precision,
            progress, group, config.tta_fraction)
    examples = None
    if run.examples is not None:
        examples = {**run.examples.arrays(), "test_logits": logits.float().cpu().numpy()}
    return RunResult(seed=seed, accuracy=tta_accuracy,
                     accuracy_no_tta=run.records[-1].val_accuracy, seconds=watch.total,
                     seconds_by_part=dict(watch.seconds), epochs=run.records, model=model,
                     examples=examples)


def training_step(model, inputs, targets, loss_fn, optimizers, schedulers,
                  precision: Precision):
    """The hot path: forward, loss, backward, every optimiser and lr scheduler stepped.
    Nothing here waits for the device (a float16 GradScaler's inf check aside)."""
    with precision.autocast():
        outputs = model(inputs)
    # In float32: a float16 sum over a batch of 2000 passes 65504 once the mean loss is 33.
    loss = loss_fn(outputs.float(), targets)
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    precision.scaler.scale(loss).backward()
    for opt in optimizers:
        precision.scaler.step(opt)
    precision.scaler.update()
    for scheduler in schedulers:
        scheduler.step()
    return outputs, loss


def train_epoch(run: RunState, epoch: int, progress: bool = False,
                group: DataParallel | None = None):
    """One epoch of the run's training steps (run_epoch), with what a recorded, watched or
    data-parallel run adds to them: the last batch's (loss, outputs, labels), this rank's
    in a data-parallel run."""
    training = run.parts.training
    batches = progress_bar(run.loader, progress, desc=f"epoch {epoch + 1}", leave=False,
                           total=min(len(run.loader), run.parts.steps - run.step))

    def after_step(step, loss, outputs, labels, index):
        if run.examples is not None:
            run.examples.record(index, outputs, labels)
        if progress and step % 10 == 0:  # the batch's, live, at the cost of a host sync
            batch_loss, right, n = batch_metrics(loss, outputs, labels)
            batches.set_postfix(loss=f"{batch_loss.item() / (n * training.loss_scale):.3f}",
                                acc=f"{right.item() / n:.3f}")

    watched = run.examples is not None or progress  # else nothing to do after a step
    run.step, last = run_epoch(run.parts, run.loader, epoch, run.step, batches,
                               group.wrap if group is not None else None,
                               after_step if watched else None)
    return last


def run_epoch(parts: RunParts, loader, epoch: int, step: int, batches=None, wrap=None,
              after_step: Callable | None = None):
    """Epoch `epoch` of training steps from step `step` (fewer if the run's last step comes
    first): (the steps taken by its end, the last batch's (loss, outputs, labels)). Nothing
    else is kept of the steps (airbench logs the last batch, as here): a running sum would
    cost the timed step launches of its own.

    `batches`: the loader's batches as iterated (default the loader; a progress bar over
    it); `wrap`: the network as the step runs it (DDP's wrapper); `after_step(step, loss,
    outputs, labels, index)`: what a run records of each step."""
    training, model = parts.training, parts.model
    if training.before_epoch is not None:
        training.before_epoch(epoch)
    # Under DDP (wrapped after before_epoch, which may stop a parameter training).
    stepped = wrap(model) if wrap is not None else model
    model.train()
    for inputs, labels in (loader if batches is None else batches):
        inputs, targets, labels, index = prepared_batch(training, inputs, labels, epoch,
                                                        parts.precision, loader.last_index)
        outputs, loss = training_step(stepped, inputs, targets, training.loss,
                                      training.optimizers, parts.schedulers, parts.precision)
        step += 1
        if after_step is not None:
            after_step(step, loss, outputs, labels, index)
        if training.average is not None:
            update_average(training, model, step)
        if step >= parts.steps:
            break
    # End on the averaged weights, once there are any (a run shorter than the averaging
    # period would otherwise end on its untrained initial weights), unless a lookahead
    # update has just put them there.
    if step >= parts.steps and training.average is not None:
        since = step - training.average_start
        if since >= training.average_every and not (
                training.average.copy_back and since % training.average_every == 0):
            training.average.copy_to(model)
    return step, (loss, outputs, labels)


def batch_metrics(loss, outputs, labels):
    """(the batch's summed loss, its correct predictions, its size), on the device."""
    return loss.detach().float(), (outputs.detach().argmax(1) == labels).sum(), len(labels)


def update_average(training, model, step: int) -> None:
    """After training step `step` (1-based): the average restarts from the weights at
    average_start, and is updated every average_every steps after it."""
    since = step - training.average_start
    if since == 0:
        training.average.restart(model)
    elif since > 0 and since % training.average_every == 0:
        training.average.update(model, training.average_decay(step))


def prepared_batch(training, inputs, labels, epoch: int, precision: Precision, index=None):
    """A loader's batch as the recipe trains on it: (inputs, targets, labels, index) after
    its selection of examples (if any; `labels` and the images' `index` in the training
    set are then the selected ones) and its batch_transform (targets: the labels, or e.g.
    cutmix's mixed ones)."""
    if training.select is not None:
        chosen = training.select(inputs, labels, precision.autocast)
        inputs, labels = inputs[chosen], labels[chosen]
        index = index[chosen] if index is not None else None
    targets = labels
    if training.batch_transform is not None:
        inputs, targets = training.batch_transform(inputs, labels, epoch)
    return inputs, targets, labels, index


def evaluation_model(parts: RunParts, step: int):
    """The network evaluated after step `step`: mid-run, an EMA that is kept apart from the
    weights, on a copy."""
    average = parts.training.average
    if (average is None or average.copy_back or step >= parts.steps
            or step < parts.training.average_start
            + parts.training.average_every):  # no average yet
        return parts.model
    return average.evaluation_model(parts.model)


def progress_bar(iterable, enabled: bool, **bar):
    """A tqdm bar over `iterable` when enabled (the epochs' bar holds the batches' bar)."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, disable=None, dynamic_ncols=True, **bar)
