"""`fastcifar evaluate`, `predict`, `export` and `compare`: using and comparing what
training left in its run folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .. import api
from ..errors import InputError
from ..files import atomic_path, check_writable_folder
from ..report.compare import compare_figure, compare_lines, read_compared
from ..report.export import FORMATS
from ..report.plots import save_png
from ..report.records import read_run_settings
from .options import positive


def add_commands(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="a run's network on test data: top-1, top-5, accuracy per class, "
                         "and a confusion matrix (PNG)")
    evaluate.add_argument("run", type=Path, help="a run folder written by `fastcifar train`")
    evaluate.add_argument("--data", help="the data to test on, as for `train` (default: the "
                                         "data the run trained on)")
    evaluate.add_argument("--tta-level", type=int, choices=(0, 1, 2, 3),
                          help="test-time augmentation of every image: 0 none, 1 mirror, 2 "
                               "mirror and 1-pixel shifts, 3 the same six views weighted "
                               "alike (default the recipe's own, on its share of the images)")
    evaluate.add_argument("--test-subset", type=count_or_all,
                          help="a class-balanced subset of this many test images, or all "
                               "(default: the run's own test subset, if it had one and --data "
                               "is not given)")
    evaluate.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cuda, mps or cpu")
    evaluate.add_argument("--out", type=Path, help="the folder for confusion.png and "
                                                   "evaluation.json (default the run folder)")
    evaluate.set_defaults(handler=cmd_evaluate)

    predict = commands.add_parser("predict", help="the most likely classes of image files, "
                                                  "by name, with their probabilities")
    predict.add_argument("run", type=Path, help="a run folder written by `fastcifar train`")
    predict.add_argument("images", nargs="+", help="image files (.jpg, .jpeg, .png), or "
                                                   "folders of them")
    predict.add_argument("--top", type=positive(int), default=3, help="classes shown per image "
                                                                      "(default 3)")
    predict.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cuda, mps or cpu")
    predict.set_defaults(handler=cmd_predict)

    export = commands.add_parser("export", help="the run's network as a file another program "
                                                "can load, with its classes and normalisation")
    export.add_argument("run", type=Path, help="a run folder written by `fastcifar train`")
    export.add_argument("--format", required=True, choices=tuple(FORMATS),
                        help="safetensors (weights; rebuilt by fastcifar from config.json), "
                             "torchscript or onnx (the whole network)")
    export.add_argument("--out", type=Path, help="the folder to write (default RUN/export)")
    export.set_defaults(handler=cmd_export)

    compare = commands.add_parser("compare", help="run folders side by side: accuracy mean "
                                                  "and 95%% CI, seconds, what differs; a plot")
    compare.add_argument("runs", type=Path, nargs="+", help="run folders of `fastcifar train`")
    compare.add_argument("--out", type=Path,
                         help="the plot of every run's accuracy: a .png file, or a folder for "
                              "compare.png (default: compare.png in the folder that holds the "
                              "runs)")
    compare.set_defaults(handler=cmd_compare)


def count_or_all(text: str) -> int | str:
    """An argparse type: a positive integer, or "all"."""
    return "all" if text == "all" else positive(int)(text)


def cmd_evaluate(args) -> int:
    recipe = read_run_settings(args.run)["recipe"]  # a wrong run folder: said, nothing made
    out = args.out or args.run
    if out.suffix.lower() == ".png":
        raise InputError(f"--out {out}: expected a folder (confusion.png and evaluation.json "
                         f"are written in it)")
    check_writable_folder(out, "--out")
    result = api.evaluate_run(args.run, args.data, args.tta_level, args.device, args.test_subset)
    print("\n".join(result.lines()))
    try:
        save_png(result.figure(f"{recipe}: {args.run}"), out / "confusion.png")
        with atomic_path(out / "evaluation.json") as tmp:
            tmp.write_text(json.dumps(result.as_dict(), indent=1) + "\n")
    except OSError as e:
        raise InputError(f"{out}: cannot write the evaluation there ({e.strerror or e})") from None
    print(f"wrote {out / 'confusion.png'} and {out / 'evaluation.json'}")
    return 0


def cmd_predict(args) -> int:
    for path, best in api.predict(args.run, args.images, args.top, args.device):
        print(f"{path}: " + ", ".join(f"{name} {p:.1%}" for name, p in best))
    return 0


def cmd_export(args) -> int:
    path, difference = api.export(args.run, args.format, args.out)
    print(f"wrote {path} and {path.with_name('preprocessing.json')}")
    if difference is None:
        print("not checked: the network's outputs are random (it adds noise in evaluation)")
    else:
        print(f"loaded back: its logits differ from the network's by at most {difference:.2g}")
    return 0


def cmd_compare(args) -> int:
    runs = read_compared(args.runs)
    out = args.out or Path(os.path.commonpath([r.resolve().parent for r in args.runs]))
    if out.suffix.lower() != ".png":
        out = out / "compare.png"
    check_writable_folder(out.parent, "--out")
    print("\n".join(compare_lines(runs)))
    save_png(compare_figure(runs), out)
    print(f"wrote {out}")
    return 0
