"""Timing by airbench's rule: only the work of training is timed, measured on the device.

On CUDA, events recorded on the stream bracket each timed part, and the host waits for
the device before reading them, so queued work is counted and host-side set-up is not.
Elsewhere, wall time around the same parts.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict

import torch


TIMED = "fastcifar timed: "  # the profiler's name of a timed part's range


class Stopwatch:
    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    def synchronize(self) -> None:
        """Wait for the work queued on an Apple GPU (CUDA is timed with events, below)."""
        if self.device.type == "mps":
            torch.mps.synchronize()

    @contextlib.contextmanager
    def time(self, part: str):
        """Add the time of the block to `part`, including device work it queued. Under
        torch's profiler the block is a range named TIMED + part (benchmarks/run_profile.py
        counts the device's busy time inside the timed parts only)."""
        with torch.profiler.record_function(TIMED + part):
            with self._timed(part):
                yield

    @contextlib.contextmanager
    def _timed(self, part: str):
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            torch.cuda.synchronize(self.device)
            self.seconds[part] += start.elapsed_time(end) / 1000
        else:
            self.synchronize()
            t0 = time.perf_counter()
            yield
            self.synchronize()
            self.seconds[part] += time.perf_counter() - t0

    @property
    def total(self) -> float:
        return sum(self.seconds.values())
