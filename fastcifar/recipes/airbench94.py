"""airbench94: 94% on CIFAR-10 in 3.83 s on an A100 (Keller Jordan, arXiv 2404.00498).

A small VGG-like net with a patch-whitening first layer, trained for 9.9 epochs by Nesterov
SGD with lookahead, alternating flip and test-time augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from ..models.airbench import AirbenchNet
from ..models.layers import BatchNorm
from ..models.whitening import whitening_conv_init
from ..optim.averaging import WeightAverage, lookahead_decay
from ..optim.schedules import piecewise_linear
from ..optim.sgd import decoupled_sgd
from ..train.losses import summed_cross_entropy
from .base import Recipe, Target, Training, TrainConfig


@dataclass(frozen=True)
class Airbench94Config(TrainConfig):
    epochs: float = 9.9
    batch_size: int = 1024
    lr: float = 11.5  # per 1024 examples, independent of momentum (see optim/sgd.py)
    momentum: float = 0.85
    weight_decay: float = 0.0153  # per 1024 examples, independent of lr
    bias_lr_scale: float = 64.0  # BatchNorm biases learn 64x faster (their decay is unchanged)
    label_smoothing: float = 0.2
    lr_start: float = 0.2  # lr multiplier: 0.2 -> 1.0 over the first 23% of steps -> 0.07
    lr_peak_at: float = 0.23
    lr_end: float = 0.07
    lookahead_every: int = 5  # steps between lookahead updates
    whiten_bias_epochs: int = 3  # the whitening bias trains this long, then freezes
    whiten_images: int = 5000  # training images whose patches set the whitening filters
    whiten_eps: float = 5e-4
    widths: tuple[int, ...] = (64, 256, 256)
    batchnorm_momentum: float = 0.6
    output_scale: float = 1 / 9
    flip: str = "alternating"
    translate: int = 2
    tta_level: int = 2


class Airbench94(Recipe):
    name = "airbench94"
    summary = "Keller Jordan's airbench94: whitening conv, lookahead, alternating flip, TTA"
    target = Target(0.9401, "94.01% mean, 3.83 s on an A100")
    config = Airbench94Config()

    def build_model(self, config: Airbench94Config, num_classes: int) -> AirbenchNet:
        return AirbenchNet(config.widths, num_classes, config.batchnorm_momentum,
                           config.output_scale)

    def setup(self, model: AirbenchNet, config: Airbench94Config, train_images,
              total_steps: int) -> Training:
        # A random sample, not the first images: an image-folder dataset is sorted by class.
        sample = torch.randperm(len(train_images), device=train_images.device)[:config.whiten_images]
        whitening_conv_init(model.whiten, train_images[sample], config.whiten_eps)

        norm_biases = [p for m in model.modules() if isinstance(m, BatchNorm)
                       for p in m.parameters() if p.requires_grad]
        norm_ids = {id(p) for p in norm_biases}
        others = [p for p in model.parameters() if p.requires_grad and id(p) not in norm_ids]
        optimizer = decoupled_sgd([(norm_biases, config.bias_lr_scale), (others, 1.0)],
                                  lr=config.lr, weight_decay=config.weight_decay,
                                  momentum=config.momentum, batch_size=config.batch_size)

        def before_epoch(epoch: int) -> None:
            model.whiten.bias.requires_grad = epoch < config.whiten_bias_epochs

        return Training(
            optimizers=[optimizer],
            lr_multipliers=piecewise_linear(total_steps, [(0, config.lr_start),
                                                          (config.lr_peak_at, 1.0),
                                                          (1, config.lr_end)]),
            loss=summed_cross_entropy(config.label_smoothing),
            average=WeightAverage(model, copy_back=True),
            average_every=config.lookahead_every,
            average_decay=partial(lookahead_decay, total_steps=total_steps,
                                  every=config.lookahead_every),
            before_epoch=before_epoch,
        )
