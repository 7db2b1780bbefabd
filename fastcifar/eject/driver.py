"""The ejected file's driver: its command line, its data and one run, calling the blocks the
package's training loop calls (train/loop.py, train_run), in its order. `fastcifar eject`
copies these functions into the file whole, with every block they reach; the package
itself never runs them."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from math import ceil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from ..data.cifar10 import META, read_batch_folder
from ..data.dataset import balanced_subset_index
from ..data.imagefolder import decode_image, labelled_files, read_files
from ..data.loader import DeviceData, DeviceLoader
from ..errors import InputError
from ..models.layers import place_model
from ..train.device import auto_precision, configure_backend, resolve_device
from ..train.evaluate import evaluate, evaluation_metrics
from ..train.loop import batch_metrics, evaluation_model, run_epoch
from ..train.setup import set_up_training
from ..train.timing import Stopwatch
from ..train.warmup import warmup_configs

COLUMNS = "epoch  train_loss  train_acc  val_loss  val_acc  seconds"


def read_data(path: Path, side: int | None, subset: int | None, test_subset: int | None,
              seed: int) -> tuple[dict, list[str]]:
    """The data at `path` as fastcifar reads it, cut to the class-balanced subsets that
    fastcifar's --subset and --test-subset draw by --subset-seed `seed` (only their images
    decoded): {"train": (images, labels), "test": (images, labels)}, uint8 (N, H, W, 3) and
    int64, and the class names. `path`: an image-folder directory or archive
    ({train,test}/<class>/<image>, every image made a `side` x `side` square as it loads),
    or the folder of the official CIFAR-10 python batches (cifar-10-batches-py), at their
    32 px."""
    if not path.exists():
        raise InputError(f"--data {path}: no such file or folder; expected an image-folder "
                         f"directory or archive, or the CIFAR-10 python batches' folder")
    folder = next((p for p in (path, path / "cifar-10-batches-py") if (p / META).is_file()),
                  None)
    if folder is not None:
        arrays = read_batch_folder(folder)
        classes = [str(c) for c in arrays["classes"]]
        splits = {split: (arrays[f"{split}_images"], arrays[f"{split}_labels"])
                  for split in ("train", "test")}
        decoded = lambda image: image
    else:
        classes, items = labelled_files(path, read_files(path))
        splits = {split: ([data for _, data, _ in files],
                          np.array([label for *_, label in files], dtype=np.int64))
                  for split, files in items.items()}
        decoded = lambda data: decode_image(data, side)[0]
    chosen = {}
    for split, count, what in (("train", subset, "--subset"),
                               ("test", test_subset, "--test-subset")):
        images, labels = splits[split]
        index = (np.arange(len(labels)) if count is None else balanced_subset_index(
            labels, count, len(classes), seed, what=what, split=split))
        chosen[split] = (np.stack([decoded(images[i]) for i in index]), labels[index])
    return chosen, classes


def train(recipe, config, data: DeviceData, device: torch.device, precision, seed: int,
          say=print):
    """One run of `recipe` with `config` on `data`, seeded by `seed`, as fastcifar's
    train_run trains it: (its accuracy with TTA, its last epoch's without, the Stopwatch of
    its timed parts: the data-dependent init, the training epochs and the TTA)."""
    torch.manual_seed(seed)
    loader = DeviceLoader(data.train_images, data.train_labels, config.batch_size,
                          config.augmentation())
    watch = Stopwatch(device)
    model = place_model(recipe.build_model(config, data.num_classes), device, precision.weights)
    parts = set_up_training(recipe, config, model, data.train_images, precision,
                            init_timer=watch.time("init"))
    step = 0
    for epoch in range(ceil(config.epochs)):
        with watch.time("train"):
            step, last = run_epoch(parts, loader, epoch, step)
        loss, correct, seen = batch_metrics(*last)  # the epoch's last batch, untimed
        val = evaluation_metrics(evaluation_model(parts, step), data.test_images,
                                 data.test_labels, precision)
        say(f"{epoch + 1:5d}  {loss.item() / (seen * parts.training.loss_scale):10.4f}  "
            f"{correct.item() / seen:9.4f}  {val['loss']:8.4f}  {val['top1']:7.4f}  "
            f"{watch.total:7.2f}")
    with watch.time("tta_eval"):
        accuracy = evaluate(model, data.test_images, data.test_labels, config.tta_level,
                            precision, tta_fraction=config.tta_fraction)
    return accuracy, val["top1"], watch


def main(recipe, config, mixed_precision: bool, argv: list[str] | None = None) -> int:
    """Train `recipe` with `config` (the hyperparameters above) on --data, and print its
    accuracy; `mixed_precision`: the recipe's precision on a GPU (train/device.py). Bad
    input (a wrong --data, a device that is not there): one line, exit status 2."""
    try:
        train_from_arguments(recipe, config, mixed_precision, argv)
    except InputError as e:
        print(f"{Path(sys.argv[0]).name}: {e}", file=sys.stderr)
        return 2
    return 0


def train_from_arguments(recipe, config, mixed_precision: bool, argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True,
                        help="an image-folder directory or .tar/.tar.gz/.tgz/.zip archive "
                             "with train/ and test/ class folders, or the folder of the "
                             "official CIFAR-10 python batches (cifar-10-batches-py)")
    parser.add_argument("--subset", type=int, help="a class-balanced subset of this many "
                                                   "training images (default all)")
    parser.add_argument("--test-subset", type=int, help="the same of the test images")
    parser.add_argument("--subset-seed", type=int, default=0,
                        help="the seed that draws both subsets (default 0)")
    parser.add_argument("--epochs", type=float, help=f"default {config.epochs}")
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cuda, "
                                                         "cuda:N, mps or cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs is not None:
        config = dataclasses.replace(config, epochs=args.epochs)
    device = resolve_device(args.device)  # a GPU's index made explicit, as set_device needs
    configure_backend(device)
    precision = auto_precision(device, mixed_precision)
    arrays, classes = read_data(args.data, config.stored_side(), args.subset,
                                args.test_subset, args.subset_seed)
    (train_images, train_labels), (test_images, test_labels) = arrays["train"], arrays["test"]
    data = DeviceData.from_dataset(
        SimpleNamespace(train_images=train_images, train_labels=train_labels,
                        test_images=test_images, test_labels=test_labels, classes=classes),
        device, precision.weights, config.crop_size())
    print(f"{args.data.name}: {len(train_labels)} training and {len(test_labels)} test "
          f"images, {len(classes)} classes; on {device}")
    if device.type == "cuda":  # untimed: cuDNN's autotuning and first loads at every shape
        for warmup in warmup_configs(config, False, len(train_labels)):
            train(recipe, warmup, data, device, precision, args.seed - 1, say=lambda _: None)
    print(COLUMNS)
    accuracy, plain, watch = train(recipe, config, data, device, precision, args.seed)
    parts = ", ".join(f"{part} {seconds:.2f}" for part, seconds in watch.seconds.items())
    print(f"accuracy {accuracy} with TTA level {config.tta_level} ({plain} without); "
          f"{watch.total:.2f} timed seconds ({parts})")
