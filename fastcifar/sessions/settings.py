"""What defines a session besides its recipe's hyperparameters, declared once: `train`'s
keywords, the command line's options, config.json and resume all read these fields."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import InputError
from ..train.inputs import check_compile, check_runs
from ..train.seeds import RunSeeds

DEFAULT_RECIPE = "airbench94"


@dataclass(frozen=True)
class SessionSettings:
    recipe: str = DEFAULT_RECIPE
    # A path (made absolute), a name ("cifar10", "imagewoof"), "in-memory data", or None:
    # the recipe's own data.
    data: str | None = None
    size: str | None = None  # which of fast.ai's archives (160, 320, full); None: 160
    subset: int | None = None  # class-balanced subsets of this many training images ...
    test_subset: int | None = None  # ... and test images,
    subset_seed: int = 0  # drawn by this seed, the same for every run
    runs: int = 1
    seed: int = 0  # of the first run; run i has seed + i
    # Fixed apart from seed, the same for every run (None: following seed; see
    # train/seeds.py): the network's initialisation, the images' order, their augmentation.
    init_seed: int | None = None
    order_seed: int | None = None
    augment_seed: int | None = None
    precision: str = "auto"
    compile: bool | str = False  # True or a torch.compile mode
    checkpoints: bool | None = None  # None: the recipe's default
    lr_from_finder: str | None = None  # a saved LR-finder result, or FINDER
    ddp: bool = False  # under torchrun: the ranks train each run together
    record_examples: bool = False  # per-example records of every training image

    def check(self, has_folder: bool) -> None:
        """Refuse, before any work, what cannot be or cannot go together."""
        check_runs(self.runs, self.seed, self.subset_seed, self.init_seed, self.order_seed,
                   self.augment_seed)
        check_compile(self.compile)
        if self.checkpoints and not has_folder:
            raise InputError("checkpoints are kept in a run folder: give out= (--out)")
        if self.record_examples and self.ddp:
            raise InputError("--record-examples records each run on one device: not with "
                             "--ddp (a battery over the ranks, without --ddp, records every "
                             "run)")

    def run_seeds(self, index: int) -> RunSeeds:
        """Run `index`'s seeds."""
        return RunSeeds(self.seed + index, self.init_seed, self.order_seed, self.augment_seed)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def record(self) -> dict:
        """As config.json records them."""
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, saved: dict) -> SessionSettings:
        """A run folder's settings, as config.json recorded them (a field it lacks takes
        its default; older folders drew their subsets by --seed)."""
        known = {k: saved[k] for k in cls.names() if k in saved}
        known.setdefault("subset_seed", saved.get("seed", 0))
        return cls(**known)
