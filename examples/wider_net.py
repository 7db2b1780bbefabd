"""A network changed: airbench94 widened and deepened, written as a recipe file.

    fastcifar train --recipe examples/wider_net.py:WiderDeeper --runs 5

Three convs per group with a residual over the last two (airbench96's groups) at 96/384/384
(airbench94: two convs at 64/256/256), and a little longer. Every hyperparameter can still
be set: `--set widths=128,384,512`.
"""

import dataclasses

from fastcifar.recipes.airbench94 import Airbench94


class WiderDeeper(Airbench94):
    summary = "airbench94 with three convs and a residual per group, at 96/384/384"
    config = dataclasses.replace(Airbench94.config, widths=(96, 384, 384), convs_per_group=3,
                                 residual=True, epochs=12.0)
