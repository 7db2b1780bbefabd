import torch
import torch.nn.functional as F


def summed_cross_entropy(label_smoothing: float = 0.0):
    """Cross-entropy summed over the batch: with decoupled hyperparameters the lr is per
    example, so the gradient must grow with the batch rather than be averaged."""

    def loss(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, labels, label_smoothing=label_smoothing, reduction="sum")

    return loss
