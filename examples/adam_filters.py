"""An optimiser swapped in: airbench94 whose conv filters train by Adam, written as a
recipe file.

    fastcifar train --recipe examples/adam_filters.py:AdamFilters --runs 5
    fastcifar tune --recipe examples/adam_filters.py:AdamFilters --space "filter_lr=1e-4:1e-2:log"

Everything but the conv filters (the BatchNorm biases, the classifier) keeps airbench94's
Nesterov SGD; the filters get Adam at `filter_lr`, on the recipe's own lr schedule (both
optimisers follow the same per-step multipliers). A new hyperparameter is a field of a
config subclass: `--set filter_lr=...` and `tune --space` then know it.
"""

from dataclasses import dataclass

import torch

from fastcifar.models.layers import BatchNorm
from fastcifar.optim.sgd import decoupled_sgd
from fastcifar.recipes.airbench94 import Airbench94, Airbench94Config


@dataclass(frozen=True)
class AdamFiltersConfig(Airbench94Config):
    filter_lr: float = 2e-3  # Adam's lr for the conv filters
    filter_betas: tuple[float, ...] = (0.9, 0.99)


class AdamFilters(Airbench94):
    summary = "airbench94 whose conv filters train by Adam"
    config = AdamFiltersConfig()

    def setup(self, model, config, train_images, total_steps):
        training = super().setup(model, config, train_images, total_steps)  # whitening, schedule
        filters = [p for p in model.parameters() if p.ndim == 4 and p.requires_grad]
        norm_biases = [p for m in model.modules() if isinstance(m, BatchNorm)
                       for p in m.parameters() if p.requires_grad]
        taken = {id(p) for p in filters + norm_biases}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
        sgd = decoupled_sgd([(norm_biases, config.bias_lr_scale), (rest, 1.0)], lr=config.lr,
                            weight_decay=config.weight_decay, momentum=config.momentum,
                            batch_size=config.batch_size)
        adam = torch.optim.Adam(filters, lr=config.filter_lr, betas=tuple(config.filter_betas))
        training.optimizers = [sgd, adam]
        return training
