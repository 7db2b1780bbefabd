"""Patch whitening: a first convolution whose filters decorrelate the image patches.

The filters are the eigenvectors of the covariance of k x k patches of (normalised)
training images, each scaled by 1/sqrt(eigenvalue + eps), so that the layer's outputs
have about identity covariance. Airbench also keeps each filter's negative, which lets
the following GELU pass both signs of every whitened direction.
"""

from __future__ import annotations

import torch
from torch import nn


def image_patches(images: torch.Tensor, size: int) -> torch.Tensor:
    """All size x size patches of NCHW images, as (num_patches, C * size * size) in float32."""
    c = images.size(1)
    patches = images.float().unfold(2, size, 1).unfold(3, size, 1)  # N, C, H', W', k, k
    return patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * size * size)


def patch_second_moment(images: torch.Tensor, size: int,
                        chunk_size: int | None = None) -> torch.Tensor:
    """The uncentred second moment of all size x size patches of images, summed chunk by
    chunk of chunk_size images (all at once if None), so that the patches of a whole
    training set (hlb whitens over all 50,000 images) need never be held at once."""
    dim = images.size(1) * size * size
    total = torch.zeros(dim, dim, dtype=torch.float32, device=images.device)
    count = 0
    for chunk in images.split(chunk_size or len(images)):
        patches = image_patches(chunk, size)
        total += patches.T @ patches
        count += len(patches)
    return total / count


def patch_eigenbasis(second_moment: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending) and eigenvectors (rows) of the patches' second moment.

    Like airbench, this is the uncentred second moment: the inputs are already
    normalised to about zero mean, and the layer's bias absorbs what remains.
    """
    eigenvalues, eigenvectors = torch.linalg.eigh(second_moment)
    return eigenvalues.flip(0), eigenvectors.T.flip(0)


def random_images(images: torch.Tensor, n: int) -> torch.Tensor:
    """n images drawn at random: never the first n, since an image-folder dataset is
    sorted by class and its first images would all be of one class."""
    return images[torch.randperm(len(images), device=images.device)[:n]]


@torch.no_grad()
def whitening_conv_init(conv: nn.Conv2d, images: torch.Tensor, eps: float = 5e-4,
                        with_negatives: bool = True, chunk_size: int | None = None) -> None:
    """Set conv's filters to whiten images' patches; conv must have out_channels equal to
    C*k*k (or twice that with_negatives). chunk_size: images per chunk of the second
    moment's sum (None: all at once)."""
    k = conv.kernel_size[0]
    c = images.size(1)
    eigenvalues, eigenvectors = patch_eigenbasis(patch_second_moment(images, k, chunk_size))
    filters = (eigenvectors / torch.sqrt(eigenvalues + eps)[:, None]).view(-1, c, k, k)
    if with_negatives:
        filters = torch.cat((filters, -filters))
    if conv.weight.shape != filters.shape:
        raise ValueError(f"whitening conv must have weight shape {tuple(filters.shape)}, "
                         f"has {tuple(conv.weight.shape)}")
    conv.weight.copy_(filters.to(conv.weight.dtype))
