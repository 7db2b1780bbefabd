"""hlb_state_sketch: tysam's "network sketch" on hlb-CIFAR10, about 93.11% in hlb's
number of steps at about 1.7x its run time.

No gradient crosses a conv group's boundary except through learned predictions: each
group hands on its output detached plus Gaussian noise of the output's std (a simulated
discrete, non-differentiable action), added to a prediction of that output made one group
earlier (models/hlb.py, HlbStateSketchNet). There is no separate loss on the predictions:
they learn only from the classification loss that reaches them through the hand-off.
Otherwise hlb's recipe, with the sketch's values where they differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models.hlb import HlbStateSketchNet
from .base import Target
from .fields import NonNegative
from .hlb import HlbConfig, Hlb


@dataclass(frozen=True)
class HlbStateSketchConfig(HlbConfig):
    output_scale: float = 1 / 12  # the sketch's temperature (hlb: 1/9)
    label_smoothing: float = 0.1  # the sketch's (hlb: 0.2)
    cutmix_size: int = 0  # the sketch turns cutmix off
    # The sketch scales the random part of the residual init (groups' first convs and the
    # widening predictors) by 0.1 before adding the identity.
    residual_random_scale: float = 0.1
    noise_scale: NonNegative = 1.0  # the hand-off noise's std, in units of the output's std


class HlbStateSketch(Hlb):
    name = "hlb_state_sketch"
    summary = "tysam's sketch: hlb whose groups pass on detached noisy outputs plus predictions"
    target = Target(0.9311, "about 93.11% in hlb's number of steps, about 1.7x hlb's run time")
    config = HlbStateSketchConfig()

    def build_model(self, config: HlbStateSketchConfig, num_classes: int) -> HlbStateSketchNet:
        return HlbStateSketchNet(config.widths, num_classes, config.batchnorm_momentum,
                                 config.output_scale,
                                 residual_random_scale=config.residual_random_scale,
                                 noise_scale=config.noise_scale)
