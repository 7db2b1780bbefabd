"""How a port is made: an original speed-run script with the fewest changes that let the GPU
suite run it (data folder, number of runs, a JSON of every run), every change listed with
its reason. The families of ports are written with these: airbench_ports.py (Keller
Jordan's scripts) and frontier_ports.py (hiverge's and Fulcrum's); reference_ports.py is
the command that derives them.

A port is made from the unmodified file in the references folder (../shared/references,
see its README) and is never committed: its `<name>.changes.json` (where the original came
from, its sha256, every change) is the record of what differs. Each change names text that
must occur exactly once in the original (or `count` times); if it does not, the original
is not the one the changes were written for, and deriving stops.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fastcifar.data import ImageData
from fastcifar.errors import InputError
from fastcifar.files import atomic_path, file_digest
from result_files import PORT_ACCURACY, PORT_SECONDS

REFERENCES = Path(__file__).resolve().parents[1].parent / "shared" / "references"


@dataclass(frozen=True)
class Change:
    """Replace `old` (which must occur exactly `count` times, once by default) by `new`,
    for the reason `why`."""

    old: str
    new: str
    why: str
    count: int = 1


@dataclass(frozen=True)
class Port:
    """An original script (`source`, relative to the references folder, taken from
    `repository` at `commit`) and the changes that make its port. `rehearsal_changes` come
    on top for a rehearsal on a CPU, `cpu_changes` for a full-size run on one,
    `uncompiled_changes` for an uncompiled run on a GPU (whose compile is switched off by
    TORCHDYNAMO_DISABLE in the process's environment, not in the file); `recipe` is the
    fastcifar recipe it is raced against."""

    name: str
    source: str
    repository: str
    commit: str
    changes: tuple[Change, ...]
    rehearsal_changes: tuple[Change, ...] = ()
    recipe: str | None = None
    cpu_changes: tuple[Change, ...] = ()
    uncompiled_changes: tuple[Change, ...] = ()


class ReferenceChanged(InputError):
    """A change's old text is not in the original exactly once: the file is not the one
    the change was written for."""


def apply_changes(port_name: str, text: str, changes) -> str:
    for change in changes:
        found = text.count(change.old) if change.old else 0
        if found != change.count:
            raise ReferenceChanged(
                f"port {port_name}: the change {change.why!r} expects its old text exactly "
                f"{change.count} time(s) in the original, found it {found} times; the "
                f"reference must have changed "
                f"(old text begins {change.old[:60]!r})")
        text = text.replace(change.old, change.new)
    return text


def reference_file(references: Path, port: Port) -> Path:
    references = Path(references)
    if not references.is_dir():
        raise InputError(f"{references}: no references folder here; expected the folder of "
                         f"original speed-run scripts (shared/references, see its README)")
    path = references / port.source
    if not path.is_file():
        raise InputError(f"{path}: not found; expected the unmodified {port.source} of "
                         f"{port.repository} at commit {port.commit}")
    return path


def derive(port: Port, out: Path, references: Path = REFERENCES,
           rehearsal: bool = False, cpu: bool = False, uncompiled: bool = False) -> Path:
    """Write `<out>/<name>.py` (the port) and `<out>/<name>.changes.json`; return the port.
    `rehearsal` adds the port's rehearsal changes, `cpu` its full-size CPU run's;
    `uncompiled` then adds its uncompiled run's, less those the rehearsal made already."""
    if rehearsal and cpu:
        raise InputError("a port is derived for a rehearsal or for a full CPU run, not both")
    if cpu and not port.cpu_changes:
        raise InputError(f"port {port.name}: no changes for a full run on a CPU are written "
                         f"for it (only the frontier ports have them)")
    source = reference_file(references, port)
    text = apply_changes(port.name, source.read_bytes().decode("utf-8"), port.changes)
    extra = ("rehearsal_changes", port.rehearsal_changes) if rehearsal else (
        ("cpu_changes", port.cpu_changes) if cpu else None)
    if extra:
        text = apply_changes(port.name, text, extra[1])
    made = {c.old for c in extra[1]} if extra else set()
    unmade = [c for c in port.uncompiled_changes if c.old not in made] if uncompiled else []
    text = apply_changes(port.name, text, unmade)
    record = {"port": port.name, "repository": port.repository, "commit": port.commit,
              "source": port.source, "sha256": file_digest(source), "recipe": port.recipe,
              "rehearsal": rehearsal, "cpu": cpu, "uncompiled": uncompiled,
              "changes": [change_record(c) for c in port.changes]}
    if extra:
        record[extra[0]] = [change_record(c) for c in extra[1]]
    if uncompiled:
        record["uncompiled_changes"] = [change_record(c) for c in unmade]
    out = Path(out)
    path = out / f"{port.name}.py"
    write_text(path, text)
    write_text(out / f"{port.name}.changes.json", json.dumps(record, indent=1) + "\n")
    return path


def derive_all(ports: dict[str, Port], out: Path, references: Path = REFERENCES,
               rehearsal: bool = False, cpu: bool = False,
               uncompiled: bool = False) -> dict[str, Path]:
    """Every port of `ports` derived into `out`: name -> the port's path."""
    return {name: derive(port, out, references, rehearsal, cpu, uncompiled)
            for name, port in ports.items()}


def change_record(change: Change) -> dict:
    record = {"why": change.why, "old": change.old, "new": change.new}
    return record if change.count == 1 else {**record, "count": change.count}


def describe(port: Port, path: Path, rehearsal: bool, cpu: bool = False) -> str:
    lines = [f"{port.name}: {path} from {port.source} ({port.repository} at {port.commit}), "
             f"raced against fastcifar's {port.recipe}"]
    lines += [f"  - {c.why}" for c in port.changes]
    if rehearsal:
        lines += [f"  - {c.why}" for c in port.rehearsal_changes]
    if cpu:
        lines += [f"  - {c.why}" for c in port.cpu_changes]
    return "\n".join(lines)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)


def write_data(dataset: ImageData, folder: Path, seed: int = 0) -> Path:
    """`dataset` as the originals read it: `folder/train.pt` and `test.pt`, each
    {"images": uint8 N x 32 x 32 x 3, "labels": int64 N, "classes": [...]}. The training
    images go in a fixed shuffled order (a permutation drawn from `seed`): the originals
    whiten from their first 5,000 images, which must not be a few classes of an archive
    sorted by class. Test images keep their order."""
    if dataset.image_size != (32, 32) or dataset.test_images.shape[1:3] != (32, 32):
        raise InputError(f"{dataset.name}: the original scripts read 32x32 images, these are "
                         f"{dataset.image_size[1]}x{dataset.image_size[0]}")
    order = np.random.default_rng(seed).permutation(len(dataset.train_labels))
    folder = Path(folder)
    for name, images, labels in (
            ("train.pt", dataset.train_images[order], dataset.train_labels[order]),
            ("test.pt", dataset.test_images, dataset.test_labels)):
        data = {"images": torch.from_numpy(np.ascontiguousarray(images)),
                "labels": torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64)),
                "classes": list(dataset.classes)}
        with atomic_path(folder / name) as tmp:
            torch.save(data, tmp)
    return folder


# The changes every family shares. Text in the originals' own quotes and indentation;
# `args` is the namespace the port's __main__ block parses, a module global that main()
# reads.

NO_TORCHVISION_WHY = ("without torchvision: the port reads the saved train.pt/test.pt, and CPU "
                      "machines here cannot import torchvision")
NORMALIZE_WHY = ("torchvision's T.Normalize replaced by the same arithmetic: subtract the mean "
                 "and divide by the std, both cast to the images' dtype and device")
ARGUMENTS_WHY = ("argparse: --data-dir, --runs, --out, --logdir (the original's values as "
                 "defaults; --out required)")

# Every original's CifarLoader runs without torchvision by these; the download branch is
# written with the original's own quotes.
NO_TORCHVISION = Change("import torchvision\nimport torchvision.transforms as T\n", "",
                        NO_TORCHVISION_WHY)
NORMALIZE = Change(
    "        self.normalize = T.Normalize(CIFAR_MEAN, CIFAR_STD)\n",
    "        self.normalize = lambda x: (x - CIFAR_MEAN.view(-1, 1, 1).to(x)) / CIFAR_STD.view(-1, 1, 1).to(x)\n",
    NORMALIZE_WHY)


def no_download(q: str, blank_line: bool = True) -> Change:
    """CifarLoader's torchvision download branch taken out, with the blank line after it if
    the original has one; `q` is the quote the original writes its dict keys in."""
    return Change("        if not os.path.exists(data_path):\n"
                  "            dset = torchvision.datasets.CIFAR10(path, download=True, train=train)\n"
                  "            images = torch.tensor(dset.data)\n"
                  "            labels = torch.tensor(dset.targets)\n"
                  f"            torch.save({{{q}images{q}: images, {q}labels{q}: labels, {q}classes{q}: dset.classes}}, data_path)\n"
                  + "\n" * blank_line,
                  "",
                  "no download branch (it needs torchvision); a missing file fails in torch.load "
                  "with its path")


def main_arguments(runs: int) -> str:
    """What the port's __main__ block parses first (the original's values as defaults)."""
    return (
        'if __name__ == "__main__":\n'
        "    import argparse\n"
        "    import json\n"
        "    parser = argparse.ArgumentParser()\n"
        '    parser.add_argument("--data-dir", default="cifar10", help="folder of train.pt, test.pt")\n'
        f'    parser.add_argument("--runs", type=int, default={runs}, help="timed runs")\n'
        '    parser.add_argument("--out", required=True, help="JSON of every run, rewritten after each")\n'
        '    parser.add_argument("--logdir", default="logs")\n'
        "    args = parser.parse_args()\n")


def recorded_runs(source: str, commit: str, call: str) -> str:
    """The timed runs, --out rewritten whole (temporary file, then rename) after each one,
    and the original's `accs` made from them."""
    return (
        new_record("results", source, commit)
        + "    for run in range(args.runs):\n"
        f"        tta_val_acc, seconds = {call}\n"
        + added_run("results", "tta_val_acc", "seconds")
        + f'    accs = torch.tensor([r["{PORT_ACCURACY}"] for r in results["runs"]])\n')


def new_record(name: str, source: str, commit: str) -> str:
    """The line that starts the record of --out, a dict called `name`, with no runs yet."""
    return f'    {name} = {{"source": "{source}", "commit": "{commit}", "runs": []}}\n'


def added_run(name: str, accuracy: str, seconds: str) -> str:
    """Lines in the loop over `run` that add a run to the record `name` and rewrite --out
    whole (a temporary file, then a rename, so a reader never sees half of it)."""
    return (
        f'        {name}["runs"].append({{"run": run, "{PORT_ACCURACY}": {accuracy}, '
        f'"{PORT_SECONDS}": {seconds}}})\n'
        '        with open(args.out + ".part", "w") as f:\n'
        f"            json.dump({name}, f)\n"
        '        os.replace(args.out + ".part", args.out)\n')
