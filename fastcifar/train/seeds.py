"""A run's seeds. By default one seed drives everything a run draws, through torch's global
generator, as the speed runs do. For data-influence studies (elastic-airbench's) the three
sources of a run's randomness can be fixed apart: the network's initialisation (with every
other draw training makes: the whitening images, dropout, cutmix), the order the training
images come in, and their augmentation. Fixing one and varying another changes only what
the varied one drives."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class RunSeeds:
    run: int  # the run's seed (a session's seed + its index): what the others follow
    init: int | None = None  # None: the run's seed
    order: int | None = None  # None: one drawn from the run's seed
    augment: int | None = None  # None: one drawn from the run's seed

    @property
    def apart(self) -> bool:
        """Whether any is fixed apart (else everything draws from the global generator)."""
        return (self.init, self.order, self.augment) != (None, None, None)

    def init_seed(self) -> int:
        return self.run if self.init is None else self.init

    def generators(self, device: torch.device) -> tuple[torch.Generator | None,
                                                        torch.Generator | None]:
        """(the order's generator, the augmentation's) on `device`; (None, None) when
        nothing is fixed apart. A seed not fixed is drawn from the run's, one stream per
        purpose, so that the two never repeat each other's draws."""
        if not self.apart:
            return None, None
        made = []
        for purpose, fixed in ((1, self.order), (2, self.augment)):
            seed = fixed if fixed is not None else int(
                np.random.SeedSequence([self.run, purpose]).generate_state(1)[0])
            made.append(torch.Generator(device=device).manual_seed(seed))
        return made[0], made[1]
