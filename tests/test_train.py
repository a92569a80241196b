import dataclasses
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from diffcmr_core.data.pairs import PreprocessConfig, build_pairs, pairs_path
from diffcmr_core.method.checkpoints import load_checkpoint
from diffcmr_core.method.networks import UNetConfig
from diffcmr_core.method.settings import TrainConfig
from diffcmr_core.method.systems import CGANConfig
from diffcmr_core.method.train import _flip, batch_indices, train
from tests.test_networks import TINY

MODEL = TINY
SMALL_UNET = UNetConfig(channels=4, depth=2)
CFG = TrainConfig(
    iterations=6, batch_size=2, lr=1e-3, ema_decay=0.9, log_every=1, checkpoint_every=3
)


@pytest.fixture(scope="module")
def pairs(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("train_pairs")
    build_pairs(
        tiny_root, out, "cine", PreprocessConfig(pad_to=128, size=32), accs=(4,), progress=False
    )
    return pairs_path(out, "cine", 4)


def _weights(path):
    ckpt = load_checkpoint(path)
    return ckpt["system"], ckpt["ema"]


@pytest.mark.parametrize("method", ["diffcmr", "unet", "cgan"])
def test_resumed_run_equals_uninterrupted_run(pairs, tmp_path, method):
    model = {"diffcmr": MODEL, "unet": SMALL_UNET, "cgan": CGANConfig(SMALL_UNET)}[method]
    full = train(method, pairs, tmp_path / "full", CFG, model, device="cpu", progress=False)
    half = train(
        method,
        pairs,
        tmp_path / "resumed",
        dataclasses.replace(CFG, iterations=3),
        model,
        device="cpu",
        progress=False,
    )
    assert load_checkpoint(half)["step"] == 3
    resumed = train(method, pairs, tmp_path / "resumed", CFG, model, device="cpu", progress=False)
    (a, ea), (b, eb) = _weights(full), _weights(resumed)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    for k in ea:
        torch.testing.assert_close(ea[k], eb[k], rtol=0, atol=0)
    log = (tmp_path / "resumed" / "loss.csv").read_text().splitlines()
    assert log[0].startswith("step,loss") and [ln.split(",")[0] for ln in log[1:]] == [
        str(i) for i in range(1, 7)
    ]


def test_training_lowers_the_loss(pairs, tmp_path):
    cfg = dataclasses.replace(CFG, iterations=60, batch_size=4, log_every=10, checkpoint_every=60)
    train(
        "unet", pairs, tmp_path, cfg, UNetConfig(channels=8, depth=2), device="cpu", progress=False
    )
    rows = (tmp_path / "loss.csv").read_text().splitlines()[1:]
    first, last = float(rows[0].split(",")[1]), float(rows[-1].split(",")[1])
    assert last < 0.7 * first


def test_flips_apply_to_input_and_target_alike():
    x = torch.arange(2 * 9, dtype=torch.float32).reshape(2, 1, 3, 3)
    flips = torch.tensor([[True, False], [True, True]])
    out = _flip(x, flips)
    torch.testing.assert_close(out[0, 0], x[0, 0].flip(-1))
    torch.testing.assert_close(out[1, 0], x[1, 0].flip(-1).flip(-2))


def test_batch_order_covers_each_epoch_once():
    seen = [i for step in range(5) for i in batch_indices(10, 4, step, seed=0)]
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))


def _ddp_worker(rank, world, init_file, pairs, out, cfg):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        train("diffcmr", pairs, out, cfg, MODEL, device="cpu", progress=False)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_processes_equal_one_process_with_the_global_batch(pairs, tmp_path):
    cfg = dataclasses.replace(CFG, iterations=3, checkpoint_every=3)
    mp.spawn(
        _ddp_worker,
        args=(2, str(tmp_path / "init"), str(pairs), str(tmp_path / "ddp"), cfg),
        nprocs=2,
    )
    single = train(
        "diffcmr",
        pairs,
        tmp_path / "single",
        dataclasses.replace(cfg, batch_size=4),
        MODEL,
        device="cpu",
        progress=False,
    )
    (a, _), (b, _) = _weights(tmp_path / "ddp" / "last.pt"), _weights(single)
    # equal up to float summation order. Adam divides each gradient by its own running size, so
    # a gradient that is zero in exact arithmetic (behind the zero-initialised output layers at
    # the first step) and round-off in practice becomes a step of up to lr with a random sign:
    # nearly every weight agrees to a tenth of a step, none by more than one step per iteration
    wa = torch.cat([a[k].flatten() for k in sorted(a)])
    wb = torch.cat([b[k].flatten() for k in sorted(a)])
    off = ~torch.isclose(wa, wb, rtol=1e-3, atol=1e-4)
    assert off.float().mean() < 2e-3, f"{int(off.sum())} of {len(wa)} weights differ"
    assert (wa - wb).abs().max() <= cfg.lr * cfg.iterations


def test_checkpoint_of_another_configuration_is_not_reused(pairs, tmp_path):
    model = SMALL_UNET
    train("unet", pairs, tmp_path, CFG, model, device="cpu", progress=False)
    other = dataclasses.replace(CFG, lr=5e-4)
    ckpt = load_checkpoint(
        train("unet", pairs, tmp_path, other, model, device="cpu", progress=False)
    )
    assert ckpt["train_config"]["lr"] == 5e-4 and ckpt["step"] == 6
    longer = dataclasses.replace(other, iterations=8)  # extending a run resumes it
    assert (
        load_checkpoint(
            train("unet", pairs, tmp_path, longer, model, device="cpu", progress=False)
        )["step"]
        == 8
    )
    rows = (tmp_path / "loss.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == [str(i) for i in range(1, 9)]


def test_diffcmr_train_step_uses_its_loss_weighting():
    """The training step's loss is Eq. 5 (``eps``) or Eq. 5 weighted by 1 / abar_t (``v``),
    computed from the same draws; a checkpoint rebuilds the system with its weighting."""
    from diffcmr_core.method import schedule
    from diffcmr_core.method.systems import DiffusionSystem, to_model_space

    g = torch.Generator().manual_seed(1)
    inp, tgt = torch.rand(3, 1, 16, 16, generator=g), torch.rand(3, 1, 16, 16, generator=g)
    losses = {}
    for weighting in ("eps", "v"):
        torch.manual_seed(0)
        system = DiffusionSystem(
            dataclasses.replace(TINY, train_steps=1000, loss_weighting=weighting)
        )
        rand = system.randomness(torch.Generator().manual_seed(2), 3, (1, 16, 16))
        t = system.train_timesteps[rand["t_index"]]
        with torch.no_grad():
            eps = system.model(
                schedule.q_sample(to_model_space(tgt), t, rand["noise"]), t, to_model_space(inp)
            )
        err = ((eps - rand["noise"]) ** 2).flatten(1).sum(1)  # Eq. 5's squared norm
        weights = (
            1 / schedule.base_alphas_cumprod()[t].float() if weighting == "v" else torch.ones(3)
        )
        opt = torch.optim.SGD(system.model.parameters(), lr=0.0)
        losses[weighting] = system.train_step(inp, tgt, rand, [opt], lambda m: None)["loss"]
        assert losses[weighting] == pytest.approx((weights * err).mean().item(), rel=1e-4)
    assert losses["v"] > losses["eps"]
    with pytest.raises(ValueError, match="loss_weighting"):
        dataclasses.replace(TINY, loss_weighting="x0")


def test_checkpoint_keeps_the_model_config(pairs, tmp_path):
    from diffcmr_core.method.checkpoints import load_for_inference

    model = dataclasses.replace(
        MODEL, loss_weighting="v", prediction="v", attention_resolutions=(8,)
    )
    ckpt = train(
        "diffcmr",
        pairs,
        tmp_path,
        dataclasses.replace(CFG, iterations=2),
        model,
        device="cpu",
        progress=False,
    )
    system, _ = load_for_inference(ckpt)
    assert system.cfg == model  # tuples and all, without any repair
    system, _ = load_for_inference(
        train(
            "cgan",
            pairs,
            tmp_path / "gan",
            dataclasses.replace(CFG, iterations=1),
            CGANConfig(SMALL_UNET, l1_weight=7.0),
            device="cpu",
            progress=False,
        )
    )
    assert system.cfg == CGANConfig(SMALL_UNET, l1_weight=7.0) and system.l1_weight == 7.0


def test_one_model_for_several_factors_trains_on_their_pairs_concatenated(tiny_root, tmp_path):
    """``train`` with several pairs files (a profile's ``shared_models``) sees the training pairs
    of each, in order; its checkpoint records them, so it passes the identity check for every
    one of those factors and for no other."""
    import numpy as np

    from diffcmr_core.data.pairs import load_pairs
    from diffcmr_core.errors import CheckpointError
    from diffcmr_core.method.checkpoints import check_checkpoint
    from diffcmr_core.method.train import train_pairs

    pre = PreprocessConfig(pad_to=128, size=32)
    files = build_pairs(tiny_root, tmp_path / "pairs", "cine", pre, accs=(4, 8), progress=False)
    inp, tgt = train_pairs([files[4], files[8]])
    ref = [load_pairs(files[a], "train") for a in (4, 8)]
    np.testing.assert_array_equal(inp[:, 0].numpy(), np.concatenate([r[0] for r in ref]))
    np.testing.assert_array_equal(tgt[:, 0].numpy(), np.concatenate([r[1] for r in ref]))
    cfg = TrainConfig(iterations=2, batch_size=2, log_every=1, checkpoint_every=2)
    ckpt_path = train(
        "unet",
        [files[4], files[8]],
        tmp_path / "m",
        cfg,
        UNetConfig(channels=4, depth=2),
        progress=False,
    )
    ckpt = load_checkpoint(ckpt_path)
    assert [os.path.basename(p) for p in ckpt["pairs"]] == [
        "pairs_cine_acc04.h5",
        "pairs_cine_acc08.h5",
    ]
    for acc in (4, 8):
        check_checkpoint(ckpt_path, ckpt, method="unet", task="cine", acc=acc)
    with pytest.raises(CheckpointError, match="trained on cine 4x, cine 8x, not on cine 10x"):
        check_checkpoint(ckpt_path, ckpt, task="cine", acc=10)


def test_shared_models_profile_has_one_model_per_task_and_method():
    from diffcmr_core.study.settings.profiles import get_profile, paths_for
    from diffcmr_core.study.steps import model_list

    quick, gpu = get_profile("quick"), get_profile("gpu")
    assert quick.shared_models and not gpu.shared_models
    assert len(quick.methods) == 4  # U-Net, cGAN, DiffCMR and PI-CS
    assert len(model_list(quick)) == len(quick.tasks) * len(quick.methods) == 8
    assert len(model_list(gpu)) == len(gpu.tasks) * len(gpu.accs) * len(gpu.methods) == 24
    p = paths_for(quick)
    assert (
        p.model_dir("cine", 4, "diffcmr")
        == p.model_dir("cine", 10, "diffcmr")
        != p.model_dir("mapping", 4, "diffcmr")
    )
    assert paths_for(gpu).model_dir("cine", 4, "unet") != paths_for(gpu).model_dir(
        "cine", 8, "unet"
    )
