"""A trained network's test results in full: top-1 and top-5 accuracy, accuracy per class,
and the confusion matrix (as a table and a PNG)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..train.evaluate import accuracy, top_k_accuracy
from .plots import new_figure


@dataclass(frozen=True)
class Evaluation:
    classes: tuple[str, ...]
    tta_level: int
    accuracy: float  # top-1, a fraction
    top5: float
    confusion: np.ndarray  # counts, [true class, predicted class]

    @classmethod
    def from_logits(cls, logits: torch.Tensor, labels: torch.Tensor, classes, tta_level: int):
        k = len(classes)
        pairs = labels.cpu().long() * k + logits.argmax(1).cpu()
        confusion = torch.bincount(pairs, minlength=k * k).reshape(k, k).numpy()
        return cls(tuple(classes), tta_level, accuracy(logits, labels),
                   top_k_accuracy(logits, labels, 5), confusion)

    @property
    def per_class(self) -> np.ndarray:
        """Each class's accuracy: the share of its images predicted as it (nan if none)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.confusion.diagonal() / self.confusion.sum(1)

    def lines(self) -> list[str]:
        n = int(self.confusion.sum())
        out = [f"{n:,} test images, TTA level {self.tta_level}: top-1 {self.accuracy:.2%}, "
               f"top-5 {self.top5:.2%}", "",
               f"{'class':<16} {'images':>7} {'accuracy':>9}  most often mistaken for"]
        for c, name in enumerate(self.classes):
            row = self.confusion[c].copy()
            row[c] = 0
            wrong = f"{self.classes[row.argmax()]} ({row.max()})" if row.any() else "-"
            out.append(f"{name[:16]:<16} {self.confusion[c].sum():>7,} "
                       f"{self.per_class[c]:>9.2%}  {wrong}")
        return out

    def as_dict(self) -> dict:
        return {"classes": list(self.classes), "tta_level": self.tta_level,
                "accuracy": self.accuracy, "top5": self.top5,
                "per_class": [None if np.isnan(a) else float(a) for a in self.per_class],
                "confusion": self.confusion.tolist()}

    def figure(self, title: str):
        """The confusion matrix, each row as shares of its class, counts written in."""
        k = len(self.classes)
        figure = new_figure(figsize=(2.2 + 0.55 * k, 1.6 + 0.5 * k))
        ax = figure.add_subplot()
        with np.errstate(invalid="ignore", divide="ignore"):
            shares = np.nan_to_num(self.confusion / self.confusion.sum(1, keepdims=True))
        image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        if k <= 20:
            for (i, j), count in np.ndenumerate(self.confusion):
                if count:
                    ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                            color="white" if shares[i, j] > 0.6 else "black")
        ax.set_xticks(range(k), self.classes, rotation=45, ha="right")
        ax.set_yticks(range(k), self.classes)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(f"{title}\ntop-1 {self.accuracy:.2%}, top-5 {self.top5:.2%} "
                     f"(TTA level {self.tta_level})", fontsize=9)
        figure.colorbar(image, ax=ax, label="share of the true class", shrink=0.8)
        return figure
