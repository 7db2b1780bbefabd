"""airbench96: 96% on CIFAR-10 in 34.7 s on an A100 (Keller Jordan, arXiv 2404.00498).

airbench94 with three convs per group and a residual over the last two, wider
(128/384/512), stronger augmentation (12-pixel cutout, 4-pixel translation) and 37 epochs;
the same lookahead, alternating flip, label smoothing and TTA.

airbench96_faster: the same network, 45 epochs, each batch of 1024 cut to the 512 a small
proxy network finds hardest (optim/selection.py): 96.00% in 27.3 s, 3.1 PFLOPs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import InputError
from ..models.airbench import AirbenchNet
from ..models.layers import place_model
from ..models.whitening import random_images
from ..optim.selection import ProxySelection, per_example_cross_entropy
from .airbench94 import Airbench94, Airbench94Config
from .base import Target, Training, Trick, check_widths
from .fields import Count


@dataclass(frozen=True)
class Airbench96Config(Airbench94Config):
    epochs: float = 37.0
    lr: float = 9.0
    weight_decay: float = 0.012
    lr_peak_at: float = 0.1  # a shorter warm-up than airbench94's 23% ...
    lr_end: float = 0.0  # ... and a decay all the way to 0
    widths: tuple[int, ...] = (128, 384, 512)
    convs_per_group: int = 3
    residual: bool = True  # each group adds its first activation back after convs 2 and 3
    batchnorm_momentum: float = 0.9  # the reference keeps PyTorch's default (torch momentum 0.1)
    translate: int = 4
    cutout: int = 12


class Airbench96(Airbench94):
    name = "airbench96"
    summary = "airbench94 with 3 convs and a residual per group, 128/384/512, cutout, 37 epochs"
    target = Target(0.9603, "96.03% mean, 34.7 s on an A100", pflops=4.9)
    config = Airbench96Config()
    tricks = Airbench94.tricks + (Trick("cutout", "a random square of each image zeroed",
                                        {"cutout": 0}),)


@dataclass(frozen=True)
class Airbench96FasterConfig(Airbench96Config):
    epochs: float = 45.0  # of 1024-image batches, each trained on its hardest 512
    # The original's freeze compares an epoch number with a step count (3 x 48 steps) and
    # never fires, so its whitening bias trains the whole run: 45 keeps that.
    whiten_bias_epochs: int = 45
    select_keep: Count = 512  # the examples of each batch the network trains on: the hardest
    proxy_widths: tuple[Count, ...] = (32, 64, 64)  # the proxy that finds them
    proxy_convs_per_group: Count = 2  # and no residual
    proxy_train_every: Count = 4  # the proxy scores every batch and trains on every 4th

    def validate(self) -> None:
        super().validate()
        check_widths(self.proxy_widths, 3, "the proxy's three conv groups")
        if self.select_keep > self.batch_size:
            raise InputError(f"select_keep must be from 1 to batch_size ({self.batch_size}), "
                             f"got {self.select_keep}")


class Airbench96Faster(Airbench96):
    """airbench96 on the hardest half of every batch, as a small proxy net judges it."""

    name = "airbench96_faster"
    summary = ("airbench96 trained on the hardest 512 of each 1024 batch, chosen by a small "
               "proxy net; 45 epochs")
    target = Target(0.9600, "96.00% mean, 27.3 s on an A100", pflops=3.1)
    config = Airbench96FasterConfig()
    tricks = Airbench96.tricks + (Trick("proxy_selection", "train on the half of each batch a "
                                                           "proxy finds hardest (off: all)",
                                        {"select_keep": 1024}),)

    def setup(self, model: AirbenchNet, config: Airbench96FasterConfig, train_images,
              total_steps: int) -> Training:
        # The proxy is whitened from the same images as the network (the original's first
        # 5,000 for both); its whitening bias stays at zero.
        images = random_images(train_images, config.whiten_images)
        training = super().setup(model, config, images, total_steps)
        proxy_config = dataclasses.replace(config, widths=config.proxy_widths,
                                           convs_per_group=config.proxy_convs_per_group,
                                           residual=False)
        weight = model.whiten.weight
        proxy = place_model(self.build_model(proxy_config, model.head.out_features),
                            weight.device, weight.dtype)
        proxy.whiten.bias.requires_grad = False
        self.init_whitening(proxy, config, images)
        training.select = ProxySelection(
            proxy, self.sgd(proxy, config), self.lr_schedule(config, total_steps),
            per_example_cross_entropy(config.label_smoothing), config.select_keep,
            config.proxy_train_every)
        return training
