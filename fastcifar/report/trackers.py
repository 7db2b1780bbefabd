"""Experiment trackers, optional: a session's settings, each run's epochs and its results
sent to Weights & Biases or MLflow as well as to the run folder (which TensorBoard's event
files already cover). Every call comes from the session between epochs or after a run,
never inside a timed span, and a tracker that is not installed is refused before any work.

    fastcifar train --tracker wandb     # pip install fastcifar[wandb]; WANDB_MODE=offline works
    fastcifar train --tracker mlflow    # pip install fastcifar[mlflow]; MLFLOW_TRACKING_URI

W&B gets one run per fastcifar run, grouped by session; MLflow one parent run per session
with a nested run per fastcifar run. Metrics are logged against the epoch.
"""

from __future__ import annotations

import importlib

from ..errors import InputError

TRACKERS = ("wandb", "mlflow")
PROJECT = "fastcifar"  # W&B's project and MLflow's experiment, unless their variables say


def flat(record: dict, prefix: str = "") -> dict:
    """A nested record (the config inside the settings) as one level of dotted keys, each
    value a number, a string, a bool or None (a tuple as its text)."""
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[f"{prefix}{key}"] = value
        else:
            out[f"{prefix}{key}"] = str(value)
    return out


def epoch_metrics(row: dict) -> dict:
    """The numbers of a metrics row (metrics.csv's), less its run and epoch."""
    return {k: v for k, v in row.items()
            if k not in ("run", "epoch", "seed") and isinstance(v, (int, float))
            and not isinstance(v, bool)}


class Tracker:
    """What the session calls: `start` once with its settings, `epoch` with each epoch's
    metrics row (run numbers from 1), `finish_run` with each run's results, `close` last."""

    def __init__(self, module, session: str):
        self.module, self.session = module, session

    def start(self, record: dict) -> None:
        self.settings = flat(record)

    def epoch(self, row: dict) -> None:
        raise NotImplementedError

    def finish_run(self, run: int, results: dict) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class WandbTracker(Tracker):
    def __init__(self, module, session: str):
        super().__init__(module, session)
        self.runs: dict[int, object] = {}

    def _run(self, run: int):
        if run not in self.runs:
            self.runs[run] = self.module.init(project=PROJECT, group=self.session,
                                              name=f"{self.session}-run-{run}",
                                              config=self.settings, reinit=True)
        return self.runs[run]

    def epoch(self, row: dict) -> None:
        self._run(row["run"]).log({"epoch": row["epoch"], **epoch_metrics(row)})

    def finish_run(self, run: int, results: dict) -> None:
        tracked = self._run(run)
        tracked.summary.update(results)
        tracked.finish()
        del self.runs[run]

    def close(self) -> None:
        for tracked in self.runs.values():
            tracked.finish()
        self.runs.clear()


class MlflowTracker(Tracker):
    def __init__(self, module, session: str):
        super().__init__(module, session)
        self.children: dict[int, str] = {}
        self.parent = None

    def start(self, record: dict) -> None:
        super().start(record)
        self.module.set_experiment(PROJECT)
        self.parent = self.module.start_run(run_name=self.session)
        self.module.log_params(self.settings)

    def _activate(self, run: int) -> None:
        """Make fastcifar run `run`'s nested run the active one (made on first use)."""
        active = self.module.active_run()
        if active is not None and run in self.children and \
                active.info.run_id == self.children[run]:
            return
        if active is not None and active.info.run_id != self.parent.info.run_id:
            self.module.end_run()  # another fastcifar run's
        if run in self.children:
            self.module.start_run(run_id=self.children[run], nested=True)
        else:
            child = self.module.start_run(run_name=f"run-{run}", nested=True)
            self.children[run] = child.info.run_id

    def epoch(self, row: dict) -> None:
        self._activate(row["run"])
        self.module.log_metrics(epoch_metrics(row), step=int(row["epoch"]))

    def finish_run(self, run: int, results: dict) -> None:
        self._activate(run)
        self.module.log_metrics({k: v for k, v in results.items()
                                 if isinstance(v, (int, float)) and not isinstance(v, bool)})
        self.module.end_run()

    def close(self) -> None:
        while self.module.active_run() is not None:
            self.module.end_run()


def open_tracker(name: str | None, session: str) -> Tracker | None:
    """The tracker `name` asks for (None: none), its package imported now: one missing is
    refused before any work, with the extra that installs it."""
    if name is None:
        return None
    if name not in TRACKERS:
        raise InputError(f"tracker must be one of {', '.join(TRACKERS)}, got {name!r}")
    try:
        module = importlib.import_module(name)
    except ImportError:
        raise InputError(f"--tracker {name}: {name} is not installed "
                         f"(pip install fastcifar[{name}])") from None
    return (WandbTracker if name == "wandb" else MlflowTracker)(module, session)
