"""The Python API's entry points beyond training (see sessions/session.py for `train`):
the LR range test; evaluating a network on images as they come; and, for a run folder,
its trained network, its full evaluation, predictions for image files, and an export for
other programs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import ImageData, load_dataset
from .data.dataset import uint8_channels_last
from .data.imagefolder import IMAGE_SUFFIXES, decode_image, why_undecodable
from .data.loader import evaluation_tensor, normalisation, to_device_tensor
from .errors import InputError, RecipeChanged
from .models.layers import place_model
from .recipes import get_recipe
from .recipes.fields import config_from_dict, with_values
from .report.evaluation import Evaluation
from .report.export import check_format, export_model, largest_difference, load_exported
from .report.lr_finder import summary_lines, write_result
from .report.records import MODEL, RunFolder, read_run_settings, recipe_of_run
from .train.checkpoint import LAST, load_checkpoint
from .train.device import configure_backend, device_name, resolve_device
from .train.evaluate import (TTA_FORMULAS, evaluate as evaluate_tensors, predict as logits_of,
                             tta_formula)
from .train.identity import recipe_digest
from .train.inputs import check_size, check_subset_seed, data_name, removed_if_unused
from .train.lr_finder import DEFAULT_END, DEFAULT_START, DEFAULT_STEPS, check_sweep, find_lr
from .train.lr_rules import LRFinderResult
from .sessions.session import Session
from .sessions.settings import DEFAULT_RECIPE, SessionSettings


def evaluate(model: nn.Module, images, labels, tta_level: int = 0) -> float:
    """Top-1 accuracy (a fraction) of `model` on `images` with test-time augmentation
    `tta_level` (0 none, 1 mirror, 2 mirror and 1-pixel shifts weighted as airbench, 3 the
    same six views weighted alike).

    `images`: uint8 (N, H, W, 3) or (N, 3, H, W), numpy or torch, normalised as training
    normalised them; or a float tensor (N, 3, H, W) already normalised."""
    weights = next(p for p in model.parameters() if p.dim() == 4)
    labels = torch.as_tensor(labels, device=weights.device).long().reshape(-1)
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        x = images.to(weights.device, weights.dtype)
    else:
        array = uint8_channels_last(images, "evaluate's")
        x = to_device_tensor(array, weights.device, weights.dtype,
                             *normalisation(array.shape[1]))
    if len(x) != len(labels):
        raise InputError(f"{len(x)} images but {len(labels)} labels")
    return evaluate_tensors(model, x, labels, tta_level)


def load_model(folder: str | Path, device: str = "cpu") -> nn.Module:
    """The trained network of a run folder written by `fastcifar train` (or train(out=...)),
    rebuilt from its recipe and config, in float32 and eval mode on `device`: the weights of
    its model.pt (the last finished run), else of its last checkpoint."""
    folder = Path(folder)
    saved, recipe, config = _run_recipe(folder)
    if (folder / MODEL).exists():
        try:
            weights = torch.load(folder / MODEL, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 (torch raises many kinds for a bad file)
            raise InputError(f"{folder / MODEL} is truncated or corrupt ({e})") from None
    elif (folder / LAST).exists():
        weights = load_checkpoint(folder / LAST)["model"]
    else:
        raise InputError(f"{folder}: no {MODEL} (no run finished) and no {LAST} checkpoint; "
                         f"nothing to load")
    model = recipe.build_model(config, len(saved.get("classes") or range(10)))
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise InputError(f"{folder}: its weights do not fit {recipe.name}'s network "
                         f"({str(e).splitlines()[0]})") from None
    return place_model(model, resolve_device(device)).eval()


def _run_recipe(folder: Path):
    """(config.json's contents, the recipe, its config as the run used it)."""
    saved = read_run_settings(folder)
    recipe = recipe_of_run(folder, saved)
    recorded, now = saved.get("recipe_sha256"), recipe_digest(recipe)
    if recorded and now and recorded != now:
        warnings.warn(f"{folder}: {recipe.name}'s source has changed since this run (sha256 "
                      f"{recorded[:12]}... there, {now[:12]}... here): its network is rebuilt "
                      f"by today's code (the code it ran is in {folder / 'source'})",
                      RecipeChanged, stacklevel=3)
    return saved, recipe, config_from_dict(recipe.config, saved["config"],
                                           str(folder / "config.json"))


def _stored_side(saved: dict, config) -> int:
    """The side the run's images were stored at (config.json's record, else the recipe's)."""
    return saved.get("image_side") or config.stored_side() or 32


def evaluate_run(folder: str | Path, data=None, tta_level: int | None = None,
                 device: str = "auto", test_subset: int | str | None = None,
                 say=print) -> Evaluation:
    """The run folder's trained network on the test split of `data` (default the data it
    trained on), at `tta_level` (default its recipe's): top-1, top-5, per class, confusion.

    `test_subset`: a class-balanced subset of that many test images, or "all"; by default
    the run's own (its test subset, drawn by its subset seed) when `data` is the run's."""
    folder = Path(folder)
    saved, recipe, config = _run_recipe(folder)
    # The recipe's own evaluation (its TTA level, for its least confident fraction), or
    # every image at the level asked for.
    tta_fraction = config.tta_fraction if tta_level is None else 1.0
    tta_level = config.tta_level if tta_level is None else tta_level
    if tta_level not in TTA_FORMULAS:
        raise InputError(f"--tta-level must be 0, 1, 2 or 3, got {tta_level}")
    subset_seed = 0
    if test_subset is None and data is None and saved.get("test_subset"):
        test_subset = saved["test_subset"]
        subset_seed = saved.get("subset_seed", saved.get("seed", 0))  # older: by --seed
        say(f"note: the run's own test subset, {test_subset} images (subset seed "
            f"{subset_seed}); --test-subset all for the whole test split")
    if test_subset == "all":
        test_subset = None
    model = load_model(folder, device)
    dataset = load_dataset(data or saved["data"], size=saved.get("size") or "160",
                           resize=_stored_side(saved, config), say=say)
    if list(dataset.classes) != list(saved["classes"]):
        raise InputError(f"{dataset.name}'s classes {list(dataset.classes)} are not the ones "
                         f"{folder} was trained on ({saved['classes']})")
    if test_subset is not None:
        dataset = dataset.balanced_test_subset(test_subset, subset_seed)
    weights = next(model.parameters())
    say(f"evaluating {len(dataset.test_labels):,} test images at TTA level {tta_level} on "
        f"{device_name(weights.device)}")
    images = evaluation_tensor(dataset.test_images, weights.device, torch.float32,
                               config.crop_size())
    labels = torch.from_numpy(dataset.test_labels).to(weights.device)
    return Evaluation.from_logits(logits_of(model, images, tta_level, progress=True,
                                            tta_fraction=tta_fraction), labels,
                                  dataset.classes, tta_level)


def image_files(paths) -> list[Path]:
    """The image files named, a folder standing for every .jpg/.jpeg/.png under it."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"{path}: no such image file or folder")
    if not found:
        raise InputError(f"no .jpg, .jpeg or .png images in {', '.join(map(str, paths))}")
    return found


def predict(folder: str | Path, images, top: int = 3,
            device: str = "auto") -> list[tuple[Path, list[tuple[str, float]]]]:
    """For each image file (or every image in a folder): the run's `top` most likely
    classes, by name, with their probabilities (softmax of the recipe's TTA logits)."""
    folder = Path(folder)
    saved, recipe, config = _run_recipe(folder)
    files, side = image_files(images), _stored_side(saved, config)
    arrays = []
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InputError(f"{path}: cannot read it ({e.strerror or e})") from None
        try:
            arrays.append(decode_image(data, side)[0])
        except Exception as e:  # noqa: BLE001 (Pillow raises many kinds)
            raise InputError(f"{path}: {why_undecodable(e)}") from None
    model = load_model(folder, device)
    x = evaluation_tensor(np.stack(arrays), next(model.parameters()).device, torch.float32,
                          config.crop_size())
    probabilities = logits_of(model, x, config.tta_level).softmax(1).cpu()
    best = probabilities.topk(min(top, probabilities.size(1)), dim=1)
    classes = saved["classes"]
    return [(path, [(classes[c], p) for c, p in zip(i.tolist(), v.tolist())])
            for path, v, i in zip(files, best.values, best.indices)]


def export(folder: str | Path, fmt: str, out: str | Path | None = None,
           check: bool = True) -> tuple[Path, float | None]:
    """Export the run folder's network (see report/export.py for the formats) into `out`
    (default RUN/export); with `check`, load it back and return the largest difference of
    its logits from the network's on random inputs (None if the network is random itself)."""
    check_format(fmt)
    folder = Path(folder)
    saved, recipe, config = _run_recipe(folder)
    out = Path(out) if out is not None else folder / "export"
    side = _stored_side(saved, config)
    size = config.crop_size() or side
    mean, std = normalisation(side)
    preprocessing = {
        "recipe": recipe.name, "classes": saved["classes"], "image_size": size,
        "input": f"float32 (N, 3, {size}, {size}), RGB: pixel / 255, then (x - mean) / std; "
                 + (f"images resized to {side}x{side} (shorter side, centre crop), then their "
                    f"centre {size}x{size}" if size < side else
                    f"images resized to {size}x{size} (shorter side, centre crop)"),
        "mean": list(mean), "std": list(std), "output": "logits (N, classes)",
        "tta_level": config.tta_level, "tta_fraction": config.tta_fraction,
        "tta": f"the exported graph is one pass, logits(x); the recipe's accuracy is "
               f"measured at TTA level {config.tta_level}: "
               f"{tta_formula(config.tta_level, config.tta_fraction)}"}
    model = load_model(folder, "cpu")
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    path = export_model(model, fmt, out, example, preprocessing, read_run_settings(folder))
    if not check:
        return path, None
    exported = load_exported(path, fmt, lambda: recipe.build_model(config, len(saved["classes"])))
    inputs = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    return path, largest_difference(model, exported, inputs)


def lr_find(recipe: str = DEFAULT_RECIPE, data: str | Path | ImageData | None = None, *,
            seed: int = 0, device: str = "auto", precision: str = "auto",
            subset: int | None = None, subset_seed: int = 0, size: str | None = None,
            start: float = DEFAULT_START, end: float = DEFAULT_END, steps: int = DEFAULT_STEPS,
            out: str | Path | None = None, verbose: bool = True,
            **overrides) -> LRFinderResult:
    """The LR range test of `recipe` on `data` (see train/lr_finder.py): its result, with
    lr_find.json and lr_find.png written to `out` if given."""
    recipe_obj = get_recipe(recipe)
    check_size(size, data or recipe_obj.default_data)
    config = with_values(recipe_obj.config, overrides)
    config.validate()
    check_sweep(start, end, steps)
    check_subset_seed(subset_seed)
    folder = RunFolder.new(out) if out is not None else None
    settings = SessionSettings(recipe=recipe_obj.name, data=data_name(data) or
                               recipe_obj.default_data, size=size, subset=subset,
                               subset_seed=subset_seed, seed=seed, precision=precision)
    session = Session(recipe_obj, config, settings, resolve_device(device), data, folder,
                       None, verbose)
    configure_backend(session.device)
    with removed_if_unused(folder):
        _, device_data, _ = session.load_data()
    session.say(f"recipe: {recipe_obj.name} on {device_name(session.device)}, torch "
                f"{torch.__version__}\nsweeping {steps} steps of {config.batch_size} images, "
                f"multipliers {start:g} to {end:g} of the recipe's lrs")
    result = find_lr(recipe_obj, config, device_data, session.device, seed, start, end, steps,
                     progress=session.progress, precision=precision)
    result.settings.update(data=settings.data or "cifar10", subset=subset,
                           subset_seed=subset_seed)
    session.say(f"sweep: {result.stopped}")
    for line in summary_lines(result):
        session.say(line)
    if folder is not None:
        written = write_result(result, folder.path)
        session.say(f"wrote {', '.join(str(p) for p in written)}")
    return result
