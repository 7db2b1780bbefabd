"""A search's study (benchmarks/search.py): its state in a folder, continued by a later call
only if made with the same settings, and the rule that judges and promotes its candidates.

The folder holds study.json (the settings, the candidates, each call), trials.jsonl (a line
per run, written as each run ends), table.md and table.csv (a row per candidate) and
search.log.

The rule. Every candidate, and the baseline (the recipe as it is, candidate 0), runs the
same seeds: seed, seed + 1, ... Successive halving: rung k brings every candidate still in
to rungs[k] runs (1, 3, 8 by default); then the `keep` fraction of them (a third) with the
best scores go on to the next rung, the baseline always. A candidate's score, over its runs
of the rung's seeds (lower is better):

    score = time ratio x (1 + penalty x shortfall in percentage points)
    time ratio = median seconds on the clock / the baseline's, on the same seeds
    shortfall = target accuracy - mean validation accuracy, where positive (else 0);
        the target "baseline" (default): the baseline's mean on the same seeds

(penalty 1.0: 0.1 point short counts as 10% more time). A run that fails puts its candidate
out. The winner: the best score among those that ran the last rung.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import statistics
import time
from pathlib import Path

from fastcifar.errors import InputError
from fastcifar.files import atomic_path
from result_files import read_json, write_json
from search_space import shown

STUDY, TRIALS, TABLE_MD, TABLE_CSV, LOG = ("study.json", "trials.jsonl", "table.md",
                                          "table.csv", "search.log")
FILES = (STUDY, TRIALS, TABLE_MD, TABLE_CSV, LOG)
CONFIRM_FILES = ("confirm.json", "confirm.md")  # search_confirm.py's
BASELINE = 0  # the candidate that is the recipe itself


class Study:
    def __init__(self, folder: Path, settings: dict, candidates: list[dict],
                 runs: list[dict] | None = None, calls: list[dict] | None = None):
        self.folder, self.settings, self.candidates = Path(folder), settings, candidates
        self.runs, self.calls = runs or [], calls or []

    # The folder.
    @classmethod
    def open(cls, folder: Path, settings: dict, make_candidates) -> "Study":
        """The study in `folder`, if made with these settings (refused, naming what differs,
        if not), else a new one with the candidates make_candidates() draws."""
        folder = Path(folder)
        if not (folder / STUDY).is_file():
            baseline = {"values": {}, "overrides": {}}
            study = cls(folder, settings, [{"id": i, **c} for i, c in
                                           enumerate([baseline, *make_candidates()])])
            study.save()
            return study
        study = cls.read(folder)
        found = [f"{k}: {json.dumps(study.settings.get(k))} there, {json.dumps(v)} here"
                 for k, v in settings.items() if study.settings.get(k) != v]
        if found:
            raise InputError(f"the study in {folder} was made with other settings ("
                             f"{'; '.join(found)}): give the ones it was made with to "
                             f"continue it, or a new --study folder")
        return study

    @classmethod
    def read(cls, folder: Path) -> "Study":
        """The study in `folder` as it is (refused in a line if there is none)."""
        folder = Path(folder)
        if not (folder / STUDY).is_file():
            raise InputError(f"--study {folder}: no {STUDY} there (run `search.py run` first, "
                             f"or give the folder a lease returned)")
        try:
            saved = read_json(folder / STUDY)
            saved = saved["settings"], saved["candidates"], saved["calls"]
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{folder / STUDY} is damaged ({e}): give the study a call "
                             f"returned, whole") from None
        return cls(folder, *saved[:2], read_runs(folder / TRIALS), saved[2])

    def save(self) -> None:
        state = self.state()
        write_json(self.folder / STUDY, {"settings": self.settings, "candidates":
                                         self.candidates, "calls": self.calls, **state})

    def add_run(self, run: dict) -> None:
        """A run, into trials.jsonl at once (a call cut off keeps every run it finished)."""
        self.runs.append(run)
        with open(self.folder / TRIALS, "a") as f:
            f.write(json.dumps(run) + "\n")

    def say(self, line: str) -> None:
        print(line, flush=True)
        with open(self.folder / LOG, "a") as f:
            f.write(line + "\n")

    # The rule.
    def runs_of(self, candidate: int, upto: int | None = None) -> list[dict]:
        """The candidate's runs of seeds seed .. seed + upto - 1, by seed."""
        first = self.settings["seed"]
        last = first + (upto if upto is not None else 1 << 30)
        return sorted((r for r in self.runs if r["candidate"] == candidate
                       and first <= r["seed"] < last), key=lambda r: r["seed"])

    def judge(self, candidate: int, upto: int) -> dict:
        """The candidate's figures over its runs of the first `upto` seeds (see the rule)."""
        mine, base = self.runs_of(candidate, upto), self.runs_of(BASELINE, upto)
        if any(r.get("failed") for r in mine):
            return {"runs": len(mine), "score": math.inf, "failed": True}
        if not mine:
            return {"runs": 0, "score": math.inf}
        clock = "record_seconds" if self.settings["clock"] == "record" else "train_seconds"
        accuracy = statistics.mean(r["accuracy"] for r in mine)
        seconds = statistics.median(r[clock] for r in mine)
        shared = {r["seed"]: r for r in base if not r.get("failed")}
        paired = [r for r in mine if r["seed"] in shared]
        figures = {"runs": len(mine), "accuracy": accuracy, "seconds": seconds,
                   "train_seconds": statistics.median(r["train_seconds"] for r in mine)}
        if not paired:  # (the baseline runs first in every rung: only a cut-off call)
            return {**figures, "score": math.inf}
        base_accuracy = statistics.mean(shared[r["seed"]]["accuracy"] for r in paired)
        target = (base_accuracy if self.settings["target"] == "baseline"
                  else float(self.settings["target"]))
        ratio = seconds / statistics.median(shared[r["seed"]][clock] for r in paired)
        shortfall = max(0.0, target - accuracy) * 100
        return {**figures, "vs_baseline": (accuracy - base_accuracy) * 100, "ratio": ratio,
                "score": ratio * (1 + self.settings["penalty"] * shortfall)}

    def ladder(self) -> tuple[list[list[int]], tuple[int, int, list[int]] | None]:
        """Who ran in each rung so far, and the next trial: (candidate, rung, the seeds it
        still lacks), None when the study is finished. A pure function of the runs
        recorded: a later call recomputes it and goes on where the last stopped."""
        rungs, alive = self.settings["rungs"], [c["id"] for c in self.candidates]
        ladder = []
        for k, total in enumerate(rungs):
            ladder.append(alive)
            for candidate in alive:
                done = {r["seed"] for r in self.runs_of(candidate, total)}
                if any(r.get("failed") for r in self.runs_of(candidate, total)):
                    continue
                seeds = [s for s in range(self.settings["seed"], self.settings["seed"] + total)
                         if s not in done]
                if seeds:
                    return ladder, (candidate, k, seeds)
            if k + 1 < len(rungs):
                alive = [BASELINE, *self.promoted(alive, total)]
                if alive == [BASELINE]:  # every candidate out: nothing left to judge
                    break
        return ladder, None

    def promoted(self, alive: list[int], total: int) -> list[int]:
        """The best `keep` fraction of a rung's candidates (the baseline aside), best first."""
        ranked = sorted((c for c in alive if c != BASELINE),
                        key=lambda c: (self.judge(c, total)["score"], c))
        ranked = [c for c in ranked if math.isfinite(self.judge(c, total)["score"])]
        return ranked[:max(1, math.ceil(len(ranked) * self.settings["keep"]))] if ranked else []

    def state(self) -> dict:
        """Whether the study is finished, its winner (or the leader so far) and each rung."""
        ladder, nxt = self.ladder()
        rungs = self.settings["rungs"]
        last = len(ladder) - 1
        contenders = [c for c in ladder[last] if c != BASELINE] if ladder else []
        scored = sorted(contenders, key=lambda c: (self.judge(c, rungs[last])["score"], c))
        best = scored[0] if scored and math.isfinite(
            self.judge(scored[0], rungs[last])["score"]) else None
        return {"finished": nxt is None, "winner" if nxt is None else "leader": best,
                "rungs": [{"runs": rungs[k], "candidates": ids}
                          for k, ids in enumerate(ladder)],
                "next": None if nxt is None else {"candidate": nxt[0], "rung": nxt[1] + 1,
                                                  "seeds": nxt[2]}}

    def winner(self) -> int | None:
        state = self.state()
        return state.get("winner", state.get("leader"))

    # The table.
    def rows(self) -> list[dict]:
        ladder, _ = self.ladder()
        rows = []
        for c in self.candidates:
            reached = max((k for k, ids in enumerate(ladder) if c["id"] in ids), default=-1)
            upto = self.settings["rungs"][reached] if reached >= 0 else 0
            figures = self.judge(c["id"], upto) if upto else {"runs": 0}
            if not figures["runs"]:
                figures["score"] = None  # (not run yet: not out)
            rows.append({"id": c["id"], **{k: shown(v) for k, v in c["values"].items()},
                         "rung": reached + 1, **figures})
        return sorted(rows, key=lambda r: (-r["rung"], math.inf if r["score"] is None
                                           else r["score"], r["id"]))

    def write_tables(self) -> str:
        """table.md and table.csv; the Markdown returned."""
        dims = list(self.settings["space"])
        rows = self.rows()
        head = ["id", *dims, "rung", "runs", "val acc", "vs baseline (pp)", "seconds (clock)",
                "seconds (full)", "ratio", "score"]
        keys = ["id", *dims, "rung", "runs", "accuracy", "vs_baseline", "seconds",
                "train_seconds", "ratio", "score"]
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(keys)
        writer.writerows([[row.get(k, "") for k in keys] for row in rows])
        with atomic_path(self.folder / TABLE_CSV) as tmp:
            tmp.write_text(buffer.getvalue())
        s = self.settings
        lines = [f"{s['recipe']} on {s['device']}: {len(self.runs)} runs of "
                 f"{len(self.candidates)} candidates (0: the recipe itself); clock "
                 f"{s['clock']}, target {s['target']}, penalty {s['penalty']}, rungs "
                 f"{s['rungs']}, keep {s['keep']:.3g}; validation: {s['val_images']} training "
                 f"images held out (split seed {s['split_seed']})", "",
                 "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for row in rows:
            cells = [row.get(k, "") for k in keys]
            lines.append("| " + " | ".join(cell(k, v) for k, v in zip(keys, cells)) + " |")
        state = self.state()
        lines += ["", f"winner: candidate {state['winner']}" if state["finished"] else
                  f"unfinished; leader so far: candidate {state['leader']}; next: "
                  f"{state['next']}"]
        text = "\n".join(lines) + "\n"
        with atomic_path(self.folder / TABLE_MD) as tmp:
            tmp.write_text(text)
        return text

    def check_size(self, limits) -> None:
        """Say which of the folder's files would not come back from a device call."""
        for note in limits.left_behind(self.folder):
            self.say(f"will not come back: {note}")

    def record_call(self, call: dict) -> None:
        self.calls.append({"ended": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **call})
        self.save()


def read_runs(path: Path) -> list[dict]:
    """trials.jsonl's runs. A call killed while writing one leaves its last line cut off:
    that run is dropped (it is run again) and the file rewritten whole without it; a
    damaged line before the last is refused in a line."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    runs = []
    for i, line in enumerate(lines, 1):
        try:
            runs.append(json.loads(line))
        except ValueError:
            if i < len(lines):
                raise InputError(f"{path}: line {i} is damaged; give the trials a call "
                                 f"returned, whole") from None
            print(f"search: {path}: its last line was cut off (a call killed while writing "
                  f"it); that run is dropped and will run again")
            with atomic_path(path) as tmp:
                Path(tmp).write_text("".join(json.dumps(r) + "\n" for r in runs))
    return runs


def take_committed(folder: Path, committed: str | None) -> None:
    """A committed study (`committed`, if it holds one) copied into `folder`, unless
    `folder` holds a study already."""
    folder.mkdir(parents=True, exist_ok=True)
    source = Path(committed) if committed else None
    if source is None or not (source / STUDY).is_file() or (folder / STUDY).exists():
        return
    for name in (*FILES, *CONFIRM_FILES):
        if (source / name).is_file():
            shutil.copyfile(source / name, folder / name)


def cell(key: str, value) -> str:
    if value == "" or value is None:
        return ""
    if key == "accuracy":
        return f"{100 * value:.2f}%"
    if key == "vs_baseline":
        return f"{value:+.2f}"
    if isinstance(value, float):
        return "out" if math.isinf(value) else f"{value:.3f}"
    return str(value)


def values_text(values: dict) -> str:
    """A candidate's values in a line (the log's)."""
    return ", ".join(f"{k}={shown(v)}" for k, v in values.items()) or "the recipe itself"


__all__ = ["BASELINE", "CONFIRM_FILES", "FILES", "Study", "take_committed", "values_text"]
