"""The untimed warm-up before a session's timed runs: what it trains, and when it is needed.

A timed run must not pay one-off costs: torch.compile's compilation, and on a GPU cuDNN's
autotuning, cuSOLVER's set-up and the first load of each kernel, at every shape the run
meets (a curriculum's smaller images too)."""

from __future__ import annotations

import dataclasses

import torch

WARMUP_STEPS = 10  # training steps of each short warm-up on CUDA (without --compile)


def needs_warmup(device: torch.device, compile_: bool) -> bool:
    """Compiling, or on a GPU: the first steps there pay one-off costs a timed run must not."""
    return compile_ or device.type == "cuda"


def warmup_configs(config, compile_, train_images: int) -> list:
    """The configs of the warm-up's runs: with --compile the whole run once (it compiles
    every graph the timed runs use); else WARMUP_STEPS steps and the evaluation at each
    image size the run trains at."""
    if compile_:
        return [config]
    steps = {"epochs": min(config.epochs, WARMUP_STEPS / (train_images // config.batch_size))}
    sized = hasattr(config, "progressive_sizes")  # (the config's own values: none to check)
    return [dataclasses.replace(config, **steps,
                                **({"progressive_sizes": sizes} if sized else {}))
            for sizes in warmup_sizes(config)]


def warmup_sizes(config) -> list[tuple[int, ...]]:
    """The progressive_sizes of each short warm-up: one per side a curriculum trains at
    (its first epoch at that side), then the recipe's own image size (none)."""
    sides = getattr(config, "progressive_sizes", ())
    image_size = getattr(config, "image_size", None)
    return [(side,) for side in dict.fromkeys(sides) if side != image_size] + [()]
