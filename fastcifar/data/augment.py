"""Batched augmentations on NCHW tensors, run on the training device: over a whole epoch for
CIFAR-sized images, a batch at a time for larger ones (random_resized_crop)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def flip_where(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror (left-right) the images where mask is True."""
    return torch.where(mask.view(-1, 1, 1, 1), images.flip(-1), images)


def random_flip_mask(n: int, device: torch.device | str,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    return torch.rand(n, device=device, generator=generator) < 0.5


def alternating_flip_mask(first_epoch_mask: torch.Tensor, epoch: int) -> torch.Tensor:
    """Alternating flip (airbench): epoch 0 mirrors a random half of the images; every later
    epoch mirrors exactly the images the epoch before did not, so each image is seen both
    ways every two epochs instead of at random."""
    return first_epoch_mask ^ bool(epoch % 2)


def colour_jitter(images: torch.Tensor, brightness_draws: torch.Tensor,
                  contrast_draws: torch.Tensor, brightness: float,
                  contrast: float) -> torch.Tensor:
    """Brightness and contrast jitter (hiverge's speed run, kept by Fable) with its draws
    given: one u1 and one u2 in [0, 1) per image shift all its channels and pixels by
    b = (2 u1 - 1) * brightness, then scale them by c = (2 u2 - 1) * contrast + 1. On
    normalised images, so b is in standard deviations and the scale is about the dataset's
    mean colour (0), not each image's own."""
    shift = (brightness_draws.view(-1, 1, 1, 1) * 2 - 1) * brightness
    scale = (contrast_draws.view(-1, 1, 1, 1) * 2 - 1) * contrast + 1
    return (images + shift) * scale


def random_colour_jitter(images: torch.Tensor, brightness: float, contrast: float,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """colour_jitter with its draws made here: brightness's, then contrast's, in the images'
    dtype, as the originals draw them."""
    draws = [torch.rand(len(images), 1, 1, 1, dtype=images.dtype, device=images.device,
                        generator=generator) for _ in range(2)]
    return colour_jitter(images, *draws, brightness, contrast)


def pad_reflect(images: torch.Tensor, pad: int) -> torch.Tensor:
    return F.pad(images, (pad,) * 4, mode="reflect") if pad > 0 else images


def random_crop(padded: torch.Tensor, size: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """A random size x size crop of each (already padded) image: a translation by up to
    (padded size - size) / 2 pixels in each direction. One gather over the images seen
    channels last, with no host sync (boolean masks per offset cost one each), and the
    crops come out in channels_last memory, as the convolutions want them."""
    n, c, h, w = padded.shape
    max_y, max_x = h - size, w - size
    if max_y == 0 and max_x == 0:
        return padded
    ys = torch.randint(0, max_y + 1, (n,), device=padded.device, generator=generator)
    xs = torch.randint(0, max_x + 1, (n,), device=padded.device, generator=generator)
    offsets = torch.arange(size, device=padded.device)
    rows = (ys[:, None] + offsets)[:, :, None]  # (n, size, 1)
    cols = (xs[:, None] + offsets)[:, None, :]  # (n, 1, size)
    image = torch.arange(n, device=padded.device)[:, None, None]
    crops = padded.permute(0, 2, 3, 1)[image, rows, cols]  # (n, size, size, c)
    return crops.permute(0, 3, 1, 2)


def random_square_mask(n: int, h: int, w: int, size: int, device: torch.device | str,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 1, h, w) booleans: one random size x size square per image, wholly inside it."""
    top = torch.randint(0, h - size + 1, (n, 1, 1), device=device, generator=generator)
    left = torch.randint(0, w - size + 1, (n, 1, 1), device=device, generator=generator)
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return inside.unsqueeze(1)


def cutout(images: torch.Tensor, size: int,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero one random size x size square per image, always wholly inside the image (as
    Page's ResNet-9 and airbench96 place it)."""
    if size <= 0:
        return images
    n, _, h, w = images.shape
    return images.masked_fill(random_square_mask(n, h, w, size, images.device, generator), 0)


def cutmix(images: torch.Tensor, targets: torch.Tensor,
           size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cutmix within a batch (hlb): each image gets a random size x size square, wholly
    inside it, pasted from a partner image at the same place (partners are a random
    permutation of the batch). targets are (N, classes) probabilities, e.g. one-hot; each
    image's mixed target gives its partner's target the weight of the pasted area."""
    if size <= 0:
        return images, targets
    n, _, h, w = images.shape
    partner = torch.randperm(n, device=images.device)
    inside = random_square_mask(n, h, w, size, images.device)
    mixed = torch.where(inside, images[partner], images)
    pasted = inside.flatten(1).float().mean(1, keepdim=True).to(targets.dtype)
    return mixed, (1 - pasted) * targets + pasted * targets[partner]


def random_resized_crop(images: torch.Tensor, size: int, scale: tuple[float, float] = (0.35, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Inception-style crops for larger images, a whole batch in one grid_sample: each
    image's crop covers a random fraction `scale` of its area with a random aspect ratio
    (log-uniform in `ratio`), at a random place, resized bilinearly to size x size and,
    with `flip`, mirrored at random. Crops wider or taller than the image are clipped to it."""
    n, device = len(images), images.device
    area = torch.empty(n, device=device).uniform_(*scale, generator=generator)
    log_ratio = torch.empty(n, device=device).uniform_(math.log(ratio[0]), math.log(ratio[1]),
                                                       generator=generator)
    aspect = log_ratio.exp()
    # Half-widths and centres in grid_sample's coordinates, where the image spans [-1, 1].
    half_w = (area * aspect).sqrt().clamp(max=1.0)
    half_h = (area / aspect).sqrt().clamp(max=1.0)
    centre_x = (torch.rand(n, device=device, generator=generator) * 2 - 1) * (1 - half_w)
    centre_y = (torch.rand(n, device=device, generator=generator) * 2 - 1) * (1 - half_h)
    sign = torch.ones(n, device=device)
    if flip:
        sign = torch.where(random_flip_mask(n, device, generator), -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 2] = half_w * sign, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = half_h, centre_y
    grid = F.affine_grid(theta, [n, images.size(1), size, size], align_corners=False)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="reflection",
                        align_corners=False)
    return out.to(images.dtype).contiguous(memory_format=torch.channels_last)


def resize(images: torch.Tensor, side: int, antialias: bool = True) -> torch.Tensor:
    """Square images scaled to side x side, bilinear (align_corners False) in float32, cast
    back, channels_last. antialias averages over each output pixel's whole footprint, as
    Pillow shrinks; without it each output pixel mixes its nearest 2x2 inputs only, as
    Fable E1 downsamples."""
    out = F.interpolate(images.float(), size=(side, side), mode="bilinear",
                        antialias=antialias, align_corners=False)
    return out.to(images.dtype).contiguous(memory_format=torch.channels_last)


def centre_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The central size x size square of each image."""
    h, w = images.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return images[..., top:top + size, left:left + size]
