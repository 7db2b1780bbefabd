"""fastcifar ablate: the variants are what they claim (each switched-off trick is really
off), the differences are paired by seed, and a stopped ablation continues."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from conftest import make_tiny_archive
from fastcifar.sessions import ablate
from fastcifar.cli import main
from fastcifar.data.loader import DeviceLoader
from fastcifar.errors import InputError
from fastcifar.recipes import get_recipe
from fastcifar.train.evaluate import predict
from fastcifar.train.setup import set_up_without_data

AIRBENCH = get_recipe("airbench94")
TINY = dict(widths=(8, 16, 16), batch_size=30)


def set_up(**off):
    config = dataclasses.replace(AIRBENCH.config, **TINY, **off)
    return config, set_up_without_data(AIRBENCH, config, train_images=120)


def test_leave_one_out_and_the_ladder_plan_their_variants():
    names = [t.name for t in AIRBENCH.tricks]
    variants = ablate.plan(AIRBENCH)
    assert [v.name for v in variants] == ["full recipe"] + [f"without {n}" for n in names]
    assert variants[0].off == {} and variants[1].off == {"whiten": False}
    ladder = ablate.plan(AIRBENCH, ["lookahead", "tta", "translate"], ladder=True)
    assert [v.name for v in ladder] == ["plainest", "+ translate", "+ lookahead", "full recipe"]
    assert ladder[0].off == {"translate": 0, "lookahead_every": 0, "tta_level": 0}
    assert ladder[2].off == {"tta_level": 0} and ladder[3].off == {}
    with pytest.raises(InputError, match="no trick cutmix; its tricks: whitening"):
        ablate.plan(AIRBENCH, ["cutmix"])
    with pytest.raises(InputError, match="hlb declares no tricks"):
        ablate.plan(get_recipe("hlb"))


def test_each_airbench_trick_switched_off_is_off():
    _, on = set_up()
    # whitening: fixed whitened filters; off, a random first conv that trains
    _, off = set_up(whiten=False)
    assert not on.model.whiten.weight.requires_grad and off.model.whiten.weight.requires_grad
    # identity init: each 3x3 conv's first filters pass their input channel on; off, random
    def passes_input_on(model):
        w = model.groups[1].conv1.weight[:8]  # (the TINY widths: 8 -> 16 channels)
        return torch.equal(w, torch.nn.init.dirac_(torch.empty_like(w)))
    assert passes_input_on(on.model)
    assert not passes_input_on(set_up(identity_init=False)[1].model)
    # the whitening bias: frozen after its epochs; off, it trains on
    _, never = set_up(whiten_bias_epochs=1000)
    for run in (on, never):
        run.training.before_epoch(5)
    assert not on.model.whiten.bias.requires_grad and never.model.whiten.bias.requires_grad
    # the BatchNorm biases' lr: 64x the others'; off, the same
    lrs = [g["lr"] for g in on.training.optimizers[0].param_groups]
    assert lrs[0] == pytest.approx(64 * lrs[1])
    same = [g["lr"] for g in set_up(bias_lr_scale=1.0)[1].training.optimizers[0].param_groups]
    assert same[0] == pytest.approx(same[1])
    # lookahead: an average every 5 steps; off, none
    assert on.training.average is not None and set_up(lookahead_every=0)[1].training.average is None
    # label smoothing: off, the loss of a sure right answer is the plain cross-entropy's
    sure = torch.tensor([[20.0, 0.0, 0.0]])
    label = torch.tensor([0])
    assert on.training.loss(sure, label) > 1.0
    assert set_up(label_smoothing=0.0)[1].training.loss(sure, label) < 1e-6


def test_every_recipe_s_tricks_switch_off_by_its_own_values():
    from fastcifar.models.layers import DiracConv
    from fastcifar.recipes import RECIPES
    declaring = [r for r in RECIPES.values() if r.tricks]
    assert {"airbench94", "airbench94_muon", "hiverge94", "fable94_e1"} <= {
        r.name for r in declaring}
    for recipe in declaring:
        for trick in recipe.tricks:
            config = dataclasses.replace(recipe.config, **trick.off)  # its config's fields
            config.validate()
            if trick.name == "identity_init":  # no conv of the net starts as the identity
                convs = [m for m in recipe.build_model(config, 10).modules()
                         if isinstance(m, DiracConv)]
                assert convs and not any(c.identity for c in convs), recipe.name


@pytest.mark.parametrize("flip, changed", [("alternating", 1.0), ("random", None)])
def test_alternating_flip_flips_every_image_each_epoch_random_does_not(flip, changed):
    images = torch.randn(400, 3, 8, 8)
    config = dataclasses.replace(AIRBENCH.config, flip=flip, translate=0)
    loader = DeviceLoader(images, torch.zeros(400, dtype=torch.long), 100, config.augmentation())
    first, second = loader.epoch_images(0), loader.epoch_images(1)
    flipped = [not torch.equal(a, b) for a, b in zip(first, second)]
    share = sum(flipped) / len(flipped)
    assert share == changed if changed is not None else 0.35 < share < 0.65


def test_translate_off_leaves_the_images_in_place():
    images = torch.randn(50, 3, 8, 8)
    config = dataclasses.replace(AIRBENCH.config, translate=0, flip="none")
    loader = DeviceLoader(images, torch.zeros(50, dtype=torch.long), 10, config.augmentation())
    assert torch.equal(loader.epoch_images(0), images)
    shifted = dataclasses.replace(config, translate=2).augmentation()
    assert not torch.equal(DeviceLoader(images, torch.zeros(50, dtype=torch.long), 10,
                                        shifted).epoch_images(0), images)


def test_tta_off_is_one_view_per_image():
    _, run = set_up()
    model = run.model.eval()
    views = []
    model.register_forward_pre_hook(lambda m, args: views.append(len(args[0])))
    predict(model, torch.randn(7, 3, 32, 32), tta_level=2)
    assert sum(views) == 6 * 7
    views.clear()
    predict(model, torch.randn(7, 3, 32, 32), tta_level=0)
    assert sum(views) == 7


def test_the_difference_to_the_full_recipe_is_paired_by_seed():
    variants = [ablate.Variant("full recipe", {}, ()),
                ablate.Variant("without x", {"x": 0}, ("x",))]
    results = {"full recipe": [{"seed": 0, "accuracy": 0.50, "train_seconds": 2.0},
                               {"seed": 1, "accuracy": 0.70, "train_seconds": 2.0}],
               "without x": [{"seed": 1, "accuracy": 0.69, "train_seconds": 1.0},
                             {"seed": 0, "accuracy": 0.49, "train_seconds": 1.0}]}
    rows = ablate.summary(variants, results, "r", False)["rows"]
    # unpaired, the two seeds' spread (0.2) would swamp the 1-point difference; paired, the
    # difference is -0.01 at both seeds: its interval has no width
    assert rows[1]["difference_mean"] == pytest.approx(-0.01)
    assert rows[1]["difference_ci95"] == pytest.approx([-0.01, -0.01])
    assert rows[1]["seconds_mean"] == 1.0


def test_a_stopped_ablation_continues_where_it_stopped(tmp_path, monkeypatch, capsys):
    archive = make_tiny_archive(tmp_path)
    args = ["ablate", "--data", str(archive), "--device", "cpu", "--epochs", "1",
            "--tricks", "tta,lookahead", "--set", "widths=8,16,16", "--set", "batch_size=30",
            "--out", str(tmp_path / "abl")]
    calls = []
    real_train = ablate.train

    def stop_in_the_second_variant(recipe, **options):
        calls.append({k: options[k] for k in ("lookahead_every", "tta_level") if k in options})

        def stop(record):
            raise KeyboardInterrupt

        return real_train(recipe, **options, on_epoch=stop if len(calls) == 2 else None)

    monkeypatch.setattr(ablate, "train", stop_in_the_second_variant)
    assert main(args) == 130
    assert calls == [{}, {"lookahead_every": 0}]
    assert main(args) == 0  # again: the full recipe read back, lookahead's resumed
    printed = capsys.readouterr().out
    assert "full recipe: done before" in printed
    assert "without lookahead: continued after 0 finished run(s)" in printed
    assert calls[2:] == [{}, {"lookahead_every": 0}, {"tta_level": 0}]
    table = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert [r["variant"] for r in table["rows"]] == ["full recipe", "without lookahead",
                                                     "without tta"]  # the recipe's order
    assert all(r["runs"] == 2 and r["seeds"] == [0, 1] for r in table["rows"])
    assert (tmp_path / "abl" / "ablation.png").stat().st_size > 5000
    # other settings in the same folder: one clear line, nothing retrained
    assert main([*args, "--runs", "3"]) == 2
    assert "holds runs made otherwise (runs: 2 there, 3 here)" in capsys.readouterr().err


def test_an_ablation_never_reads_back_runs_made_with_other_settings(tmp_path, capsys):
    """Another recipe, subset, number of epochs, lr, seed or data in the same --out: the
    first variant's folder says what differs, the command stops with exit 2, and the
    ablation's table is left as it was."""
    archive = make_tiny_archive(tmp_path)
    out = tmp_path / "abl"
    args = ["ablate", "--data", str(archive), "--device", "cpu", "--epochs", "1", "--runs", "1",
            "--tricks", "tta", "--set", "widths=8,16,16", "--set", "batch_size=30",
            "--out", str(out)]
    assert main(args) == 0
    table = (out / "ablation.json").read_text()
    capsys.readouterr()
    other_data = make_tiny_archive(tmp_path / "other", test=11)
    for changed, said in [(["--epochs", "2"], "epochs: 1.0 there, 2.0 here"),
                          (["--set", "lr=5"], "lr: 11.5 there, 5.0 here"),
                          (["--seed", "1"], "seed: 0 there, 1 here"),
                          (["--subset", "120"], "subset: None there, 120 here"),
                          (["--data", str(other_data)], "data: sha256"),
                          (["--recipe", "airbench94_muon"], "recipe: 'airbench94' there, "
                                                            "'airbench94_muon' here")]:
        assert main([*args, *changed]) == 2, changed
        err = capsys.readouterr().err
        assert "holds runs made otherwise" in err and said in err, (changed, err)
        assert (out / "ablation.json").read_text() == table
    assert main(args) == 0  # the same settings: read back
    assert "full recipe: done before" in capsys.readouterr().out


@pytest.mark.parametrize("tricks", ["", ",", " , "])
def test_an_ablation_of_no_trick_is_refused(tricks, tmp_path, capsys):
    assert main(["ablate", "--tricks", tricks, "--device", "cpu",
                 "--out", str(tmp_path / "abl")]) == 2
    assert "--tricks names no trick" in capsys.readouterr().err
    assert not (tmp_path / "abl").exists()


def test_epochs_to_match_interpolate_the_sweep():
    sweep = {1.0: (0.90, 10.0), 1.25: (0.92, 12.5), 1.5: (0.935, 15.0), 2.0: (0.94, 20.0)}
    found = ablate.to_match(sweep, target=0.93, base=8.0)
    assert found["epochs_to_match"] == pytest.approx(8.0 * (1.25 + 0.25 * 2 / 3))
    assert found["seconds_to_match"] == pytest.approx(12.5 + 2.5 * 2 / 3)
    assert ablate.to_match(sweep, target=0.95, base=8.0)["epochs_to_match"] is None


def test_epochs_for_accuracy_sweeps_only_the_variants_that_lost(tmp_path, capsys):
    archive = make_tiny_archive(tmp_path)
    args = ["ablate", "--data", str(archive), "--device", "cpu", "--epochs", "1", "--runs",
            "1", "--tricks", "translate,tta", "--set", "widths=8,16,16", "--set",
            "batch_size=30", "--test-subset", "15", "--epochs-for-accuracy", "--out",
            str(tmp_path / "abl")]
    assert main(args) == 0
    assert "then up to 2 x 3 x 1 = 6 more runs" in capsys.readouterr().out
    rows = json.loads((tmp_path / "abl" / "ablation.json").read_text())["rows"]
    for row in rows[1:]:
        assert ("sweep" in row) == (row["difference_mean"] < 0), row["variant"]
        if "sweep" in row:
            assert sorted(row["sweep"]) == ["1", "1.25", "1.5", "2"]
    assert main([*args, "--ladder"]) == 2
