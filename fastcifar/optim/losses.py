import torch
import torch.nn.functional as F


def summed_cross_entropy(label_smoothing: float = 0.0, scale: float = 1.0):
    """Cross-entropy summed over the batch (times scale): with decoupled hyperparameters the
    lr is per example, so the gradient must grow with the batch rather than be averaged.
    Targets are class indices or (N, classes) probabilities, e.g. cutmix's mixed labels."""

    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        summed = F.cross_entropy(outputs, targets, label_smoothing=label_smoothing,
                                 reduction="sum")
        return summed if scale == 1.0 else scale * summed

    return loss
