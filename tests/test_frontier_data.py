"""The frontier recipes' data and network blocks (hiverge's record, Fulcrum's Fable E1 and
E5): colour jitter, the conv groups' SiLU, and the resolution curriculum by plain bilinear
resize (E1) or by window crop (E5), each checked against the original's own code on the
same inputs, in float32 on a CPU."""

from __future__ import annotations

import itertools
import re
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastcifar.data.augment import (alternating_flip_mask, colour_jitter, cutout, flip_where,
                                    pad_reflect, random_colour_jitter, random_crop,
                                    random_flip_mask, resize)
from fastcifar.data.loader import Augmentation, DeviceLoader
from fastcifar.errors import InputError
from fastcifar.models.airbench import AirbenchNet
from fastcifar.recipes.airbench94 import Airbench94Config
from fastcifar.recipes.general import GeneralConfig
from reference_modules import (FABLE_E1, FABLE_E5, HIVERGE, eager, needs_references,
                               reference_module)

BRIGHTNESS, CONTRAST = 0.1399, 0.1308  # the originals' ranges


def images(n: int, side: int = 32, channels: int = 3, seed: int = 0) -> torch.Tensor:
    x = torch.randn(n, channels, side, side, generator=torch.Generator().manual_seed(seed))
    return x.contiguous(memory_format=torch.channels_last)


def epochs_of_batches(loader: DeviceLoader, epochs: int) -> list:
    return [[(x.clone(), y.clone()) for x, y in loader] for _ in range(epochs)]


# Colour jitter

@needs_references
@pytest.mark.parametrize("script", [HIVERGE, FABLE_E1, FABLE_E5], ids=["hiverge", "e1", "e5"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["float32", "float16"])
def test_colour_jitter_draws_and_computes_as_the_originals(script, dtype):
    """Seeded alike, the original's batch_color_jitter and ours give the same images bit for
    bit: the same draws (brightness's, then contrast's, in the images' dtype), the same sums."""
    theirs_fn = eager(reference_module(script).batch_color_jitter)
    x = images(64).to(dtype)
    torch.manual_seed(3)
    theirs = theirs_fn(x, BRIGHTNESS, CONTRAST)
    ours = random_colour_jitter(x, BRIGHTNESS, CONTRAST, torch.Generator().manual_seed(3))
    assert torch.equal(ours, theirs)
    torch.manual_seed(3)  # the loader draws from torch's default generator
    assert torch.equal(random_colour_jitter(x, BRIGHTNESS, CONTRAST), theirs)
    # Given those draws, the pure function computes what the original did.
    torch.manual_seed(3)
    u1, u2 = torch.rand(64, dtype=dtype), torch.rand(64, dtype=dtype)
    assert torch.equal(colour_jitter(x, u1, u2, BRIGHTNESS, CONTRAST), theirs)


def test_colour_jitter_shifts_then_scales_each_image_by_its_own_uniform_draws():
    n = 4000
    zeros = torch.zeros(n, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    out0 = random_colour_jitter(zeros, BRIGHTNESS, CONTRAST, torch.Generator().manual_seed(0))
    out1 = random_colour_jitter(zeros + 1, BRIGHTNESS, CONTRAST,
                                torch.Generator().manual_seed(0))
    assert out0.is_contiguous(memory_format=torch.channels_last)
    # (x + b) * c at x = 0 and 1: c = out1 - out0, b = out0 / c, one of each per image.
    scale = out1 - out0
    shift = out0 / scale
    assert torch.allclose(scale, scale[:, :1, :1, :1].expand_as(scale))
    assert torch.allclose(shift, shift[:, :1, :1, :1].expand_as(shift), atol=1e-6)
    b, c = shift[:, 0, 0, 0], scale[:, 0, 0, 0]
    assert -BRIGHTNESS - 1e-6 <= b.min() < -0.99 * BRIGHTNESS
    assert 0.99 * BRIGHTNESS < b.max() <= BRIGHTNESS + 1e-6
    assert 1 - CONTRAST - 1e-6 <= c.min() < 1 - 0.99 * CONTRAST
    assert 1 + 0.99 * CONTRAST < c.max() <= 1 + CONTRAST + 1e-6
    assert abs(b.mean()) < 0.01 and abs(c.mean() - 1) < 0.01  # uniform about 0 and 1
    assert abs(torch.corrcoef(torch.stack([b, c]))[0, 1]) < 0.1  # drawn independently


def test_the_loader_jitters_after_crop_and_flip_and_before_the_resize():
    """Its draws come after the crop's and the flip's, on the 32 px images; an E1-style
    smaller epoch is the downsample of those (jitter, then resize, as E1 has it)."""
    x, labels = images(32), torch.arange(32)

    def loader(**options) -> DeviceLoader:
        return DeviceLoader(x, labels, 8, Augmentation(flip="alternating", translate=2,
                                                       **options))

    jitter = dict(brightness=BRIGHTNESS, contrast=CONTRAST)
    plain, jittered = loader(), loader(**jitter)
    smaller = loader(progressive=(24, 24, 24), progressive_antialias=False, **jitter)
    for epoch in range(3):
        torch.manual_seed(epoch)
        want = random_colour_jitter(plain.epoch_images(epoch), BRIGHTNESS, CONTRAST)
        torch.manual_seed(epoch)
        assert torch.equal(jittered.epoch_images(epoch), want)
        torch.manual_seed(epoch)
        assert torch.equal(smaller.epoch_images(epoch), resize(want, 24, antialias=False))


def old_epoch(x: torch.Tensor, aug: Augmentation, epoch: int, first_flip: list):
    """An epoch as the loader made it before colour jitter and crop mode existed."""
    out = random_crop(pad_reflect(x, aug.translate), x.size(-1)) if aug.translate else x
    if aug.flip == "random":
        out = flip_where(out, random_flip_mask(len(out), "cpu"))
    elif aug.flip == "alternating":
        if not first_flip:
            first_flip.append(random_flip_mask(len(out), "cpu"))
        out = flip_where(out, alternating_flip_mask(first_flip[0], epoch))
    out = cutout(out, aug.cutout)
    if epoch < len(aug.progressive):
        side = aug.progressive[epoch]
        out = F.interpolate(out, size=(side, side), mode="bilinear", antialias=True,
                            align_corners=False).contiguous(memory_format=torch.channels_last)
    return out


@pytest.mark.parametrize("aug", [Airbench94Config().augmentation(),
                                 Augmentation(flip="random", translate=2, cutout=8,
                                              progressive=(24, 28))],
                         ids=["airbench94", "cutout-resized"])
def test_recipes_without_the_new_fields_see_the_batches_they_saw_before(aug):
    """airbench94's defaults (jitter off, resize mode, antialiased) draw exactly what the loader
    drew before these blocks: the same batches, and the generator left in the same state."""
    assert (aug.brightness, aug.contrast, aug.progressive_mode) == (0, 0, "resize")
    x, labels = images(48), torch.arange(48)
    torch.manual_seed(0)
    ours = epochs_of_batches(DeviceLoader(x, labels, 16, aug), 3)
    ours_state = torch.get_rng_state()
    torch.manual_seed(0)
    first_flip = []
    for epoch, batches in enumerate(ours):
        augmented = old_epoch(x, aug, epoch, first_flip)
        order = torch.randperm(48)
        for i, (batch, batch_labels) in enumerate(batches):
            index = order[16 * i:16 * (i + 1)]
            assert torch.equal(batch, augmented[index]) and torch.equal(batch_labels, index)
    assert torch.equal(torch.get_rng_state(), ours_state)


def test_colour_jitter_and_curriculum_settings_are_checked():
    for bad in (dict(brightness=-0.1), dict(contrast=1.0), dict(brightness=float("inf")),
                dict(contrast=float("nan")), dict(progressive_mode="window")):
        with pytest.raises(InputError, match="brightness|contrast|progressive_mode"):
            Airbench94Config(**bad).validate()
    with pytest.raises(InputError, match="resize, crop"):
        Airbench94Config(progressive_mode="window").validate()
    with pytest.raises(InputError, match="no colour jitter"):
        GeneralConfig(brightness=0.1).validate()  # its augmentation would drop it silently
    config = Airbench94Config(brightness=BRIGHTNESS, contrast=CONTRAST,
                              progressive_sizes=(28,) * 5, progressive_mode="crop",
                              progressive_antialias=False)
    config.validate()
    aug = config.augmentation()
    assert (aug.brightness, aug.contrast, aug.progressive, aug.progressive_mode,
            aug.progressive_antialias) == (BRIGHTNESS, CONTRAST, (28,) * 5, "crop", False)


# The conv groups' activation

def test_silu_replaces_gelu_in_the_conv_groups_only():
    silu, gelu = AirbenchNet(activation="silu"), AirbenchNet()
    assert type(silu.activation) is nn.GELU  # after the whitening conv, in every original
    assert all(type(g.activation) is nn.SiLU for g in silu.groups)
    assert sum(isinstance(m, nn.SiLU) for m in silu.modules()) == 3
    assert not any(isinstance(m, nn.SiLU) for m in gelu.modules())
    assert all(type(g.activation) is nn.GELU for g in gelu.groups)
    with pytest.raises(ValueError, match="one of gelu, silu, got 'relu'"):
        AirbenchNet(activation="relu")


def as_ours(state: dict) -> dict:
    """The originals' CifarNet names (layers.1 .. layers.3 the groups) as AirbenchNet's."""
    return {re.sub(r"^layers\.(\d)\.", lambda m: f"groups.{int(m[1]) - 1}.", k): v
            for k, v in state.items()}


@needs_references
@pytest.mark.parametrize("script,sides", [(HIVERGE, (32,)), (FABLE_E5, (28, 32)),
                                          (FABLE_E1, (24, 28, 32))], ids=["hiverge", "e5", "e1"])
def test_a_silu_net_computes_the_originals_cifarnet(script, sides):
    """The original's CifarNet (in float32) and AirbenchNet with SiLU groups, on the same
    weights (BatchNorm's biases and running statistics made random), both channels_last: the
    same logits bit for bit in training and evaluation, and the same running statistics
    after a training forward (at every side the original trains at)."""
    module = reference_module(script)
    torch.manual_seed(0)
    theirs = module.CifarNet().float()
    with torch.no_grad():
        for name, value in theirs.state_dict().items():
            if name.endswith(("norm1.bias", "norm2.bias", "running_mean")):
                value.normal_(0, 0.3)
            elif name.endswith("running_var"):
                value.uniform_(0.5, 2)
    ours = AirbenchNet((64, 256, 256), 10, batchnorm_momentum=0.5566, output_scale=1 / 256,
                       activation="silu").to(memory_format=torch.channels_last)
    ours.load_state_dict(as_ours(theirs.state_dict()))
    for side in sides:
        x = images(8, side, seed=side)
        kwargs = {"res": side} if script == FABLE_E1 else {}  # (E1's forward resizes to res)
        for training in (True, False):
            for net in (theirs, ours):
                net.train(training)
            assert torch.equal(ours(x), theirs(x, **kwargs))
        ours_state = ours.state_dict()
        assert all(torch.equal(ours_state[k], v) for k, v in as_ours(theirs.state_dict()).items())


# The resolution curriculum

@needs_references
@pytest.mark.parametrize("side", [24, 28])
def test_e1_resize_is_the_originals_bilinear_downsample_without_antialias(side, monkeypatch):
    """E1's forward resizes inside the network; the loader with progressive_antialias off
    gives the whitening conv the same images bit for bit (antialiased, it would not)."""
    e1 = reference_module(FABLE_E1)
    seen = {}

    def conv2d(x, *args):
        seen["input"] = x
        return F.conv2d(x, *args)

    monkeypatch.setattr(e1, "F", SimpleNamespace(interpolate=F.interpolate, conv2d=conv2d))
    x = images(16)
    with torch.no_grad():
        e1.CifarNet().float().eval()(x, res=side)
    loader = DeviceLoader(x, torch.arange(16), 16, Augmentation(
        flip="none", progressive=(side,), progressive_antialias=False))
    assert torch.equal(loader.epoch_images(0), seen["input"])
    antialiased = DeviceLoader(x, torch.arange(16), 16,
                               Augmentation(flip="none", progressive=(side,)))
    assert not torch.allclose(antialiased.epoch_images(0), seen["input"], atol=1e-3)


def window_positions(windows: torch.Tensor, padded: torch.Tensor) -> list[tuple[int, int]]:
    """Where in its padded image each (side x side) window lies: (top, left)."""
    side = windows.size(-1)
    candidates = padded.unfold(2, side, 1).unfold(3, side, 1)  # (n, 1, rows, cols, side, side)
    match = (candidates == windows[:, :, None, None]).flatten(-2).all(-1)[:, 0]
    assert (match.flatten(1).sum(1) == 1).all()  # each is exactly one window of its image
    return [tuple(p[1:].tolist()) for p in match.nonzero()]


@needs_references
@pytest.mark.parametrize("side", [24, 28, 32])
def test_e5_crop_mode_takes_the_originals_windows(side, monkeypatch):
    """E5's own loader and ours in crop mode, on the same images (one channel of distinct
    values), translate 2: every image is a whole window of the padded image, with the same
    set of places (the centred (side + 4) square's 25: at 28 px none touches the padding),
    each about equally often, rows and columns independent."""
    e5 = reference_module(FABLE_E5)
    monkeypatch.setattr(e5, "batch_crop", eager(e5.batch_crop))
    n, x = 800, images(800, channels=1)
    theirs_loader = e5.CifarLoader.__new__(e5.CifarLoader)
    theirs_loader.__dict__.update(
        images=x, labels=torch.arange(n), normalize=lambda t: t, proc_images={}, epoch=0,
        aug={"translate": 2}, batch_size=n, drop_last=True, shuffle=False, crop_size=side)
    theirs, _ = next(iter(theirs_loader))
    ours = DeviceLoader(x, torch.arange(n), n, Augmentation(
        flip="none", translate=2, progressive=(side,), progressive_mode="crop")).epoch_images(0)
    padded = pad_reflect(x, 2)
    top = (32 - side) // 2  # in the padded image: -2..2 around the centred window, in pixels
    expected = set(itertools.product(range(top, top + 5), repeat=2))
    for name, windows in (("theirs", theirs), ("ours", ours)):
        positions = window_positions(windows, padded)
        assert set(positions) == expected, name
        counts = [positions.count(p) for p in expected]  # n / 25 = 32 expected of each
        assert min(counts) > 32 / 3 and max(counts) < 32 * 3, name
    if side == 28:  # the image lies in rows and columns 2..33 of the padded one
        assert all(2 <= start and start + 28 <= 34 for start in itertools.chain(*expected))


@needs_references
def test_curricula_train_the_fable_sides_per_epoch():
    """E1: 24 px for three epochs, 28 for three, then 32 (resized); E5: 28 for five, then 32
    (windows); the epochs at full size are those of resize mode exactly."""
    e1, e5 = reference_module(FABLE_E1), reference_module(FABLE_E5)
    e1_schedule = e1.hyp["res_schedule"]
    e1_sides = [e1_schedule[min(e, len(e1_schedule) - 1)] for e in range(9)]  # as its loop
    e5_sides = [e5.res_for_epoch(e) for e in range(9)]
    assert e1_sides == [24] * 3 + [28] * 3 + [32] * 3 and e5_sides == [28] * 5 + [32] * 4
    x, labels = images(16), torch.arange(16)
    loaders = {}
    for name, config in (
            ("e1", Airbench94Config(progressive_sizes=(24, 24, 24, 28, 28, 28),
                                    progressive_antialias=False)),
            ("e5", Airbench94Config(progressive_sizes=(28,) * 5, progressive_mode="crop")),
            ("e5 resized", Airbench94Config(progressive_sizes=(28,) * 5))):
        torch.manual_seed(0)
        loaders[name] = epochs_of_batches(DeviceLoader(x, labels, 8, config.augmentation()), 9)
    assert [batches[0][0].size(-1) for batches in loaders["e1"]] == e1_sides
    assert [batches[0][0].size(-1) for batches in loaders["e5"]] == e5_sides
    for crop, resized in zip(loaders["e5"][5:], loaders["e5 resized"][5:]):
        assert all(torch.equal(a, b) for (a, _), (b, _) in zip(crop, resized))
