"""What the recipes on AirbenchNet share at the level of a recipe: their tricks, each
described once (a recipe names the ones it has, in the order its authors added them), and
the checks of the net's fields across each other. Not a recipe: each recipe file calls these,
as it calls the building blocks in models/ and optim/."""

from __future__ import annotations

from ..errors import InputError
from ..models.airbench import ACTIVATIONS
from .base import Trick, check_widths

TRICKS = {trick.name: trick for trick in (
    Trick("whitening", "the first conv's filters whiten 2x2 patches, fixed", {"whiten": False}),
    Trick("identity_init", "the 3x3 convs start as identity maps plus noise (dirac init)",
          {"identity_init": False}),
    Trick("whiten_bias_freeze", "the whitening bias trains its first epochs, then freezes",
          {"whiten_bias_epochs": 1000}),
    Trick("bias_lr", "BatchNorm biases learn 64x faster", {"bias_lr_scale": 1.0}),
    Trick("label_smoothing", "label smoothing", {"label_smoothing": 0.0}),
    Trick("translate", "random translation (crops of the reflect-padded image)",
          {"translate": 0}),
    Trick("alternating_flip", "each image flipped every other epoch, not at random",
          {"flip": "random"}),
    Trick("lookahead", "lookahead: the weights pulled to their running average",
          {"lookahead_every": 0}),
    Trick("tta", "test-time augmentation: mirror and 1-pixel shifts", {"tta_level": 0}),
    Trick("cutout", "a random square of each image zeroed", {"cutout": 0}),
    Trick("proxy_selection", "train on the half of each batch a proxy finds hardest (off: all)",
          {"select_keep": 1024}),
    Trick("colour_jitter", "random brightness and contrast per image",
          {"brightness": 0.0, "contrast": 0.0}),
    Trick("selective_tta", "TTA for the least confident quarter only (off: for all)",
          {"tta_fraction": 1.0}),
    Trick("curriculum", "the first epochs train on smaller images", {"progressive_sizes": ()}),
    Trick("lookahead_tail", "lookahead averaging in the low-lr tail", {"lookahead_every": 0}),
)}


def airbench_tricks(*names: str) -> tuple[Trick, ...]:
    """The tricks of these names, in this order."""
    return tuple(TRICKS[name] for name in names)


def check_airbench_net(config) -> None:
    """The net's fields that must agree with each other (models/airbench.py, airbench_net)."""
    # three 2x2 pools take the whitened 31x31 map to the 3x3 the final max pool expects
    check_widths(config.widths, 3, "the three conv groups")
    if config.activation not in ACTIVATIONS:
        raise InputError(f"activation must be one of {', '.join(ACTIVATIONS)}, "
                         f"got {config.activation!r}")
    if config.residual and config.convs_per_group < 2:
        raise InputError(f"convs_per_group must be at least 2 with residual=True (the "
                         f"first conv's output is added to the last's), got "
                         f"{config.convs_per_group}")
