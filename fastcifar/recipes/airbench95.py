"""airbench95: 95% on CIFAR-10 in 10.4 s on an A100 (Keller Jordan, arXiv 2404.00498).

airbench94 made wider (128/384/384 channels) and trained longer (15 epochs) at a lower lr;
everything else is airbench94's.
"""

from __future__ import annotations

from dataclasses import dataclass

from .airbench94 import Airbench94, Airbench94Config
from .base import Target


@dataclass(frozen=True)
class Airbench95Config(Airbench94Config):
    epochs: float = 15.0
    lr: float = 10.0  # lower than airbench94's 11.5 for the wider net
    widths: tuple[int, ...] = (128, 384, 384)


class Airbench95(Airbench94):
    name = "airbench95"
    summary = "airbench94 widened to 128/384/384 and trained for 15 epochs"
    target = Target(0.9501, "95.01% mean, 10.4 s on an A100", pflops=1.4)
    config = Airbench95Config()
