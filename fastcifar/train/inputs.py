"""What a session checks of its inputs before any work, and the run folder it leaves
behind (none) when it stops before recording anything."""

from __future__ import annotations

import contextlib
import functools
import time
from pathlib import Path

from ..data import ImageData, load_dataset
from ..data.dataset import balanced_subset_index
from ..data.fastai_images import CLASS_NAMES as FASTAI_CLASS_NAMES
from ..data.fastai_images import SIZES as FASTAI_SIZES
from ..data.loader import DeviceData
from ..data.memory import check_fits
from ..errors import InputError

# torch.compile's modes; `compile=True` is its default. The airbench references use
# max-autotune (slower to compile, faster to run).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

IN_MEMORY = "in-memory data"  # what config.json says of data given as an ImageData
MIN_BATCHES = 4  # full batches an epoch, at the least
DROPPED_NOTE = 0.05  # the share of images an epoch leaves out above which a session says so


@contextlib.contextmanager
def removed_if_unused(folder):
    """An input error, a failed run, a recipe that raised or Ctrl-C before anything was
    recorded leaves no run folder (`folder`: a report.records.RunFolder, or None)."""
    try:
        yield
    except BaseException:
        if folder is not None:
            folder.remove_if_unused()
        raise


def check_runs(runs: int, seed: int, subset_seed: int = 0, *fixed_apart: int | None) -> None:
    """The battery's size and its seeds; `fixed_apart`: init, order and augmentation seeds
    (None where not fixed)."""
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise InputError(f"runs must be a positive integer, got {runs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"seed must be an integer, got {seed!r}")
    check_subset_seed(subset_seed)
    for name, value in zip(("init_seed", "order_seed", "augment_seed"), fixed_apart):
        if value is not None:
            check_subset_seed(value, name)


def check_subset_seed(seed: int, name: str = "subset_seed") -> None:
    """A seed numpy's generators take (0 or more): --subset-seed's, or one fixed apart."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        flag = "--" + name.replace("_", "-")
        raise InputError(f"{name} ({flag}) must be an integer of 0 or more, got {seed!r}")


def source_dataset(source, recipe, config, size: str | None, say) -> ImageData:
    """The data a session trains on, before its subsets: `source` (an ImageData, a path or
    a name, None for the recipe's own) with its images stored at the side the config asks
    for (config.stored_side(); as they are if it asks none)."""
    side = config.stored_side()
    if isinstance(source, ImageData):
        return source.resized(side, say) if side else source
    return load_dataset(source or recipe.default_data, size=size or "160", resize=side, say=say)


def balanced_subsets(dataset: ImageData, subset: int | None, test_subset: int | None,
                     seed: int) -> ImageData:
    """The class-balanced subsets of the training and test images --subset and
    --test-subset ask for (None: all of them), drawn by --subset-seed: they are data, the
    same for every run of a session, whatever its seed."""
    if subset is not None:
        dataset = dataset.balanced_subset(subset, seed=seed)
    if test_subset is not None:
        dataset = dataset.balanced_test_subset(test_subset, seed=seed)
    return dataset


def subset_indices(dataset: ImageData, settings: dict) -> dict:
    """The whole data's sizes and, with --subset or --test-subset, which of its training
    (test) images the subsets are, in their order: what maps a subset's per-example records
    back to each image's position (balanced_subsets draws the same ones)."""
    classes, seed = len(dataset.classes), settings["subset_seed"]
    return {"num_train": len(dataset.train_labels), "num_test": len(dataset.test_labels),
            "train_labels": dataset.train_labels, "test_labels": dataset.test_labels,
            "classes": list(dataset.classes),
            "train_index": None if settings["subset"] is None else balanced_subset_index(
                dataset.train_labels, settings["subset"], classes, seed),
            "test_index": None if settings["test_subset"] is None else balanced_subset_index(
                dataset.test_labels, settings["test_subset"], classes, seed,
                what="--test-subset", split="test")}


def check_size(size: str | None, data) -> None:
    """`size` picks one of fast.ai's archives, so it goes with their data only."""
    if size is None:
        return
    if size not in FASTAI_SIZES:
        raise InputError(f"--size {size}: expected one of {', '.join(FASTAI_SIZES)}")
    if not isinstance(data, str) or data not in FASTAI_CLASS_NAMES:
        raise InputError(f"--size {size} chooses one of fast.ai's archives: it goes with "
                         f"--data {' or '.join(FASTAI_CLASS_NAMES)}, not {data or 'cifar10'}")


def data_name(data) -> str | None:
    """--data as a run folder records it: a path made absolute (evaluate and resume may run
    from another folder), a name ("cifar10") as it is."""
    if isinstance(data, ImageData):
        return IN_MEMORY
    if data is None or str(data) in ("cifar10", *FASTAI_CLASS_NAMES):
        return None if data is None else str(data)  # names, even beside a folder so named
    return str(Path(data).resolve()) if Path(data).exists() else str(data)


def check_batches(train_images: int, batch: int) -> None:
    """Refuse an epoch of fewer than MIN_BATCHES full batches: such a run (a small
    --subset at the recipe's batch size) takes a step or two and learns nothing."""
    if train_images // batch < MIN_BATCHES:
        fit = max(1, train_images // (2 * MIN_BATCHES))
        raise InputError(f"{train_images} training images make {train_images // batch} "
                         f"full batch(es) of {batch} an epoch, too few to learn from "
                         f"(at least {MIN_BATCHES}); give a smaller batch (--set "
                         f"batch_size={fit}, batch_size={fit} in Python) or more images")


def dropped_note(images: int, batch: int) -> str | None:
    """A note when full batches leave out a good share of the images each epoch (as the
    speed runs do, the last partial batch is dropped): a small --subset at the recipe's
    batch size trains on less than it seems."""
    dropped = images % batch
    if dropped <= DROPPED_NOTE * images:
        return None
    return (f"note: batches of {batch} train on {images - dropped:,} of the {images:,} "
            f"training images an epoch (a different {dropped:,} left out each epoch, the "
            f"last partial batch); --set batch_size=N changes it")


def check_compile(compile_) -> None:
    if not isinstance(compile_, bool) and compile_ not in COMPILE_MODES:
        raise InputError(f"compile must be true, false or one of torch.compile's modes "
                         f"({', '.join(COMPILE_MODES)}), got {compile_!r}")


def compiler(compile_):
    """The model transform a `compile` setting asks for: None, or torch.compile (in a mode).
    Static shapes: a run meets few batch sizes, all fixed, and for the second one Dynamo
    would otherwise recompile with a dynamic batch dimension (kernels generic in it)."""
    import torch
    if compile_ is False or compile_ is None:
        return None
    mode = {} if compile_ is True else {"mode": compile_}
    return functools.partial(torch.compile, dynamic=False, **mode)


def session_data(source, recipe, config, settings: dict, device, dtype, say):
    """(the dataset, its DeviceData, the seconds it took, the subsets' indices) of a
    session: loaded, resized for a larger image size, cut to the subsets, checked to fit
    the device's memory, placed on it. `settings`: the session's, as config.json records
    them; the indices map per-example records back to each image (subset_indices)."""
    t0 = time.perf_counter()
    dataset = source_dataset(source, recipe, config, settings["size"], say)
    subsets = subset_indices(dataset, settings)
    dataset = balanced_subsets(dataset, settings["subset"], settings["test_subset"],
                               settings["subset_seed"])
    check_batches(len(dataset.train_images), config.batch_size)
    if (note := dropped_note(len(dataset.train_images), config.batch_size)):
        say(note)
    n = len(dataset.train_images) + len(dataset.test_images)
    h, w = dataset.image_size
    check_fits(n * 3 * h * w * dtype.itemsize, f"the {n:,} images as {str(dtype)[6:]} tensors",
               device, hint="give a smaller image size (--image-size) or a --subset")
    data = DeviceData.from_dataset(dataset, device, dtype, config.crop_size())
    seconds = time.perf_counter() - t0
    say(f"data: {dataset.name}, {len(dataset.train_images)} train / "
        f"{len(dataset.test_images)} test images, {len(dataset.classes)} classes "
        f"(loaded in {seconds:.1f} s, not timed)")
    return dataset, data, seconds, subsets
