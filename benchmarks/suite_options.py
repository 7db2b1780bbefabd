"""The GPU suite's command line (benchmarks/gpu_suite.py): its options, and the check of
every input before any work, which stops with one line for the first that is wrong."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import device_limits
from fastcifar.errors import InputError
from fastcifar.files import check_writable_folder
from fastcifar.recipes import RECIPES, get_recipe
from fastcifar.sessions import ablate
from ports import REFERENCES, reference_file
from reference_ports import ALL_PORTS

# The ports raced by their recipes, in the order they run: the fastest known recipes first.
PAIRS = ["airbench94_muon", "hiverge94", "fable94_e1", "fable94_e5", "airbench94_compiled"]
STEPS = ["pairs", "others", "ablation", "pruning"]
OTHERS = ["airbench94_bnfree", "hlb", "airbench95", "bag_of_tricks", "hlb_state_sketch",
          "resnet9_dawnbench", "airbench96", "airbench96_faster"]
MARGIN = 20.0  # seconds kept free at the end for the table, the cache's tarball and exit
# What a call leaves in its work folder that a step reads back as its result.
EARLIER_RESULTS = ("runs", "ablation", "pruning", "*.json")


def check_inputs(args) -> None:
    """Everything the call needs, before any work: one message for the first that is wrong."""
    if not torch.cuda.is_available():
        raise InputError("no CUDA device here: the suite measures GPUs (CI rehearses it on a "
                         "CPU under the stand-in in tests/standin/)")
    if args.runs < 1 or args.chunks < 1 or args.chunks > args.runs or args.other_runs < 0:
        raise InputError(f"--runs {args.runs}, --chunks {args.chunks}, --other-runs "
                         f"{args.other_runs}: expected runs >= chunks >= 1, other runs >= 0")
    unknown = [s for s in args.steps if s not in STEPS]
    if unknown or not args.steps:
        raise InputError(f"--steps {','.join(args.steps)}: expected some of {', '.join(STEPS)}")
    if args.pruning_runs < 0:
        raise InputError(f"--pruning-runs {args.pruning_runs}: expected 0 (no pruning) or more")
    if args.ablation_runs < 0:
        raise InputError(f"--ablation-runs {args.ablation_runs}: expected 0 (no ablation) or more")
    if args.ablation_tricks:
        ablate.plan(get_recipe("airbench94"), args.ablation_tricks)  # unknown: one line
    unknown = [p for p in args.pairs if p not in ALL_PORTS]
    if unknown:
        raise InputError(f"--pairs {','.join(args.pairs)}: no port {', '.join(unknown)}; "
                         f"expected some of {', '.join(ALL_PORTS)}")
    unknown = [r for r in args.others if r not in RECIPES]
    if unknown:
        raise InputError(f"--others {','.join(args.others)}: no recipe {', '.join(unknown)}; "
                         f"expected some of {', '.join(OTHERS)}")
    if args.budget <= MARGIN:
        raise InputError(f"--budget {args.budget}: expected more than the {MARGIN:.0f} s "
                         f"margin it keeps")
    if args.data != "cifar10" and not Path(args.data).exists():
        raise InputError(f"--data {args.data}: no such file or folder; expected the stand-in "
                         f"archive (copy ../shared/data/cifar10-jpeg.tar.gz into .data/ and "
                         f"carry it) or cifar10")
    for port in args.pairs:
        reference_file(Path(args.references), ALL_PORTS[port])
    if args.inductor_cache and not Path(args.inductor_cache).is_file():
        raise InputError(f"--inductor-cache {args.inductor_cache}: no such file; expected the "
                         f"inductor-cache.tar.gz an earlier call returned")
    check_writable_folder(Path(args.out), "--out")
    earlier = sorted(p.name for pattern in EARLIER_RESULTS
                     for p in Path(args.work or "/nonexistent").glob(pattern))
    if earlier:  # a step that failed would otherwise report the earlier call's runs as its own
        raise InputError(f"--work {args.work} holds an earlier call's results "
                         f"({', '.join(earlier)}); give an empty or new folder")


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for suite.json, table.md, suite.log")
    parser.add_argument("--work", help="folder for run folders, ports and data (default: a "
                                       "new temporary folder)")
    parser.add_argument("--data", default=".data/cifar10-jpeg.tar.gz",
                        help="the stand-in archive (or any --data of fastcifar train)")
    parser.add_argument("--references", default=str(REFERENCES),
                        help="the unmodified original scripts (../shared/references)")
    parser.add_argument("--runs", type=int, default=10, help="runs of each side of a pair")
    parser.add_argument("--chunks", type=int,
                        help="processes each side of a pair is split into, run alternately "
                             "(default 2 with --inductor-cache, else 1: each process of a side "
                             "pays its compile, minutes when the cache is cold)")
    parser.add_argument("--pairs", type=lambda text: [p for p in text.split(",") if p],
                        default=PAIRS, help=f"the originals raced by their recipes, "
                                            f"comma-separated, in order (default "
                                            f"{','.join(PAIRS)})")
    parser.add_argument("--other-runs", type=int, default=2, help="runs of each other recipe")
    parser.add_argument("--others", type=lambda text: [r for r in text.split(",") if r],
                        default=OTHERS, help=f"the other recipes, comma-separated (default "
                                             f"{','.join(OTHERS)})")
    parser.add_argument("--ablation-runs", type=int, default=2,
                        help="runs a variant of airbench94's ablation, last, as time allows "
                             "(0: none)")
    parser.add_argument("--ablation-tricks", type=lambda text: [t for t in text.split(",") if t],
                        help="the tricks it leaves out (default: all airbench94 declares)")
    parser.add_argument("--ablation-epochs-for-accuracy", action="store_true",
                        help="the ablation also sweeps epochs: what each trick is worth in "
                             "epochs, as the airbench paper measures it")
    parser.add_argument("--pruning-runs", type=int, default=2,
                        help="runs on each pruned subset and on all the images, as time "
                             "allows (0: none)")
    parser.add_argument("--steps", type=lambda text: [s for s in text.split(",") if s],
                        default=STEPS, help=f"the kinds of step, comma-separated, in the order "
                                            f"they run (default {','.join(STEPS)})")
    parser.add_argument("--uncompiled", action="store_true",
                        help="race the pairs uncompiled on both sides: accuracy beside the "
                             "originals without minutes of compile a process")
    parser.add_argument("--budget", type=float,
                        help="seconds from the process's start to its end (default: "
                             "--call-seconds, or --lease-seconds where less, less "
                             f"{device_limits.CALL_OVERHEAD:.0f} s of the call's own: 540)")
    parser.add_argument("--inductor-cache", help="an inductor-cache.tar.gz from an earlier call")
    parser.add_argument("--rehearsal", action="store_true",
                        help="tiny data, narrow networks, the ports' rehearsal changes")
    device_limits.add_options(parser)
    args = parser.parse_args(argv)
    if args.budget is None:
        args.budget = device_limits.from_options(args).budget()
    if args.chunks is None:
        args.chunks = 2 if args.inductor_cache else 1
    if Path(args.data).exists():  # the steps run in the work folder
        args.data = str(Path(args.data).resolve())
    return args
