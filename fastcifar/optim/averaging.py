"""Weight averaging: lookahead (airbench) and the EMA evaluation model (bag of tricks, hlb).

Both keep an exponential moving average of the weights, updated every few steps with a
decay that can change over the run. Lookahead also copies the average back into the
network being trained; an EMA model only evaluates.
"""

from __future__ import annotations

from copy import deepcopy
from functools import partial

import torch
from torch import nn


def lookahead_decay(step: int, total_steps: int, every: int, base: float,
                    power: float) -> float:
    """Airbench's decay: base**every * (step/total)**power. It starts near 0 (the average
    just follows the weights) and grows to base**every, so averaging matters most at the
    end of the run, when the lr is small and the weights jitter around a minimum."""
    return base**every * (step / total_steps) ** power


def lookahead(model: nn.Module, total_steps: int, every: int, base: float,
              power: float) -> dict:
    """Airbench's lookahead as a recipe's Training fields (recipes/base.py): every `every`
    steps (0: never) the weights and their average move to the lookahead_decay mix."""
    return dict(average=WeightAverage(model, copy_back=True) if every else None,
                average_every=every,
                average_decay=partial(lookahead_decay, total_steps=total_steps, every=every,
                                      base=base, power=power))


def lookahead_tail(model: nn.Module, start: int, every: int, decay: float) -> dict:
    """Fable's lookahead in the low-lr tail, as a recipe's Training fields: from step
    `start` on (the average restarting from the weights there), every `every` steps (0:
    never), average <- decay x average + (1 - decay) x weights, copied back."""
    return dict(average=WeightAverage(model, copy_back=True) if every else None,
                average_every=every, average_start=start, average_decay=lambda step: decay)


class WeightAverage:
    """An exponential moving average of a module's floating-point state (parameters and
    BatchNorm running statistics)."""

    def __init__(self, model: nn.Module, copy_back: bool, name: str | None = None):
        self.copy_back = copy_back
        # what its recipe calls it (hlb's copied-back average is its "EMA")
        self.name = name or ("lookahead" if copy_back else "EMA")
        state = model.state_dict()
        self.average = {k: v.detach().clone() for k, v in state.items()}
        self._averaged = [k for k, v in state.items() if v.is_floating_point()]
        # The names by dtype and device: a fused (_foreach_) call takes its fast path only
        # on tensors of one dtype and device (half weights beside float32 BatchNorm on a GPU).
        self._groups: dict[tuple, list[str]] = {}
        for k in self._averaged:
            self._groups.setdefault((state[k].dtype, state[k].device), []).append(k)

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        """average <- decay * average + (1 - decay) * weights; with copy_back (lookahead),
        the weights are then set to the average. One fused call per dtype for all tensors."""
        state = model.state_dict()
        for names in self._groups.values():
            weights = [state[k] for k in names]
            averages = [self.average[k] for k in names]
            torch._foreach_lerp_(averages, weights, 1 - decay)
            if self.copy_back:
                torch._foreach_copy_(weights, averages)

    @torch.no_grad()
    def restart(self, model: nn.Module) -> None:
        """The average becomes the module's floating-point state, as it is now."""
        state = model.state_dict()
        torch._foreach_copy_([self.average[k] for k in self._averaged],
                             [state[k] for k in self._averaged])

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Set the module's floating-point state to the average."""
        state = model.state_dict()
        torch._foreach_copy_([state[k] for k in self._averaged],
                             [self.average[k] for k in self._averaged])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.average

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in self.average.items():
            v.copy_(state[k])

    def evaluation_model(self, model: nn.Module) -> nn.Module:
        """A copy of the module holding the average, for evaluating an EMA mid-run."""
        copy = deepcopy(model)
        self.copy_to(copy)
        return copy
