"""Ports of Keller Jordan's airbench scripts (KellerJordan/cifar10-airbench), raced on a
GPU beside the fastcifar recipes that follow them: airbench94_muon.py, the legacy
airbench94_compiled.py, airbench95.py and airbench96.py, and airbench96_faster.py. Each
port's main also returns its own CUDA-event time, and its __main__ block runs --runs timed
runs into --out (ports.py); a rehearsal narrows the nets and shortens the runs.
Derived by benchmarks/reference_ports.py.
"""

from __future__ import annotations

from ports import (ARGUMENTS_WHY, NO_TORCHVISION, NORMALIZE, Change, Port, main_arguments,
                   no_download, recorded_runs)

AIRBENCH = "KellerJordan/cifar10-airbench"
AIRBENCH_COMMIT = "f1c599c"

RETURN_WHY = "main also returns the run's own CUDA-event time, for --out"
LOGDIR_WHY = "the log.pt folder under --logdir (default 'logs', as the original)"
RUNS_WHY = ("--runs timed runs instead of the fixed {runs}; after each, its TTA accuracy and "
            "time are added to --out, which is rewritten whole")


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


def airbench_port(name: str, source: str, recipe: str, **changes) -> Port:
    """The port `name` of `source` at AIRBENCH_COMMIT, raced by `recipe`, with `changes`
    (Port's fields of changes)."""
    return Port(name=name, source=source, repository=AIRBENCH, commit=AIRBENCH_COMMIT,
                recipe=recipe, **changes)


def loaders_from_data_dir(q: str) -> Change:
    """main's test and training loaders read --data-dir; `q` is the original's quote."""
    return Change(f"    test_loader = CifarLoader({q}cifar10{q}, train=False, batch_size=2000)\n"
                  f"    train_loader = CifarLoader({q}cifar10{q}, train=True,",
                  "    test_loader = CifarLoader(args.data_dir, train=False, batch_size=2000)\n"
                  "    train_loader = CifarLoader(args.data_dir, train=True,",
                  "data from --data-dir instead of ./cifar10")


MUON_SOURCE = "cifar10-airbench/airbench94_muon.py"
MUON = airbench_port(
    "airbench94_muon", MUON_SOURCE, "airbench94_muon",
    changes=airbench_changes(
        MUON_SOURCE, '"',
        loaders_from_data_dir('"'),
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
    return airbench_port(
        name, source, recipe,
        changes=airbench_changes(
            source, "'",
            loaders_from_data_dir("'"),
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
FASTER = airbench_port(
    "airbench96_faster", FASTER_SOURCE, "airbench96_faster",
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


AIRBENCH_PORTS: dict[str, Port] = {
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
