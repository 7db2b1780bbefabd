"""Ports of the frontier originals, raced on a GPU beside fastcifar's recipes that follow
them: hiverge's cifar10_speedrun.py (hiverge94) and Fulcrum's Fable recipes E1 and E5
(fable94_e1, fable94_e5). Made with ports.py (each change names text that occurs once
in the unmodified original, with its reason), and derived by reference_ports.py:

    python benchmarks/reference_ports.py --frontier --out .ref/gpu

Each port takes --data-dir (train.pt, test.pt), --runs, --out and --logdir, and rewrites
--out after every run with its TTA accuracy and seconds, as the airbench ports do.

hiverge's script is a program: its changes are the data source, torchvision and the runs,
nothing else (max-autotune, float16, cudnn.benchmark and the GPU sleep before each run stay).
Fable's recipes are modules that Fulcrum's harness drives (runners/harness.py; its run.py,
targets.py and validate.py are not in the copy): their port adds a driver that does what
the harness does: build once, then per run seed, prepare and train, timed together by
perf_counter between synchronizes, then an untimed 6-view TTA evaluation.
"""

from __future__ import annotations

from ports import (ARGUMENTS_WHY, NO_TORCHVISION, NORMALIZE, Change, Port, added_run,
                   main_arguments, new_record, no_download, recorded_runs)

HIVERGE_SOURCE = "hiverge-cifar10-speedrun/cifar10_speedrun.py"
HIVERGE_COMMIT = "5cd49b1"
FULCRUM = "fulcrumresearch/cifar-10-speedrun"
FULCRUM_COMMIT = "ddec65f"
FABLE = "fulcrum-cifar-10-speedrun/fable-100m/recipes/"

WIDTHS = Change("widths = dict(block1=64, block2=256, block3=256)",
                "widths = dict(block1=8, block2=16, block3=16)",
                "rehearsal: widths 8/16/16 instead of 64/256/256")
NO_COMPILE = Change(
    "torch.backends.cudnn.benchmark = True\n",
    'torch.backends.cudnn.benchmark = True\nos.environ["TORCHDYNAMO_DISABLE"] = "1"\n',
    "rehearsal: torch.compile off (TORCHDYNAMO_DISABLE, read as each function is decorated): "
    "capturing the original's many compiled functions takes a 2-core CPU 7-14 s even with "
    "the stand-in's aot_eager, longer than the rest of the rehearsal")
FLOAT32_WHY = ("CPU run: float32 wherever the original asks for float16 ({what}), since this "
               "CPU has no native float16 arithmetic; fastcifar's recipe runs in float32 "
               "beside it")


def float32(half_dtypes: int) -> tuple[Change, ...]:
    """The CPU run's float32: each of the `half_dtypes` mentions of torch.half, and the
    images' and the network's .half() (twice in each original)."""
    return (Change("torch.half", "torch.float32", FLOAT32_WHY.format(what="torch.half"),
                   count=half_dtypes),
            Change(".half()", ".float()", FLOAT32_WHY.format(what="the images' and the "
                                                                  "network's .half()"),
                   count=2))


CPU_COMPILE_WHY = ("CPU run: torch.compile off (TORCHDYNAMO_DISABLE, read as each function is "
                   "decorated): under the stand-in it would compile with aot_eager, which "
                   "generates no code, so compiling buys nothing; fastcifar's recipe runs "
                   "uncompiled beside it")
CPU_NO_COMPILE = Change(NO_COMPILE.old, NO_COMPILE.new, CPU_COMPILE_WHY)
BATCH_WHY = ("rehearsal: batch size 64 instead of 1536 (the last partial batch is dropped, so "
             "a few hundred images make several batches)")

NO_PIN = Change("        ).pin_memory().contiguous()\n", "        ).contiguous()\n",
                "on a CPU: the loader's unused CPU buffer is not pinned (pinning needs a CUDA "
                "driver, which a CPU build of torch refuses before the stand-in sees it)")
NO_SLEEP = Change("        torch.cuda._sleep(int(6000000000))\n", "",
                  "on a CPU: no GPU sleep before a run (torch.cuda._sleep is a CUDA kernel, "
                  "which the stand-in has not)")


HIVERGE = Port(
    name="hiverge94",
    source=HIVERGE_SOURCE,
    repository="hiverge/cifar10-speedrun",
    commit=HIVERGE_COMMIT,
    recipe="hiverge94",
    changes=(
        NO_TORCHVISION,
        no_download('"', blank_line=False),
        NORMALIZE,
        Change('    test_loader = CifarLoader("cifar10", train=False, batch_size=2000)\n'
               '    train_loader = CifarLoader(\n'
               '        "cifar10",\n',
               "    test_loader = CifarLoader(args.data_dir, train=False, batch_size=2000)\n"
               "    train_loader = CifarLoader(\n"
               "        args.data_dir,\n",
               "data from --data-dir instead of ./cifar10"),
        Change('if __name__ == "__main__":\n', main_arguments(200),
               ARGUMENTS_WHY + "; the original writes no logs, so --logdir goes unused"),
        Change("    results = []\n"
               "    for run in range(200):\n",
               new_record("record", HIVERGE_SOURCE, HIVERGE_COMMIT)
               + "    results = []\n"
               "    for run in range(args.runs):\n",
               "--runs timed runs instead of the fixed 200; the warm-up run, and the GPU sleep "
               "of 6e9 cycles before each run, are kept: they are part of the original's "
               "timing (the host queues a run's kernels while the GPU sleeps)"),
        Change("        results.append((val_acc, tta_val_acc, time_seconds))\n",
               "        results.append((val_acc, tta_val_acc, time_seconds))\n"
               + added_run("record", "tta_val_acc", "time_seconds"),
               "after each run, its TTA accuracy and CUDA-event time are added to --out, "
               "which is rewritten whole"),
    ),
    rehearsal_changes=(
        NO_COMPILE,
        WIDTHS,
        Change("    training_batch_size = 1536\n", "    training_batch_size = 64\n", BATCH_WHY),
        Change("    total_train_steps = ceil(7.59 * len(train_loader))\n",
               "    total_train_steps = ceil(2 * len(train_loader))\n",
               "rehearsal: 2 epochs instead of 7.59"),
        NO_PIN,
        NO_SLEEP,
    ),
    cpu_changes=(
        CPU_NO_COMPILE,
        *float32(7),
        NO_PIN,
        NO_SLEEP,
        Change('    main("warmup", model)\n', "",
               "CPU run: no warm-up run (a whole training run on random data, whose purpose "
               "is to compile; compile is off)"),
    ),
)

# What Fulcrum's harness does with a recipe module: `prepare` is the per-run work it
# charges (the recipe's own reset), `train` the timed loop. The two functions sit at the
# module's level, where a test can wrap them (tests/test_clock_spans.py); the __main__
# block below them sets the globals they read (model, extra, ctx, test_loader).
FABLE_HARNESS = """import time
import types


def tta_accuracy(model, loader):
    # The grader's six views (runners/validate.py, not in the copy): each image, its 1-px
    # reflect-padded shifts down-right and up-left, and the mirrors of the three, equally
    # weighted; plain forward in eval mode, under no_grad, on the whole test set.
    model.eval()
    with torch.no_grad():
        logits = []
        for x in loader.normalize(loader.images).split(2000):
            padded = F.pad(x, (1,) * 4, "reflect")
            views = [x, padded[:, :, 0:32, 0:32], padded[:, :, 2:34, 2:34]]
            views += [view.flip(-1) for view in views]
            logits.append(torch.stack([model(view) for view in views]).float().mean(0))
    model.train()
    return (torch.cat(logits).argmax(1) == loader.labels).float().mean().item()


def timed_run(run):
    # As the harness: seed the trial, then prepare (charged) and train (timed), each
    # between synchronizes, on perf_counter; the evaluation after the clock.
    torch.manual_seed(run)
    torch.cuda.synchronize()
    start = time.perf_counter()
    {prepare}
    torch.cuda.synchronize()
    train(model, extra, ctx)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tta_val_acc = tta_accuracy(model, test_loader)
    print(f"run {{run}}: TTA accuracy {{tta_val_acc:.4f}}, {{seconds:.4f}} s", flush=True)
    return tta_val_acc, seconds


"""
FABLE_BUILD = """    DATA_PATH = args.data_dir  # read by setup()
    ctx = types.SimpleNamespace(validate=lambda model, step: None)
    torch.manual_seed(1234)  # the harness's BUILD_SEED: the same pre-flipped images every time
    model, extra = setup()
    test_loader = CifarLoader(DATA_PATH, train=False, batch_size=2000)
"""

FABLE_DRIVER_WHY = (
    "a driver doing what Fulcrum's harness (runners/harness.py) does with the recipe, its "
    "functions tta_accuracy and timed_run, then a __main__ block: DATA_PATH from --data-dir; "
    "setup() once (the build: compile warm-up, untimed), seeded "
    "with the harness's BUILD_SEED 1234; then for each run torch.manual_seed(run) and, timed "
    "together by perf_counter between torch.cuda.synchronize() calls as the harness's "
    "compute_honest_s, the per-run prepare ({prepare}) and train(); ctx.validate, the "
    "recipe's in-loop logging, a no-op (the harness's RunContext has none); after the clock, "
    "TTA over the grader's six views (the image, its 1-px shifts down-right and up-left with "
    "reflect padding, and the mirrors of the three) with EQUAL weights, as the grader's are "
    "unknown (validate.py is not in the copy), on all 10,000 test images, plain forward in "
    "eval mode; --out rewritten after each run")

NO_SLEEP_WHY = ("no 60 s sleep {where}: Fulcrum's harness forbids sleeps over 0.05 s in build, "
                "prepare and train (no_sleep, 'the old e1 exploit'), so its measured E1 had none")


def fable_port(name: str, file: str, tail: str, prepare: str, prepare_why: str,
               changes: tuple[Change, ...], rehearsal_changes: tuple[Change, ...],
               half_dtypes: int, cpu_changes: tuple[Change, ...] = (),
               uncompiled_changes: tuple[Change, ...] = ()) -> Port:
    """A port of a Fable recipe `file`: without torchvision, `changes` of its own, and the
    harness's driver appended after `tail` (the original's last lines), whose per-run
    `prepare` is what Fulcrum charges for this recipe. A full CPU run's changes:
    compile off, float32 for its `half_dtypes` mentions of torch.half, then `cpu_changes`."""
    source = FABLE + file
    driver = (FABLE_HARNESS.format(prepare=prepare) + main_arguments(200) + FABLE_BUILD
              + recorded_runs(source, FULCRUM_COMMIT, "timed_run(run)")
              + '    print("Accuracies: Mean: %.6f    Std: %.6f" % (accs.mean(), accs.std()))\n')
    return Port(
        name=name,
        source=source,
        repository=FULCRUM,
        commit=FULCRUM_COMMIT,
        recipe=name,
        changes=(NO_TORCHVISION, no_download('"', blank_line=False), NORMALIZE, *changes,
                 Change(tail, tail + "\n\n" + driver,
                        FABLE_DRIVER_WHY.format(prepare=prepare_why))),
        rehearsal_changes=(NO_COMPILE, WIDTHS,
                           Change('"batch_size": 1536,', '"batch_size": 64,', BATCH_WHY),
                           *rehearsal_changes),
        cpu_changes=(CPU_NO_COMPILE, *float32(half_dtypes), *cpu_changes),
        uncompiled_changes=uncompiled_changes,
    )


def fable_schedule(train_epochs: str, decay_epochs: str,
                   res_schedule: list[int]) -> tuple[Change, ...]:
    """The rehearsal's schedule: 2 epochs of decay and half an epoch of tail, the lookahead
    from 2 steps before the end of the decay (so it runs even when an epoch is a few steps),
    and each resolution of the original's curriculum for one epoch."""
    return (
        Change(f'"train_epochs": {train_epochs},', '"train_epochs": 2.5,',
               f"rehearsal: 2.5 epochs instead of {train_epochs}"),
        Change(f'"decay_epochs": {decay_epochs},', '"decay_epochs": 2.0,',
               f"rehearsal: the lr decays over 2 epochs instead of {decay_epochs}"),
        Change('"ema_start_before": 8,', '"ema_start_before": 2,',
               "rehearsal: the lookahead starts 2 steps before the end of the decay instead "
               "of 8 (with a few steps an epoch, 8 would be before the first step)"),
        Change(f'"res_schedule": {res_schedule},',
               f'"res_schedule": {sorted(set(res_schedule))},',
               f"rehearsal: one epoch at each resolution instead of {res_schedule}"),
    )


FABLE_E5 = fable_port(
    "fable94_e5", "e5_1.80s_single-gpu.py",
    tail='        lr_floor=hyp["lr_floor"],\n    )\n',
    prepare='reset_all(model, extra["train_loader"], *extra["optimizers"])',
    prepare_why="reset_all: reset, whitening, optimiser state zeroed",
    changes=(),
    rehearsal_changes=fable_schedule("8.125", "8.0", [28] * 5 + [32] * 4),
    half_dtypes=8,
)

E1_EAGER_WHY = ("on a CPU: no CUDA graphs (the stand-in cannot capture or replay them): "
                "{what}; the graphs run only on a GPU")


def e1_eager(why: str) -> tuple[Change, ...]:
    """E1 without its CUDA graphs, for the reason `why` (a format with {what})."""
    return (
        Change("    fs.capture(wb_batch)\n"
               "    _selftest(model, optimizer1, optimizer2, fs, wb_batch, whiten_bias_train_steps)\n",
               "", why.format(what="no capture of the per-step graphs, no self-test")),
        Change('    fs.capture_mega(epoch_data, total_train_steps, decay_steps, hyp["res_schedule"])\n',
               "", why.format(what="no capture of the whole-run graph")),
        Change("    _mega_check(model, fs, epoch_data, total_train_steps, decay_steps)\n", "",
               why.format(what="no check of the whole-run graph")),
        Change('    fs = extra["fullstep"]\n    fs.prepare()\n    fs.mega.replay()\n',
               '    run_steps(model, extra["train_loader"], *extra["optimizers"], '
               'extra["decay_steps"],\n'
               '              extra["whiten_bias_train_steps"], extra["total_train_steps"], '
               'ctx=ctx,\n'
               '              lr_floor=hyp["lr_floor"])\n',
               why.format(what="train runs the recipe's own eager loop (run_steps, its compile "
                               "warm-up's) instead of replaying the whole-run graph")),
    )


E1_EAGER = e1_eager(E1_EAGER_WHY)
# An uncompiled race on a GPU compares accuracy: graphs captured from eager code would add a
# GPU-only path that no CPU rehearsal runs, for no accuracy.
E1_UNCOMPILED = e1_eager(
    "uncompiled run on a GPU (an accuracy comparison): no CUDA graphs either, {what}; the "
    "recipe's own eager path, the one its CPU port runs")
FABLE_E1 = fable_port(
    "fable94_e1", "e1_1.74s_single-gpu_CHAMPION.py",
    tail='    ctx.validate(model, step=extra["total_train_steps"])\n# pool-prof2\n',
    prepare="setup()",
    prepare_why=("the cached setup(): reset_all and the augmented epochs written into the "
                 "whole-run graph's buffers; train's fs.prepare(), which the harness counts "
                 "in prepare, stays in train: the same sum"),
    changes=(
        Change("        time.sleep(60)\n        extra = {", "        extra = {",
               NO_SLEEP_WHY.format(where="in the per-run set-up")),
        Change("    time.sleep(60)\n\n    _CACHE.update(", "\n    _CACHE.update(",
               NO_SLEEP_WHY.format(where="after the build")),
    ),
    rehearsal_changes=fable_schedule("8.875", "8.5", [24] * 3 + [28] * 3 + [32] * 3) + E1_EAGER,
    half_dtypes=9,
    cpu_changes=E1_EAGER,
    uncompiled_changes=E1_UNCOMPILED,
)

FRONTIER_PORTS: dict[str, Port] = {
    "hiverge94": HIVERGE,
    "fable94_e1": FABLE_E1,
    "fable94_e5": FABLE_E5,
}
