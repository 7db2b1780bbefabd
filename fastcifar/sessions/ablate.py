"""`fastcifar ablate`: what each of a recipe's tricks is worth, measured.

A recipe declares its tricks (`Recipe.tricks`: a name, what it does, and the config values
that switch it off). An ablation trains the full recipe and each variant as a battery of
the same seeds, on the same options as `train`:
- leave-one-out (default): the full recipe, then each trick switched off alone;
- `ladder=True`: from the plainest version (every chosen trick off) each trick switched
  back on in the recipe's order, cumulatively, up to the full recipe (Page's and Fulcrum's
  way of showing where the gains came from).
Under torchrun each variant's battery is shared by the ranks, as `train`'s is.

Each variant's accuracy (mean and 95% CI), its difference to the full recipe paired by
seed (mean and 95% CI of the per-seed differences), and its timed seconds; written as
ablation.csv, ablation.json and ablation.png. Every variant is a run folder under
`out/variants/`: a stopped ablation continues where it stopped (finished variants are read
back, an interrupted one is resumed), as long as each folder was made with the same
recipe source, data and settings; one made otherwise stops the ablation, saying what
differs.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from ..stats import CLIPPED, accuracy_interval, summarize
from ..errors import InputError
from ..files import atomic_path, check_writable_folder, file_safe
from ..recipes import folder_name, get_recipe
from ..recipes.fields import with_values
from ..report.plots import new_figure, save_png
from ..train.device import resolve_device
from ..train.distributed import device_name, from_environment, process_group
from .session import train

FULL = "full recipe"


@dataclass
class Variant:
    name: str
    off: dict  # config values: the tricks switched off in it
    tricks_off: tuple[str, ...]


def plan(recipe, tricks: list[str] | None = None, ladder: bool = False) -> list[Variant]:
    """The variants of an ablation of `tricks` (default: all the recipe declares)."""
    declared = {t.name: t for t in recipe.tricks}
    if not declared:
        raise InputError(f"{recipe.name} declares no tricks to ablate (Recipe.tricks); "
                         f"recipes that do: the airbench family and the frontier recipes")
    if tricks is not None and not tricks:  # (--tricks "" or ","): nothing to ablate
        raise InputError(f"--tricks names no trick; expected some of {', '.join(declared)} "
                         f"(comma-separated), or leave --tricks out for all of them")
    unknown = [name for name in tricks or [] if name not in declared]
    if unknown:
        raise InputError(f"--tricks: {recipe.name} has no trick {', '.join(unknown)}; its "
                         f"tricks: {', '.join(declared)}")
    chosen = [t for t in recipe.tricks if tricks is None or t.name in tricks]
    for trick in chosen:  # each switched-off config must be a valid one
        with_values(recipe.config, trick.off, f"trick {trick.name}").validate()
    if not ladder:
        return [Variant(FULL, {}, ())] + [Variant(f"without {t.name}", dict(t.off), (t.name,))
                                          for t in chosen]
    variants = []
    for i in range(len(chosen) + 1):
        off = chosen[i:]
        values = {k: v for t in off for k, v in t.off.items()}
        name = "plainest" if i == 0 else (FULL if i == len(chosen) else f"+ {chosen[i - 1].name}")
        variants.append(Variant(name, values, tuple(t.name for t in off)))
    return variants


# --epochs-for-accuracy: the longer runs of a variant that lost accuracy, as multiples of
# the recipe's epochs; its epochs to the full recipe's accuracy are interpolated on them.
SWEEP = (1.25, 1.5, 2.0)


def run_ablation(recipe, out: Path, tricks: list[str] | None = None, ladder: bool = False,
                 runs: int = 2, seed: int = 0, verbose: bool = True,
                 epochs_for_accuracy: bool = False, **train_options) -> dict:
    """Train every variant (see plan) as `runs` runs from `seed`; write and return the
    ablation's table. `train_options`: as fastcifar.train's (data, device, precision,
    epochs, subset, ...). `epochs_for_accuracy`: for each trick left out that cost
    accuracy, also train the variant for SWEEP times the epochs, and interpolate the epochs
    (and seconds) it needs to match the full recipe: what the trick is worth in time."""
    recipe = get_recipe(recipe)
    variants = plan(recipe, tricks, ladder)
    if epochs_for_accuracy and ladder:
        raise InputError("--epochs-for-accuracy measures each trick left out: not with --ladder")
    out = Path(out)
    check_writable_folder(out, "--out")
    ranks = from_environment()
    say = print if verbose and ranks.leader else (lambda *_: None)
    # Under torchrun: one process group for every variant's battery (train finds it joined,
    # and leaves it to us).
    with process_group(ranks, resolve_device(device_name(ranks,
                                                         train_options.get("device", "auto")))):
        return _ablate(recipe, variants, out, ladder, runs, seed, say, ranks,
                       epochs_for_accuracy, train_options)


def _ablate(recipe, variants: list[Variant], out: Path, ladder: bool, runs: int, seed: int,
            say, ranks, epochs_for_accuracy: bool, train_options: dict) -> dict:
    say(f"ablation of {recipe.name}: {len(variants)} variants x {runs} run(s) = "
        f"{len(variants) * runs} runs ({'ladder' if ladder else 'each trick left out'})")
    if epochs_for_accuracy:
        say(f"--epochs-for-accuracy: then up to {len(variants) - 1} x {len(SWEEP)} x {runs} = "
            f"{(len(variants) - 1) * len(SWEEP) * runs} more runs, of {', '.join(map(str, SWEEP))}"
            f" times the epochs, for the variants that lose accuracy")
    results = {}
    for variant in variants:
        folder = out / "variants" / file_safe(variant.name)
        results[variant.name] = _variant_runs(recipe, variant, folder, runs, seed, say,
                                              ranks, train_options)
    table = summary(variants, results, recipe.name, ladder)
    if epochs_for_accuracy:
        base = train_options.get("epochs") or recipe.config.epochs
        for variant, row in zip(variants[1:], table["rows"][1:]):
            if row["difference_mean"] >= 0:
                continue  # it bought no accuracy here: nothing to buy back with epochs
            sweep = {1.0: (row["accuracy_mean"], row["seconds_mean"])}
            for factor in SWEEP:
                longer = Variant(f"{variant.name} x{factor:g} epochs", variant.off,
                                 variant.tricks_off)
                got = _variant_runs(recipe, longer, out / "variants" / file_safe(longer.name),
                                    runs, seed, say, ranks,
                                    {**train_options, "epochs": base * factor})
                sweep[factor] = (summarize([r["accuracy"] for r in got]).mean,
                                 summarize([r["train_seconds"] for r in got]).mean)
            row.update(to_match(sweep, table["rows"][0]["accuracy_mean"], base))
    if ranks.leader:
        write(out, table)
    say(text_table(table))
    say(f"wrote {out / 'ablation.csv'}, {out / 'ablation.json'} and {out / 'ablation.png'}")
    return table


def _variant_runs(recipe, variant: Variant, folder: Path, runs: int, seed: int, say, ranks,
                  options: dict) -> list[dict]:
    """The variant's runs: a folder that holds them made with these very settings (recipe
    source, data, every hyperparameter and option) is read back, or continued if
    unfinished; one made otherwise is refused, naming what differs (the session checks,
    on rank 0 for every rank: see sessions/session.py)."""
    begun = (folder / "config.json").exists()  # (for what we say only)
    if not begun:
        values = ", ".join(f"{k}={v}" for k, v in variant.off.items())
        say(f"{variant.name}: {values or 'as published'}")
    result = train(recipe, runs=runs, seed=seed, out=folder, reuse=True, verbose=False,
                   progress=False, **{**options, **variant.off})
    if begun:
        say(f"{variant.name}: done before ({folder})" if result.read_back == runs else
            f"{variant.name}: continued after {result.read_back} finished run(s) ({folder})")
    return [r.as_dict() for r in result.runs]


def to_match(sweep: dict[float, tuple[float, float]], target: float, base: float) -> dict:
    """The epochs (and timed seconds) at which the variant's accuracy, linear between the
    sweep's points (epoch factor -> (accuracy, seconds)), first reaches `target`; None if
    it does not within the sweep."""
    points = sorted(sweep.items())
    record = {"sweep": {f"{f:g}": {"accuracy": a, "seconds": s} for f, (a, s) in points},
              "epochs_to_match": None, "seconds_to_match": None}
    for (f0, (a0, s0)), (f1, (a1, s1)) in zip(points, points[1:]):
        if a0 < target <= a1:
            w = (target - a0) / (a1 - a0)
            record.update(epochs_to_match=base * (f0 + w * (f1 - f0)),
                          seconds_to_match=s0 + w * (s1 - s0))
            break
    return record


def summary(variants: list[Variant], results: dict, recipe: str, ladder: bool) -> dict:
    full = {r["seed"]: r["accuracy"] for r in results[FULL]}
    rows = []
    for v in variants:
        runs = results[v.name]
        accuracy = summarize([r["accuracy"] for r in runs])
        paired = [r["accuracy"] - full[r["seed"]] for r in runs if r["seed"] in full]
        difference = summarize(paired) if paired and v.name != FULL else None
        rows.append({
            "variant": v.name, "tricks_off": list(v.tricks_off),
            "values": {k: list(x) if isinstance(x, tuple) else x for k, x in v.off.items()},
            "runs": len(runs), "seeds": [r["seed"] for r in runs],
            "accuracy": [r["accuracy"] for r in runs], "accuracy_mean": accuracy.mean,
            "accuracy_ci95": list(accuracy.ci95),
            "difference_mean": difference.mean if difference else 0.0,
            "difference_ci95": list(difference.ci95) if difference else [0.0, 0.0],
            "seconds_mean": summarize([r["train_seconds"] for r in runs]).mean})
    return {"recipe": recipe, "ladder": ladder, "rows": rows}


def text_table(table: dict) -> str:
    lines = ["| variant | runs | accuracy (mean, 95% CI) | minus the full recipe (paired) | "
             "timed s |", "| --- | --- | --- | --- | --- |"]
    clipped = False
    for r in table["rows"]:
        low, high = accuracy_interval(r["accuracy_ci95"])
        clipped |= (low, high) != tuple(r["accuracy_ci95"])
        d_low, d_high = r["difference_ci95"]
        diff = "" if r["variant"] == FULL else (
            f"{100 * r['difference_mean']:+.2f} [{100 * d_low:+.2f}, {100 * d_high:+.2f}]")
        lines.append(f"| {r['variant']} | {r['runs']} | {100 * r['accuracy_mean']:.2f}% "
                     f"[{100 * low:.2f}, {100 * high:.2f}] | {diff} | "
                     f"{r['seconds_mean']:.1f} |")
    if clipped:
        lines.append(CLIPPED)
    for r in table["rows"]:
        if "sweep" in r:
            longest = max(float(f) for f in r["sweep"])
            lines.append(f"{r['variant']}: matches the full recipe at "
                         f"{r['epochs_to_match']:.2f} epochs, {r['seconds_to_match']:.1f} s"
                         if r["epochs_to_match"] is not None else
                         f"{r['variant']}: not the full recipe's accuracy within {longest:g}x "
                         f"its epochs")
    return "\n".join(lines)


def write(out: Path, table: dict) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["variant", "tricks_off", "runs", "accuracy_mean", "accuracy_ci95_low",
                     "accuracy_ci95_high", "difference_mean", "difference_ci95_low",
                     "difference_ci95_high", "seconds_mean", "epochs_to_match",
                     "seconds_to_match"])
    for r in table["rows"]:
        writer.writerow([r["variant"], " ".join(r["tricks_off"]), r["runs"],
                         f"{r['accuracy_mean']:.6f}", *(f"{x:.6f}" for x in r["accuracy_ci95"]),
                         f"{r['difference_mean']:.6f}",
                         *(f"{x:.6f}" for x in r["difference_ci95"]), f"{r['seconds_mean']:.3f}",
                         *("" if r.get(k) is None else f"{r[k]:.3f}"
                           for k in ("epochs_to_match", "seconds_to_match"))])
    with atomic_path(out / "ablation.csv") as tmp:
        tmp.write_text(buffer.getvalue())
    with atomic_path(out / "ablation.json") as tmp:
        tmp.write_text(json.dumps(table, indent=1) + "\n")
    save_png(figure(table), out / "ablation.png")


def figure(table: dict):
    """Each variant's accuracy difference to the full recipe (paired, with its 95% CI) as
    horizontal bars, and its timed seconds beside them."""
    rows = table["rows"]
    fig = new_figure(figsize=(10, 0.5 * len(rows) + 1.8))
    left, right = fig.subplots(1, 2, sharey=True, width_ratios=(3, 1))
    names = [r["variant"] for r in rows]
    y = list(range(len(rows)))[::-1]
    diffs = [100 * r["difference_mean"] for r in rows]
    errors = [[100 * (r["difference_mean"] - r["difference_ci95"][0]) for r in rows],
              [100 * (r["difference_ci95"][1] - r["difference_mean"]) for r in rows]]
    colours = ["0.5" if r["variant"] == FULL else ("tab:red" if d < 0 else "tab:green")
               for r, d in zip(rows, diffs)]
    left.barh(y, diffs, xerr=errors, color=colours, capsize=3)
    left.axvline(0, color="black", lw=0.8)
    left.set_yticks(y, names)
    left.set_xlabel("accuracy minus the full recipe's (points; bars: 95% CI, paired by seed)")
    for yi, r, d in zip(y, rows, diffs):  # each variant's own accuracy, right of its CI
        left.annotate(f"{100 * r['accuracy_mean']:.2f}%",
                      (max(d, 100 * r["difference_ci95"][1]), yi), xytext=(4, 0),
                      textcoords="offset points", va="center", fontsize=8)
    right.barh(y, [r["seconds_mean"] for r in rows], color="tab:blue")
    right.set_xlabel("timed seconds a run")
    kind = "ladder: tricks added one by one" if table["ladder"] else "each trick left out"
    runs = max(r["runs"] for r in rows)
    fig.suptitle(f"{table['recipe']}: {kind} ({runs} run(s) a variant)")
    return fig


def default_out(recipe) -> Path:
    return Path("runs") / f"ablate-{folder_name(get_recipe(recipe))}"
