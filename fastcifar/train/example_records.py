"""What every training example did (`record_examples=True`, `--record-examples`).

For each training image and epoch, as training saw it (under that epoch's augmentation, in
train mode, before the step's update): its cross-entropy loss (without label smoothing),
whether its largest logit was its label's, its margin (its label's logit minus the
largest other), and its error's L2 norm (softmax minus one-hot, the EL2N of Paul et al.
2021); and for each test image the final (TTA) logits. These are what data-pruning,
data-selection and label-noise papers compute by hand: report/example_scores.py scores them.

Off the hot path: the values come from the outputs the step computes anyway, are scattered
into tensors on the device by the images' indices, and are copied to the host once per
epoch, outside the timed region. An image an epoch did not show (the last partial batch is
dropped; a proxy may choose others) has NaN there, and -1 for `correct`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

FIELDS = ("loss", "correct", "margin", "error")


class ExampleRecorder:
    """The per-example records of one run, on `device` during an epoch."""

    def __init__(self, num_images: int, device: torch.device):
        self.num_images, self.device = num_images, device
        self.epochs: list[dict[str, np.ndarray]] = []
        self._reset()

    def _reset(self) -> None:
        self.now = {name: torch.full((self.num_images,), -1 if name == "correct" else np.nan,
                                     dtype=torch.int8 if name == "correct" else torch.float32,
                                     device=self.device) for name in FIELDS}

    @torch.no_grad()
    def record(self, index: torch.Tensor, outputs: torch.Tensor, labels: torch.Tensor) -> None:
        """The step's outputs for the images at `index` of the training set: no host sync."""
        logits = outputs.detach().float()
        own = logits.gather(1, labels[:, None]).squeeze(1)
        best_other = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
        p = logits.softmax(1)
        # |p - onehot|^2 = sum p^2 - 2 p_label + 1 (one_hot would check the labels' range:
        # a host sync on CUDA)
        squared = p.square().sum(1) - 2 * p.gather(1, labels[:, None]).squeeze(1) + 1
        self.now["loss"][index] = F.cross_entropy(logits, labels, reduction="none")
        self.now["correct"][index] = (logits.argmax(1) == labels).to(torch.int8)
        self.now["margin"][index] = own - best_other
        self.now["error"][index] = squared.clamp_min(0).sqrt()

    def end_epoch(self) -> None:
        """Copy the epoch's records to the host (outside the timed region) and start anew."""
        self.epochs.append({name: value.cpu().numpy() for name, value in self.now.items()})
        self._reset()

    def state_dict(self) -> dict:
        """The epochs so far, for a checkpoint: a resumed run keeps them."""
        return {name: torch.from_numpy(np.stack([e[name] for e in self.epochs]))
                if self.epochs else None for name in FIELDS}

    def load_state_dict(self, state: dict) -> None:
        if state is None or state["loss"] is None:
            self.epochs = []
            return
        count = len(state["loss"])
        self.epochs = [{name: state[name][i].numpy() for name in FIELDS} for i in range(count)]

    def arrays(self) -> dict[str, np.ndarray]:
        """Each field as (epochs, images)."""
        return {name: np.stack([e[name] for e in self.epochs]) for name in FIELDS}


def all_examples(results: list, subsets: dict) -> dict[str, np.ndarray] | None:
    """The records of the runs that have them (a run finished before a resume has none),
    stacked as (runs, epochs, images) by each image's position in the whole training (test)
    set (`subsets`: see inputs.subset_indices), with the runs' seeds, the whole data's
    labels, and which images the subset holds; None if no run has records."""
    runs = [r for r in results if r.examples is not None]
    if not runs:
        return None
    arrays = full_size([r.examples for r in runs], subsets["train_index"],
                       subsets["num_train"], subsets["test_index"], subsets["num_test"])
    return {**arrays, "seeds": np.array([r.seed for r in runs]),
            "train_labels": subsets["train_labels"], "test_labels": subsets["test_labels"],
            "classes": np.array(subsets["classes"])}


def full_size(runs: list[dict], train_index: np.ndarray | None, num_train: int,
              test_index: np.ndarray | None, num_test: int) -> dict[str, np.ndarray]:
    """The runs' records (each `arrays()` plus "test_logits"), stacked as (runs, epochs,
    images) and indexed by each image's position in the whole training (test) set: rows of
    images outside a --subset are NaN (-1 for `correct`)."""
    out = {}
    for name in FIELDS:
        stacked = np.stack([r[name] for r in runs])
        full = np.full((*stacked.shape[:2], num_train), -1 if name == "correct" else np.nan,
                       dtype=stacked.dtype)
        full[..., _index(train_index, num_train)] = stacked
        out[name] = full
    logits = np.stack([r["test_logits"] for r in runs])
    out["test_logits"] = np.full((len(runs), num_test, logits.shape[-1]), np.nan, np.float32)
    out["test_logits"][:, _index(test_index, num_test)] = logits
    out["in_subset"] = np.zeros(num_train, dtype=bool)
    out["in_subset"][_index(train_index, num_train)] = True
    return out


def _index(index: np.ndarray | None, size: int) -> np.ndarray:
    return np.arange(size) if index is None else np.asarray(index)
