"""A training session: a recipe name turned into finished runs.

`fastcifar.train(...)` and `fastcifar train` both come here. A session resolves the
recipe's config (keyword overrides checked like `--set`), loads the data once, optionally
takes its lr from the LR finder and warms up torch.compile, then trains `runs` seeds one
after another on one network, re-initialised in place for each, printing a row per epoch,
and returns their results with statistics. Given a run folder it records everything there
(report/records.py); a folder it continues must record this very session (reuse.py).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..bench.clocks import clock_note
from ..stats import summarize
from ..data import ImageData
from ..data.loader import DeviceData
from ..recipes import get_recipe
from ..recipes.fields import with_values
from ..report.lr_finder import write_result
from ..report.records import CONFIG, RunFolder
from ..report.table import Table, run_table
from ..report.trackers import Tracker, open_tracker
from ..train.checkpoint import CheckpointFolder
from ..train.data_parallel import DataParallel, check_data_parallel
from ..train.device import choose_precision, configure_backend, device_name, resolve_device
from ..train.distributed import (Ranks, device_name as rank_device, from_environment,
                                 gather, process_group)
from ..train.example_records import all_examples
from ..train.inputs import (check_size, compiler, data_name, removed_if_unused,
                            session_data)
from ..train.loop import train_run
from ..train.lr_finder import lr_from_finder
from ..train.results import EpochRecord, RunResult, TrainResult
from ..train.seeds import RunSeeds
from ..train.setup import set_up_run
from ..train.warmup import needs_warmup, warmup_configs
from .reuse import finished_before, session_record
from .settings import DEFAULT_RECIPE, SessionSettings

FINDER = "run the finder"  # lr_from_finder=FINDER: run the LR finder first

def train(recipe: str = DEFAULT_RECIPE, data: str | Path | ImageData | None = None, *,
          runs: int = 1, seed: int = 0, epochs: float | None = None, device: str = "auto",
          precision: str = "auto", subset: int | None = None, test_subset: int | None = None,
          subset_seed: int = 0, init_seed: int | None = None, order_seed: int | None = None,
          augment_seed: int | None = None, size: str | None = None, compile: bool | str = False,
          checkpoints: bool | None = None, lr_from_finder: str | Path | None = None,
          ddp: bool = False, record_examples: bool = False, progress: bool | None = None,
          out: str | Path | None = None, reuse: bool = False, verbose: bool = True,
          on_epoch: Callable[[EpochRecord], None] | None = None, on_run: Callable | None = None,
          on_start: Callable[[dict], None] | None = None, tracker: str | None = None,
          **overrides) -> TrainResult:
    """Train `runs` runs of `recipe` (seeds seed, seed+1, ...) and return their results.

    `data`: a path (an image-folder directory or archive), "cifar10", "imagewoof",
    "imagenette", an ImageData, or None for the recipe's own. `subset`, `test_subset`:
    class-balanced subsets of that many training or test images, drawn by `subset_seed`
    (data, the same for every run). `init_seed`, `order_seed`, `augment_seed`: the
    network's initialisation, the images' order and their augmentation fixed apart from
    `seed`, the same for every run (see train/seeds.py). `overrides`: recipe hyperparameters by name
    (`fastcifar recipes --show NAME` lists them), checked like `--set`. `out`: a run folder
    to record everything in (nothing is written without one); `checkpoints` (there) make
    it resumable. `reuse`: an `out` that already holds a session is continued, not
    refused, if it was made with the same recipe source, data and settings (its finished
    runs read back, the rest trained); if not, refused with what differs. Only the last
    run keeps its network (`.model`): a battery would otherwise hold every one in memory.
    `compile`: True or a torch.compile mode: the network is compiled once, with static
    shapes, in an untimed warm-up run, and every run re-initialises it in place. Dynamo's
    cache is emptied first (torch._dynamo.reset()): sessions before this one in the process
    would otherwise have filled it (another airbench recipe shares the network's forward).
    `lr_from_finder`: a saved LR-finder result, or FINDER to run it. `on_epoch`: called
    with each epoch's EpochRecord (what `fastcifar tune` prunes by). `ddp`, under torchrun:
    the ranks train each run together, data-parallel (see train/data_parallel.py), instead
    of a share of the runs each. `record_examples`: what every training image did in every
    epoch, on each run's result (`.examples`) and in the run folder's examples.npz (see
    train/example_records.py). `on_start`: called with what the run folder would record (the
    settings, the config, the digests of the recipe source and the data) once the data is
    loaded, before any run: it may refuse with an InputError (`fastcifar tune` checks that
    a study's trials share everything but their own values). `on_run`: called with each
    RunResult on the rank that trained it (`.model` set), untimed, before it is recorded.
    `tracker`: "wandb" or "mlflow" also gets the settings, every epoch and every result."""
    recipe_obj = get_recipe(recipe)
    check_size(size, data or recipe_obj.default_data)
    config = with_values(recipe_obj.config, overrides)
    if epochs is not None:
        config = with_values(config, {"epochs": epochs})
    config.validate()
    settings = SessionSettings(
        recipe=recipe_obj.name, data=data_name(data) or recipe_obj.default_data, size=size,
        subset=subset, test_subset=test_subset, subset_seed=subset_seed, runs=runs, seed=seed,
        init_seed=init_seed, order_seed=order_seed, augment_seed=augment_seed,
        precision=precision, compile=compile,
        checkpoints=(checkpoints if checkpoints is not None
                     else recipe_obj.checkpoints and out is not None),
        lr_from_finder=None if lr_from_finder is None else str(lr_from_finder), ddp=ddp,
        record_examples=bool(record_examples))
    settings.check(has_folder=out is not None)
    ranks = from_environment()  # under torchrun: this process's share of the runs
    if ddp and ranks.world > 1:
        check_data_parallel(recipe_obj, config, ranks.world)
    device = resolve_device(rank_device(ranks, device))
    # "wandb" or "mlflow" (report/trackers.py), on rank 0, named after the run folder
    tracking = open_tracker(tracker, Path(out).name if out is not None else recipe_obj.name
                            ) if ranks.leader else None
    folder = None  # rank 0 alone writes the run folder (and refuses one in use, unless reused)
    if out is not None and ranks.leader:
        folder = RunFolder(out) if reuse and (Path(out) / CONFIG).exists() else RunFolder.new(out)
    with removed_if_unused(folder):
        return Session(recipe_obj, config, settings, device, data, folder, progress,
                       verbose and ranks.leader, ranks, on_epoch, on_start, on_run,
                       reuse=reuse and out is not None, tracker=tracking).run()


class Session:
    def __init__(self, recipe, config, settings: SessionSettings, device: torch.device, data,
                 out: RunFolder | None, progress: bool | None, verbose: bool,
                 ranks: Ranks = Ranks(), on_epoch: Callable[[EpochRecord], None] | None = None,
                 on_start: Callable[[dict], None] | None = None, on_run: Callable | None = None,
                 reuse: bool = False, tracker: Tracker | None = None):
        """`reuse`: `out` may hold this session already (a resume, a battery or an
        ablation's variant run again), which is then continued (see reuse.py)."""
        self.recipe, self.config, self.settings = recipe, config, settings
        self.device, self.data_source, self.out, self.verbose = device, data, out, verbose
        self.precision = choose_precision(settings.precision, device, recipe.mixed_precision)
        if progress is None:
            progress = device.type != "cuda" or recipe.progress_on_gpu
        self.progress = progress and verbose
        self.ranks, self.on_epoch, self.on_start, self.reuse = ranks, on_epoch, on_start, reuse
        self.on_run = on_run or (lambda run: None)
        self.tracker = tracker
        self.group = (DataParallel(ranks, device)
                      if settings.ddp and ranks.world > 1 else None)
        self.network = None  # built by the first run, re-initialised by the others

    def say(self, line: str) -> None:
        """Print a line; under progress bars through tqdm, so that it lands above them."""
        if self.verbose:
            (tqdm.write if self.progress else print)(line)

    def run(self) -> TrainResult:
        """Train the runs the run folder does not hold finished yet (all of them in a new
        one, which first records the session's start)."""
        configure_backend(self.device)
        try:
            with process_group(self.ranks, self.device):
                return self.run_all()
        finally:
            if self.tracker is not None:
                self.tracker.close()

    def run_all(self) -> TrainResult:
        dataset, data, load_seconds = self.load_data()
        checked = self.out is not None or self.on_start is not None  # (hashing the data costs)
        record = session_record(self.recipe, self.config, self.settings, self.device,
                                dataset) if checked else None
        if self.on_start is not None:
            self.on_start(record)
        finished = (finished_before(self.out, self.ranks, record, self.config, self.settings,
                                    self.say) if self.reuse else None)
        if finished is not None and len(finished) >= self.settings.runs:
            self.say(f"{self.out.path if self.out else 'the run folder'} is already finished: "
                     f"{len(finished)} of {self.settings.runs} run(s); nothing to train "
                     f"(its results are in summary.json)")
            return _result(self.recipe.name, self.config, finished,
                           self.out.path if self.out else None, read_back=len(finished))
        self.say(f"recipe: {self.recipe.name} on {device_name(self.device)}, "
                 f"torch {torch.__version__}")
        if self.group is not None:
            world, batch = self.group.world, self.config.batch_size
            self.say(f"data-parallel over {world} ranks: {batch // world} of each batch of "
                     f"{batch} per rank, BatchNorm "
                     f"{'over the whole batch' if self.config.sync_bn else 'per rank'}")
        elif self.settings.ddp or self.config.sync_bn:
            self.say("note: --ddp and sync_bn act only under torchrun with more than one "
                     "process (or --gpus N); this run trains in this process alone")
        if finished is None and self.settings.lr_from_finder is not None:
            self.take_lr_from_finder(data)
        if self.tracker is not None:  # (before the run folder records anything)
            self.tracker.start({**self.settings.record(),
                                "config": dataclasses.asdict(self.config)})
        if finished is None and self.out is not None:
            self.check_recipe_builds(data)  # nothing written for a recipe that cannot
            self.out.record_start(self.recipe, self.config, self.settings.record(),
                                  str(self.device),
                                  dataset.classes, dataset.image_size[0], record["data_sha256"])
        if self.settings.compile:  # Dynamo keeps up to 8 compiled entries per code object:
            torch._dynamo.reset()  # sessions before this one (the same forward) must not use them
        warmup_seconds = (self.warmup(data) if needs_warmup(self.device, self.settings.compile)
                          else 0.0)

        results, table = list(finished or []), run_table(self.say)
        while len(results) < self.settings.runs:
            for r in results:
                r.model = None
            done = self.one_round(len(results), data, table)
            for i, r in enumerate(done if self.tracker is not None else (), len(results) + 1):
                self.tracker.finish_run(i, r.as_dict())
            results.extend(done)
            examples = (all_examples(results, self.subsets)
                        if self.settings.record_examples else None)
            if self.out is not None and examples is not None:
                self.out.save_examples(examples)
            if self.out is not None:  # the model first: the summary declares the runs done
                model = next((r.model for r in results if r.model is not None), None)
                if model is not None:
                    self.out.save_model(model)
                self.out.record_summary(self.recipe, self.settings.record(), dataset, self.device,
                                        results, load_seconds, warmup_seconds)
        result = _result(self.recipe.name, self.config, results,
                         self.out.path if self.out else None, read_back=len(finished or []))
        result.examples = examples
        self.say(f"\n{self.recipe.name}: accuracy {result.accuracy.percent()} over "
                 f"{len(results)} run(s); timed seconds per run {result.seconds.mean:.2f}"
                 f"{clock_note(self.recipe.name, results)}")
        if self.out is not None:
            self.say(f"run folder: {self.out.path}")
        return result

    def check_recipe_builds(self, data: DeviceData) -> None:
        """Build and set up the recipe's network once, untimed, before the run folder
        records anything: a recipe (a file of the user's) that raises in build_model or
        setup leaves no half-written folder behind. Each run seeds itself, so this draws
        from no run's generators."""
        set_up_run(self.recipe, self.config, data.train_images, self.device,
                   self.settings.precision, data.num_classes)

    def load_data(self):
        """(the dataset, its DeviceData, the seconds it took): see inputs.session_data."""
        dataset, data, seconds, self.subsets = session_data(
            self.data_source, self.recipe, self.config, self.settings.record(), self.device,
            self.precision.weights, self.say)
        return dataset, data, seconds

    def take_lr_from_finder(self, data: DeviceData) -> None:
        source = self.settings.lr_from_finder
        saved = None if source == FINDER else Path(source)
        self.config, message = lr_from_finder(
            saved, self.recipe, self.config, data, self.device, self.settings.seed,
            save=(lambda result: write_result(result, self.out.path / "lr_find"))
            if self.out is not None else None,
            precision=self.settings.precision)
        self.say(message)

    def warmup(self, data: DeviceData) -> float:
        """The untimed warm-up runs (warmup.py) on the session's network."""
        t0, compile_ = time.perf_counter(), self.settings.compile
        for config in warmup_configs(self.config, compile_, len(data.train_images)):
            self.train_seed(config, data, self.settings.seed - 1)
        seconds = time.perf_counter() - t0
        self.say(f"warm-up run{' (compile)' if compile_ else ''}: {seconds:.1f} s (not timed)")
        return seconds

    def record_epoch(self, row: dict) -> None:
        """An epoch's metrics row, to the run folder and the tracker, if any."""
        if self.out is not None:
            self.out.add_metrics(row)
        if self.tracker is not None:
            self.tracker.epoch(row)

    def one_round(self, first: int, data: DeviceData, table: Table) -> list[RunResult]:
        """Runs first, first+1, ... one per rank (one run without torchrun), gathered on
        every rank; rank 0 records the others' epochs. Only this rank's newest network is
        kept (a battery of 200 would otherwise hold 200). Data-parallel: run `first`, by
        every rank together."""
        if self.group is not None:
            return [self.one_run(first, data, table)]
        index, ranks = first + self.ranks.rank, self.ranks
        mine = self.one_run(index, data, table) if index < self.settings.runs else None
        model = mine.model if mine is not None else None
        if mine is not None:
            mine.model, mine.rank, mine.host = None, ranks.rank, ranks.host  # not sent
        gathered = gather(ranks, mine)
        if mine is not None:
            gathered[ranks.rank].model = model
        done = [r for r in gathered if r is not None]
        for i, r in enumerate(done, first):
            if r.rank != ranks.rank:
                for e in r.epochs:
                    self.record_epoch({"run": i + 1, "seed": r.seed, **dataclasses.asdict(e)})
                table.row({"run": i + 1, "epoch": f"rank {r.rank}", "tta_val_acc": r.accuracy,
                           "time_seconds": r.seconds})
        return done

    def one_run(self, i: int, data: DeviceData, table: Table) -> RunResult:
        seeds, out = self.settings.run_seeds(i), self.out
        seed = seeds.run

        def on_epoch(r):
            table.row({"run": i + 1, "epoch": str(r.epoch), "train_loss": r.train_loss,
                       "train_acc": r.train_accuracy, "val_acc": r.val_accuracy,
                       "val_top5": r.val_top5, "time_seconds": r.train_seconds})
            self.record_epoch({"run": i + 1, "seed": seed, **dataclasses.asdict(r)})
            if self.on_epoch is not None:
                self.on_epoch(r)

        folder = None
        if self.settings.checkpoints and out is not None:
            path = out.path if self.settings.runs == 1 else out.path / f"run-{i + 1}"
            folder = CheckpointFolder(path)
            if (state := folder.resume_state()) is not None:
                out.set_metrics([*out.metric_rows, *({"run": i + 1, "seed": seed, **r}
                                                     for r in state["records"])])
                self.say(f"run {i + 1}: continuing from epoch {state['epoch']} "
                         f"({folder.path / 'last.pt'})")
        result = self.train_seed(self.config, data, seeds, on_epoch=on_epoch,
                                 progress=self.progress, checkpoints=folder)
        table.row({"run": i + 1, "epoch": "eval", "tta_val_acc": result.accuracy,
                   "time_seconds": result.seconds})
        self.on_run(result)
        return result

    def train_seed(self, config, data: DeviceData, seed: int | RunSeeds,
                   **options) -> RunResult:
        """One run on the session's network: the first run builds (and compiles) it, the
        others re-initialise it in place, as airbench's scripts do. A new network per run
        would be compiled anew: its CUDA graphs recorded again (they hold the parameters'
        addresses), in the timed run. With sync_bn over data-parallel ranks each run builds
        its own (see loop.train_run)."""
        result = train_run(self.recipe, config, data, self.device, seed, model=self.network,
                           model_transform=compiler(self.settings.compile),
                           precision=self.settings.precision, group=self.group,
                           record_examples=self.settings.record_examples, **options)
        if self.group is None or not config.sync_bn:
            self.network = result.model
        return result


def _result(recipe: str, config, runs: list[RunResult], out: Path | None,
            read_back: int = 0) -> TrainResult:
    return TrainResult(recipe, config, runs, out, summarize([r.accuracy for r in runs]),
                       summarize([r.seconds for r in runs]), read_back=read_back)
