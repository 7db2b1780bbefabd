"""`fastcifar tune`: a hyperparameter search with Optuna, in which every trial is a normal
fastcifar run whose folder is kept.

The search space names recipe hyperparameters, searched in the recipe's own coordinates
(the airbench family's lr and weight decay are already decoupled from the batch size and
from each other, the directions Page's DAWNBench notes found to matter):

    lr=4:20:log, momentum=0.8:0.95, flip=random|alternating

Each trial reports its validation accuracy after every epoch, so the pruner (median by
default) can stop unpromising ones early. The study lives in Optuna's storage: by default
a journal file in the tune folder, which any number of processes on the machine (for
example the ranks of `torchrun`, each on its own GPU) share; on several machines, a
journal file on a shared filesystem or a database URL. Every worker pulls trials until
the study holds the requested number of finished ones.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, RunFailed
from ..files import atomic_path
from ..recipes import get_recipe
from ..recipes.fields import with_values
from ..report.plots import save_png
from ..report.tuning import history_figure, importance_caveat, importance_figure, slice_figure
from ..train.distributed import device_name as rank_device, from_environment
from .session import train
from .settings import DEFAULT_RECIPE
from .tune_space import check_session, check_space, parse_space

OBJECTIVES = ("accuracy", "accuracy_no_tta")  # both maximised
PRUNERS = ("median", "none")
JOURNAL = "study.journal"
WORKER = f"{socket.gethostname()}:{os.getpid()}" + (
    f" rank {os.environ['RANK']}" if "RANK" in os.environ else "")


def open_storage(spec: str | None, folder: Path):
    """Optuna storage: a journal file in `folder` (None), a journal file by path
    (`journal:PATH`, or a path ending in .journal or .log), else a database URL."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    path = (folder / JOURNAL if spec is None else Path(spec[8:]) if spec.startswith("journal:")
            else Path(spec) if spec.endswith((".journal", ".log")) else None)
    if path is None:
        try:
            return optuna.storages.RDBStorage(spec)
        except ImportError as e:
            raise InputError(f"--storage {spec}: a database needs SQLAlchemy and its driver "
                             f"({e})") from None
        except Exception as e:  # noqa: BLE001 (SQLAlchemy raises many kinds)
            raise InputError(f"--storage {spec}: cannot open it ({e})") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    except OSError as e:
        raise InputError(f"--storage {path}: cannot write there ({e.strerror or e})") from None


@dataclass
class TuneResult:
    study_name: str
    best_params: dict
    best_value: float | None
    trials: list[dict]  # one row per trial: number, state, value, params, folder
    out: Path
    command: str  # the best configuration as a `fastcifar train` line


def tune(recipe: str = DEFAULT_RECIPE, space: str = "", trials: int = 20, *,
         objective: str = "accuracy", storage: str | None = None, study: str | None = None,
         out: str | Path = "runs/tune", pruner="median", sampler=None, seed: int = 0,
         verbose: bool = True, **train_options) -> TuneResult:
    """Search `space` (see parse_space) for `trials` trials in all (over every worker
    sharing the study), each `fastcifar.train(recipe, seed=seed, **train_options)` plus
    the trial's values, in its own folder under `out`/trials. `pruner` and `sampler` may
    be Optuna objects; the defaults are the median pruner and TPE."""
    try:
        import optuna
    except ImportError:
        raise InputError('tuning needs Optuna: pip install "fastcifar[tune]"') from None
    recipe_obj = get_recipe(recipe)
    fixed = {k: v for k, v in train_options.items() if v is not None}
    fields = {f.name for f in dataclasses.fields(recipe_obj.config)}
    held = with_values(recipe_obj.config, {k: v for k, v in fixed.items() if k in fields})
    held.validate()
    dims = parse_space(space, recipe_obj.name, held)
    if objective not in OBJECTIVES:
        raise InputError(f"--objective {objective!r}: expected one of {', '.join(OBJECTIVES)}")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise InputError(f"--trials must be a positive integer, got {trials!r}")
    if isinstance(pruner, str):
        if pruner not in PRUNERS:
            raise InputError(f"--pruner {pruner!r}: expected one of {', '.join(PRUNERS)}")
        pruner = optuna.pruners.MedianPruner() if pruner == "median" else optuna.pruners.NopPruner()
    # A torchrun worker tunes on its own GPU (its trials run as single processes, below).
    fixed["device"] = rank_device(from_environment(), fixed.get("device", "auto"))
    out = Path(out)
    study_name = study or f"{recipe_obj.name}-tune"
    # Optuna's own lines (a failed trial's traceback among them) give way to ours.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    the_study = optuna.create_study(
        storage=open_storage(storage, out), study_name=study_name, load_if_exists=True,
        direction="maximize", pruner=pruner, sampler=sampler or optuna.samplers.TPESampler())
    where = (out / JOURNAL, "--out folder") if storage is None else ("the --storage given",
                                                                      "--study name")
    check_space(the_study, dims, *where)

    def run_trial(trial) -> float:
        values = {d.name: d.suggest(trial) for d in dims}
        folder = out / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("folder", str(folder))
        trial.set_user_attr("worker", WORKER)

        def report(record) -> None:
            trial.report(record.val_accuracy, record.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {record.epoch}: validation accuracy "
                                         f"{record.val_accuracy:.4f}")

        def same_study(record: dict) -> None:
            check_session(the_study, record, dims, *where)

        try:
            with _one_process():
                result = train(recipe_obj, out=folder, seed=seed, on_epoch=report,
                               on_start=same_study, verbose=False, progress=False, **fixed,
                               **values)
        except RunFailed as e:  # e.g. a diverging lr: a result of the search, not its end
            trial.set_user_attr("error", str(e))
            if verbose:
                print(f"trial {trial.number}: failed: {e}")
            return float("nan")  # Optuna's mark of a failed trial
        except InputError as e:  # the settings themselves: every trial would fail so
            refused.append(InputError(f"trial {trial.number} ({folder}): {e}"))
            the_study.stop()
            return float("nan")
        run = result.runs[0]
        trial.set_user_attr("seconds", run.seconds)
        value = run.accuracy if objective == "accuracy" else run.accuracy_no_tta
        if verbose:
            shown = (f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in values.items())
            print(f"trial {trial.number}: {objective} {value:.4f} with {', '.join(shown)}")
        return value

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    stop = optuna.study.MaxTrialsCallback(trials, states=done)
    refused: list[InputError] = []
    if len(the_study.get_trials(deepcopy=False, states=done)) < trials:
        the_study.optimize(run_trial, n_trials=trials, callbacks=[stop],
                           catch=(), gc_after_trial=True)
    if refused:
        raise refused[0]
    return _report(the_study, recipe_obj.name, dims, fixed, seed, out, verbose)


@contextlib.contextmanager
def _one_process():
    """Under torchrun each rank is a worker of its own: its trials are single runs, not a
    battery shared over the ranks (see train/distributed.py)."""
    world = os.environ.pop("WORLD_SIZE", None)
    try:
        yield
    finally:
        if world is not None:
            os.environ["WORLD_SIZE"] = world


def _report(study, recipe: str, dims, fixed: dict, seed: int, out: Path,
            verbose: bool) -> TuneResult:
    """trials.csv, the plots, and the best configuration as a command line."""
    import optuna
    # A pruned trial's value in Optuna is its last validation accuracy mid-run: not the
    # objective, so left empty here (its "epochs" say where it stopped).
    rows = [{"number": t.number, "state": t.state.name.lower(),
             "value": t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
             "epochs": len(t.intermediate_values), **t.params,
             "seconds": t.user_attrs.get("seconds"), "folder": t.user_attrs.get("folder"),
             "worker": t.user_attrs.get("worker"), "error": t.user_attrs.get("error")}
            for t in study.get_trials(deepcopy=False)]
    names = [d.name for d in dims]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["number", "state", "value", "epochs", *names, "seconds",
                                     "folder", "worker", "error"], extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(out / "trials.csv") as tmp:
        tmp.write_text(buffer.getvalue())
    complete = [r for r in rows if r["state"] == "complete"]
    best = max(complete, key=lambda r: r["value"]) if complete else None
    best_params = {k: best[k] for k in names} if best else {}
    flags = ("data", "subset", "test_subset", "subset_seed", "epochs", "device", "precision",
             "image_size", "size")
    options = " ".join(f"--{k.replace('_', '-')} {v:g}" if isinstance(v, float) else
                       f"--{k.replace('_', '-')} {v}" for k, v in fixed.items() if k in flags)
    fields = {f.name for f in dataclasses.fields(get_recipe(recipe).config)}
    held = {k: v for k, v in fixed.items() if k in fields and k not in flags}
    sets = " ".join(f"--set {k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
                    for k, v in {**held, **best_params}.items())
    command = f"fastcifar train --recipe {recipe} {options} {sets} --seed {seed}".replace("  ", " ")
    save_png(history_figure(rows, study.study_name), out / "history.png")
    save_png(slice_figure(rows, dims), out / "slice.png")
    importances = {}
    if len(complete) >= 2 and len(names) > 1:
        importances = optuna.importance.get_param_importances(study)
        save_png(importance_figure(importances, study.study_name, len(complete)),
                 out / "importances.png")
    if verbose:
        print(f"{len(complete)} complete, {sum(r['state'] == 'pruned' for r in rows)} pruned, "
              f"{sum(r['state'] == 'fail' for r in rows)} failed of {len(rows)} trials in "
              f"study {study.study_name}; wrote {out / 'trials.csv'}")
        if best:
            print(f"best: trial {best['number']}, {best['value']:.4f} ({best['folder']})")
            print(command)
        if importances:
            print(f"importances ({importance_caveat(len(complete))}): "
                  + ", ".join(f"{k} {v:.0%}" for k, v in importances.items()))
        elif len(names) == 1:
            print("no importances.png: one parameter searched has all the importance there is "
                  "(they share the objective's variance among two or more)")
    return TuneResult(study.study_name, best_params, best["value"] if best else None, rows,
                      out, command)


__all__ = ["TuneResult", "tune"]
