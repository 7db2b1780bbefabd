"""Derive ports of the original speed-run scripts: each original with the fewest changes that
let the GPU suite run it (data folder, number of runs, a JSON of every run), every change
listed with its reason.

    python benchmarks/reference_ports.py --out .ref/gpu --data .data/cifar10-jpeg.tar.gz
    python benchmarks/reference_ports.py --out .ref/rehearsal --rehearsal --data PATH
    python benchmarks/reference_ports.py --out .ref/gpu --frontier   # frontier_ports.py's
    python benchmarks/reference_ports.py --out .ref/cpu --frontier --cpu --data PATH

For each port it writes `<out>/<name>.py` and `<out>/<name>.changes.json` (where the
original came from, its sha256, every change). `--rehearsal` adds the changes that make a
port train a narrow net for two epochs on a few hundred images, so that a CPU under the
CUDA stand-in (tests/standin/) runs it in seconds; `--cpu` adds instead the changes that
let a port train at full size on a CPU under the stand-in (the frontier ports: compile off,
float32 for float16), for runs beside fastcifar's recipes on the CPU. `--data` writes the data as the
originals read it: `<out>/data/train.pt` and `test.pt`.

A port is made from the unmodified file in the references folder (../shared/references,
see its README) and is never committed: the changes below are the record of what differs.
Each change names text that must occur exactly once in the original; if it does not, the
original is not the one these changes were written for, and deriving stops.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fastcifar.data import ImageData, load_dataset
from fastcifar.errors import InputError
from fastcifar.files import atomic_path, file_digest

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


def derive_all(out: Path, references: Path = REFERENCES, rehearsal: bool = False,
               ports: dict[str, Port] | None = None, cpu: bool = False,
               uncompiled: bool = False) -> dict[str, Path]:
    """Every port of `ports` (default PORTS) derived into `out`: name -> the port's path."""
    ports = PORTS if ports is None else ports
    return {name: derive(port, out, references, rehearsal, cpu, uncompiled)
            for name, port in ports.items()}


def change_record(change: Change) -> dict:
    record = {"why": change.why, "old": change.old, "new": change.new}
    return record if change.count == 1 else {**record, "count": change.count}


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


# The changes. Text in the originals' own quotes and indentation; `args` is the namespace
# the port's __main__ block parses, a module global that main() reads.

AIRBENCH = "KellerJordan/cifar10-airbench"
AIRBENCH_COMMIT = "f1c599c"

NO_TORCHVISION_WHY = ("without torchvision: the port reads the saved train.pt/test.pt, and CPU "
                      "machines here cannot import torchvision")
NORMALIZE_WHY = ("torchvision's T.Normalize replaced by the same arithmetic: subtract the mean "
                 "and divide by the std, both cast to the images' dtype and device")
RETURN_WHY = "main also returns the run's own CUDA-event time, for --out"
LOGDIR_WHY = "the log.pt folder under --logdir (default 'logs', as the original)"
ARGUMENTS_WHY = ("argparse: --data-dir, --runs, --out, --logdir (the original's values as "
                 "defaults; --out required)")
RUNS_WHY = ("--runs timed runs instead of the fixed {runs}; after each, its TTA accuracy and "
            "time are added to --out, which is rewritten whole")

# The changes every original's CifarLoader needs to run without torchvision; the download
# branch is written with the original's own quotes.
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
        + '    accs = torch.tensor([r["accuracy_tta"] for r in results["runs"]])\n')


def new_record(name: str, source: str, commit: str) -> str:
    """The line that starts the record of --out, a dict called `name`, with no runs yet."""
    return f'    {name} = {{"source": "{source}", "commit": "{commit}", "runs": []}}\n'


def added_run(name: str, accuracy: str, seconds: str) -> str:
    """Lines in the loop over `run` that add a run to the record `name` and rewrite --out
    whole (a temporary file, then a rename, so a reader never sees half of it)."""
    return (
        f'        {name}["runs"].append({{"run": run, "accuracy_tta": {accuracy}, "seconds": {seconds}}})\n'
        '        with open(args.out + ".part", "w") as f:\n'
        f"            json.dump({name}, f)\n"
        '        os.replace(args.out + ".part", args.out)\n')


def airbench_changes(source: str, q: str, data: Change, seconds: str, runs_line: str,
                     call: str, runs: int) -> tuple[Change, ...]:
    """The changes every airbench script's port makes, in its order: no torchvision (`q`,
    the quote its dict keys are written in), the `data` change that reads --data-dir, main
    returning its time too (the local `seconds`), the arguments, --runs recorded runs in
    place of `runs_line` (which calls `call` `runs` times), and the log under --logdir."""
    return (
        NO_TORCHVISION,
        no_download(q),
        NORMALIZE,
        data,
        Change("    return tta_val_acc\n", f"    return tta_val_acc, {seconds}\n", RETURN_WHY),
        Change('if __name__ == "__main__":\n', main_arguments(runs), ARGUMENTS_WHY),
        Change(runs_line, recorded_runs(source, AIRBENCH_COMMIT, call),
               RUNS_WHY.format(runs=runs)),
        Change(f"    log_dir = os.path.join({q}logs{q}, str(uuid.uuid4()))\n",
               "    log_dir = os.path.join(args.logdir, str(uuid.uuid4()))\n", LOGDIR_WHY),
    )


MUON_SOURCE = "cifar10-airbench/airbench94_muon.py"
MUON = Port(
    name="airbench94_muon",
    source=MUON_SOURCE,
    repository=AIRBENCH,
    commit=AIRBENCH_COMMIT,
    recipe="airbench94_muon",
    changes=airbench_changes(
        MUON_SOURCE, '"',
        Change('    test_loader = CifarLoader("cifar10", train=False, batch_size=2000)\n'
               '    train_loader = CifarLoader("cifar10", train=True,',
               "    test_loader = CifarLoader(args.data_dir, train=False, batch_size=2000)\n"
               "    train_loader = CifarLoader(args.data_dir, train=True,",
               "data from --data-dir instead of ./cifar10"),
        "time_seconds", "    accs = torch.tensor([main(run, model) for run in range(200)])\n",
        "main(run, model)", 200),
    rehearsal_changes=(
        Change("widths = dict(block1=64, block2=256, block3=256)",
               "widths = dict(block1=8, block2=16, block3=16)",
               "rehearsal: widths 8/16/16 instead of 64/256/256"),
        Change("    batch_size = 2000\n", "    batch_size = 64\n",
               "rehearsal: batch size 64 instead of 2000 (the last partial batch is dropped, "
               "so a few hundred images make several batches)"),
        Change("    total_train_steps = ceil(8 * len(train_loader))\n"
               "    whiten_bias_train_steps = ceil(3 * len(train_loader))\n",
               "    total_train_steps = ceil(2 * len(train_loader))\n"
               "    whiten_bias_train_steps = ceil(1 * len(train_loader))\n",
               "rehearsal: 2 epochs, the whitening bias trained for the first (the original: "
               "8 and 3)"),
    ),
)


def legacy_port(name: str, recipe: str, call: str, widths: tuple[int, int, int],
                epochs: str) -> Port:
    """A port of one of the legacy airbench scripts, which share the text changed here.
    `call` is how its __main__ calls main for a run; `widths` and `epochs` are its own
    values, which a rehearsal narrows and shortens."""
    source = f"cifar10-airbench/legacy/{name}.py"
    block = "".join(f"            'block{i}': {w},\n" for i, w in enumerate(widths, 1))
    narrow = "".join(f"            'block{i}': {w},\n" for i, w in enumerate((8, 16, 16), 1))
    return Port(
        name=name,
        source=source,
        repository=AIRBENCH,
        commit=AIRBENCH_COMMIT,
        recipe=recipe,
        changes=airbench_changes(
            source, "'",
            Change("    test_loader = CifarLoader('cifar10', train=False, batch_size=2000)\n"
                   "    train_loader = CifarLoader('cifar10', train=True,",
                   "    test_loader = CifarLoader(args.data_dir, train=False, batch_size=2000)\n"
                   "    train_loader = CifarLoader(args.data_dir, train=True,",
                   "data from --data-dir instead of ./cifar10"),
            "total_time_seconds", f"    accs = torch.tensor([{call} for run in range(25)])\n",
            call, 25),
        rehearsal_changes=(
            Change("map_location=torch.device(gpu))", "map_location=torch.device('cuda', gpu))",
                   "rehearsal: torch.device('cuda', gpu) for torch.device(gpu), the same device "
                   "on a GPU, which a CPU build of torch refuses before the CUDA stand-in sees it"),
            Change(block, narrow, f"rehearsal: widths 8/16/16 instead of "
                                  f"{'/'.join(map(str, widths))}"),
            Change("'batch_size': 1024,", "'batch_size': 64,",
                   "rehearsal: batch size 64 instead of 1024 (the last partial batch is "
                   "dropped, so a few hundred images make several batches)"),
            Change(f"'train_epochs': {epochs},", "'train_epochs': 2,",
                   f"rehearsal: 2 epochs instead of {epochs}"),
            Change("'whiten_bias_epochs': 3,", "'whiten_bias_epochs': 1,",
                   "rehearsal: the whitening bias trains for 1 epoch of the 2 instead of 3"),
        ),
    )


FASTER_SOURCE = "cifar10-airbench/airbench96_faster.py"
FASTER_MODELS = "main(run, hyp, model_proxy, model_trainbias, model_freezebias)"
# airbench96 trained on the half of each batch a small proxy finds hardest: three compiled
# nets (the proxy, and the main net with a trainable and a frozen whitening bias).
FASTER = Port(
    name="airbench96_faster",
    source=FASTER_SOURCE,
    repository=AIRBENCH,
    commit=AIRBENCH_COMMIT,
    recipe="airbench96_faster",
    changes=airbench_changes(
        FASTER_SOURCE, "'",
        Change("InfiniteCifarLoader('cifar10',", "InfiniteCifarLoader(args.data_dir,",
               "data from --data-dir instead of ./cifar10 (the proxy's loader and the main "
               "run's two)", count=3),
        "total_time_seconds",
        f"    accs = torch.tensor([{FASTER_MODELS}\n"
        "                         for run in range(200)])\n",
        FASTER_MODELS, 200),
    rehearsal_changes=(
        Change("            'block1': 32,\n            'block2': 64,\n            'block3': 64,\n",
               "            'block1': 8,\n            'block2': 16,\n            'block3': 16,\n",
               "rehearsal: the proxy's widths 8/16/16 instead of 32/64/64"),
        Change("            'block1': 128,\n            'block2': 384,\n            'block3': 512,\n",
               "            'block1': 8,\n            'block2': 16,\n            'block3': 16,\n",
               "rehearsal: the main net's widths 8/16/16 instead of 128/384/512"),
        Change("        'batch_size': 1024,\n        'batch_size_masked': 512,\n",
               "        'batch_size': 64,\n        'batch_size_masked': 32,\n",
               "rehearsal: batch size 64 (the hardest 32 trained) instead of 1024 (512)"),
        Change("        'train_epochs': 45.0,", "        'train_epochs': 2.0,",
               "rehearsal: 2 epochs instead of 45"),
    ),
    uncompiled_changes=(
        Change("._orig_mod[0], train_images)", "[0], train_images)",
               "uncompiled run: torch.compile, switched off by TORCHDYNAMO_DISABLE, returns the "
               "network itself, which has no _orig_mod: the whitening layer is its [0]",
               count=2),
    ),
)


PORTS: dict[str, Port] = {
    "airbench94_muon": MUON,
    # The 3.09 s record of the SGD airbench94: two compiled nets, with and without a
    # trainable whitening bias, warmed up once.
    "airbench94_compiled": legacy_port(
        "airbench94_compiled", "airbench94", "main(run, model_trainbias, model_freezebias)",
        (64, 256, 256), "9.9"),
    # Uncompiled, no warm-up run (the originals comment it out).
    "airbench95": legacy_port("airbench95", "airbench95", "main(run)", (128, 384, 384), "15"),
    "airbench96": legacy_port("airbench96", "airbench96", "main(run)", (128, 384, 512), "37.0"),
    "airbench96_faster": FASTER,
}


def describe(port: Port, path: Path, rehearsal: bool, cpu: bool = False) -> str:
    lines = [f"{port.name}: {path} from {port.source} ({port.repository} at {port.commit}), "
             f"raced against fastcifar's {port.recipe}"]
    lines += [f"  - {c.why}" for c in port.changes]
    if rehearsal:
        lines += [f"  - {c.why}" for c in port.rehearsal_changes]
    if cpu:
        lines += [f"  - {c.why}" for c in port.cpu_changes]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True,
                        help="folder for the ports (a git-ignored one, e.g. .ref/gpu)")
    parser.add_argument("--references", default=str(REFERENCES),
                        help="the folder of original scripts (default: %(default)s)")
    parser.add_argument("--data", help="also write this data set (an archive, a folder or a "
                                       "name, as fastcifar train's --data) as OUT/data/*.pt")
    parser.add_argument("--rehearsal", action="store_true",
                        help="narrow nets, batch 64, 2 epochs: a run in seconds on a CPU under "
                             "the CUDA stand-in")
    parser.add_argument("--cpu", action="store_true",
                        help="full-size ports for a CPU under the CUDA stand-in (compile off, "
                             "float32); the frontier ports have them")
    parser.add_argument("--frontier", action="store_true",
                        help="the ports of hiverge's and Fulcrum's scripts (frontier_ports.py) "
                             "instead of airbench's")
    args = parser.parse_args(argv)
    if args.frontier:
        from frontier_ports import FRONTIER_PORTS as ports  # it builds on this module
    else:
        ports = PORTS
    try:
        for name, path in derive_all(args.out, args.references, args.rehearsal, ports,
                                     args.cpu).items():
            print(describe(ports[name], path, args.rehearsal, args.cpu))
        if args.data:
            dataset = load_dataset(args.data)
            folder = write_data(dataset, Path(args.out) / "data")
            print(f"data: {dataset.name} ({len(dataset.train_labels)} training images, "
                  f"shuffled with seed 0; {len(dataset.test_labels)} test images) written to "
                  f"{folder / 'train.pt'} and {folder / 'test.pt'}; give the ports "
                  f"--data-dir {folder}")
    except InputError as e:
        print(f"reference_ports: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
