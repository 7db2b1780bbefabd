"""Data-parallel runs (`--ddp`) over torchrun's processes (two Gloo ranks on a CPU): the
same global batches as one process, so the same weights; evaluation counting every test
image once; checkpoints resumable on another number of ranks."""

from __future__ import annotations

import pytest
import torch
from conftest import torchrun

import fastcifar
from fastcifar.data.loader import DeviceLoader
from fastcifar.errors import InputError
from fastcifar.recipes import get_recipe
from fastcifar.train.data_parallel import (DataParallel, SyncedBatchNorm, check_data_parallel,
                                           synced_batch_norms)
from fastcifar.train.distributed import Ranks

# A narrow airbench94 whose BatchNorm sees the global batch (sync_bn): its normalisation
# does not depend on how the batch is shared, so two ranks must train what one trains.
# Its whitening bias stops training after epoch 1: DDP must follow (it is wrapped afresh).
PLAIN = ["--epochs", "3", "--set", "batch_size=30", "--set", "widths=8,16,16",
         "--set", "whiten_bias_epochs=1", "--device", "cpu"]
AIRBENCH = [*PLAIN, "--set", "sync_bn=true"]
# The general trainer: ResNet-18 with SGD one-cycle on random-resized crops.
GENERAL = ["--recipe", "resnet18_imagewoof_onecycle", "--image-size", "24", "--epochs", "2",
           "--set", "batch_size=30", "--set", "sync_bn=true", "--device", "cpu",
           "--no-checkpoints"]


def weights(folder) -> dict[str, torch.Tensor]:
    return torch.load(folder / "model.pt", weights_only=True)


def largest_relative_difference(a: dict, b: dict) -> float:
    return max(((a[k].float() - b[k].float()).abs().max() /
                a[k].float().abs().max().clamp_min(1e-6)).item() for k in a)


def metrics(folder) -> list[list[str]]:
    """metrics.csv's rows without the seconds (which differ run to run)."""
    lines = (folder / "metrics.csv").read_text().splitlines()
    return [line.split(",")[:-1] for line in lines]


def one_process(archive, folder, args) -> None:
    done = torchrun(1, "--data", archive, *args, "--out", folder)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    from conftest import make_tiny_archive
    return make_tiny_archive(tmp_path_factory.mktemp("data-parallel"))


@pytest.fixture(scope="module")
def airbench_alone(archive, tmp_path_factory):
    """AIRBENCH trained by one process (the run the tests hold two ranks against)."""
    folder = tmp_path_factory.mktemp("alone") / "one"
    one_process(archive, folder, AIRBENCH)
    return folder


@pytest.mark.parametrize("args, tolerance", [(AIRBENCH, 1e-3), (GENERAL, 2e-2)],
                         ids=["airbench94", "general"])
def test_two_ranks_train_the_weights_one_process_trains(archive, tmp_path, args, tolerance):
    one_process(archive, tmp_path / "one", args)
    done = torchrun(2, "--data", archive, *args, "--ddp", "--out", tmp_path / "two")
    assert done.returncode == 0, done.stderr
    assert "data-parallel over 2 ranks: 15 of each batch of 30 per rank, BatchNorm over the " \
           "whole batch" in done.stdout
    # Float sums in another order: equal to rounding, grown a little over the steps
    # (a shared batch's gradients summed in another order; SGD at these lrs amplifies).
    assert largest_relative_difference(weights(tmp_path / "one"),
                                       weights(tmp_path / "two")) < tolerance
    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert len(one) == len(two) == 1 + int(args[args.index("--epochs") + 1])
    for a, b in zip(one[1:], two[1:]):  # train loss and accuracy over the global batch
        assert float(a[3]) == pytest.approx(float(b[3]), rel=1e-3)
        assert a[4] == b[4]


def test_without_synced_batch_norm_the_shares_normalise_apart(archive, airbench_alone,
                                                              tmp_path):
    """The control: BatchNorm over each rank's half batch is not one process's."""
    done = torchrun(2, "--data", archive, *PLAIN, "--ddp", "--out", tmp_path / "two")
    assert done.returncode == 0, done.stderr
    assert largest_relative_difference(weights(airbench_alone),
                                       weights(tmp_path / "two")) > 1e-2


def test_a_checkpoint_resumes_on_another_number_of_ranks(archive, airbench_alone, tmp_path):
    def stop_after_the_first_epoch(record):
        raise KeyboardInterrupt

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as torchrun's processes: the same float sums
    try:
        with pytest.raises(KeyboardInterrupt):
            fastcifar.train("airbench94", archive, epochs=3, device="cpu", ddp=True,
                            checkpoints=True, out=tmp_path / "cut", verbose=False,
                            on_epoch=stop_after_the_first_epoch, batch_size=30,
                            widths=(8, 16, 16), whiten_bias_epochs=1, sync_bn=True)  # AIRBENCH
    finally:
        torch.set_num_threads(threads)
    done = torchrun(2, "--resume", tmp_path / "cut", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert "continuing from epoch 1" in done.stdout
    assert largest_relative_difference(weights(airbench_alone),
                                       weights(tmp_path / "cut")) < 1e-3
    assert len(metrics(tmp_path / "cut")) == 4  # the header and three epochs, once each


def test_each_rank_takes_a_consecutive_share_and_the_shares_make_the_batch():
    images, labels = torch.arange(40.0).view(40, 1, 1, 1), torch.arange(40)
    torch.manual_seed(0)
    whole = [y for _, y in DeviceLoader(images, labels, 12, share=(0, 1))]
    shares = []
    for rank in range(3):
        torch.manual_seed(0)
        shares.append([y for _, y in DeviceLoader(images, labels, 12, share=(rank, 3))])
    for i, batch in enumerate(whole):
        assert torch.equal(torch.cat([s[i] for s in shares]), batch)
        assert all(len(s[i]) == 4 for s in shares)


def test_evaluation_shards_cover_every_test_image_once():
    images = torch.arange(10)
    for world in (1, 2, 3, 4):
        shards = [DataParallel(Ranks(r, world), torch.device("cpu")).shard(images)
                  for r in range(world)]
        assert torch.equal(torch.cat(shards), images)


def test_what_cannot_share_a_batch_is_refused_before_any_work():
    recipe = get_recipe("airbench94")
    with pytest.raises(InputError, match="batch_size 1024 does not split into 3 equal shares"):
        check_data_parallel(recipe, recipe.config, 3)
    check_data_parallel(recipe, recipe.config, 4)
    tricks = get_recipe("bag_of_tricks")
    with pytest.raises(InputError, match="ghost batch norm"):
        check_data_parallel(tricks, tricks.config, 2)


def test_synced_batch_norm_is_batch_norm_in_one_process_and_shares_its_tensors():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4, momentum=0.3))
    norm = net[1]
    x = torch.randn(6, 3, 5, 5)
    expected = net(x)
    synced_batch_norms(net)
    assert isinstance(net[1], SyncedBatchNorm)
    assert net[1].weight is norm.weight and net[1].running_mean is norm.running_mean
    torch.testing.assert_close(net(x), expected)


def test_ddp_in_a_single_process_says_it_trains_alone(archive, tmp_path, capsys):
    fastcifar.train("airbench94", archive, epochs=1, device="cpu", ddp=True, batch_size=30,
                    widths=(8, 16, 16), out=tmp_path / "alone")
    assert "this run trains in this process alone" in capsys.readouterr().out
