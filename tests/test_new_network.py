"""A new trained network is one module and one registry entry: this module defines a network
of three convolutions, its system and its method, registers the method, and runs it through
training to convergence (the evidence profiles' rule), the evaluation, the seeds, the compute
curve, the cost model and the submission, with no other file of the package changed."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import scipy.io
import torch
from skimage.metrics import peak_signal_noise_ratio
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from diffcmr_core.method.settings import NetworkSettings
from diffcmr_core.method.systems import SYSTEMS, RegressionSystem
from diffcmr_core.study import methods


# ----------------------------------------------------------------------------- the new network
@dataclasses.dataclass(frozen=True)
class ThreeConvConfig:
    """Three 3 x 3 convolutions of ``channels`` features, added to the input."""

    channels: int = 8


class ThreeConv(nn.Module):
    """x + conv(relu(conv(relu(conv(x))))): a residual correction of the zero-filled image."""

    def __init__(self, cfg: ThreeConvConfig) -> None:
        super().__init__()
        c = cfg.channels
        self.body = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c, 1, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ThreeConvSystem(RegressionSystem):
    """Trained as the U-Net is (L1 loss, AdamW), with the network above."""

    method = "threeconv"
    config_class = ThreeConvConfig

    def build_model(self, cfg: ThreeConvConfig) -> nn.Module:
        return ThreeConv(cfg)


class ThreeConvMethod(methods.Regression):
    """The registry's entry: its name, its label and the system that trains it."""

    name, label, system = "threeconv", "ThreeConv", ThreeConvSystem


# ----------------------------------------------------------------------------- the test
@pytest.fixture
def registered():
    methods.register(ThreeConvMethod())
    yield
    methods.unregister("threeconv")
    assert "threeconv" not in SYSTEMS


def _profile():
    """The smoke profile running the new network alone, with its settings (the smoke
    networks' training: 8 steps, snapshots every 4, a constant rate), on the smoke data."""
    from diffcmr_core.study.settings.profiles import get_profile

    smoke = get_profile("smoke")
    settings = NetworkSettings(ThreeConvConfig(), smoke.network("unet").train)
    return dataclasses.replace(
        smoke,
        name="smoke-threeconv",
        data_name="smoke",
        methods=("threeconv",),
        settings={**smoke.settings, "threeconv": settings},
    )


def _paper_psnr(tgt: np.ndarray, rec: np.ndarray) -> float:
    """The paper's PSNR (each image over its maximum), by scikit-image, averaged."""
    return float(
        np.mean(
            [
                peak_signal_noise_ratio(g / g.max(), r / r.max(), data_range=1.0)
                for g, r in zip(tgt, rec)
            ]
        )
    )


@pytest.mark.slow
def test_a_new_network_runs_through_the_whole_study(registered, smoke_home, tmp_path):
    from diffcmr_core.method.checkpoints import load_checkpoint
    from diffcmr_core.study.experiments.cost import study_cost, unit_costs
    from diffcmr_core.study.experiments.evidence import compute_curve
    from diffcmr_core.study.experiments.seeds import seed_results, seed_table
    from diffcmr_core.study.settings.profiles import paths_for
    from diffcmr_core.study.steps import evaluate_factor, val_pairs
    from diffcmr_core.study.steps.submit import submit

    profile = _profile()
    assert methods.names(network=True)[-1] == "threeconv"

    # training to convergence, chunk by chunk, in the evidence profiles' way
    ckpt = methods.get("threeconv").fit(profile, "cine", 4, progress=False)
    record = json.loads((ckpt.parent / "validation.json").read_text())
    steps = [r["step"] for r in record["rows"]]
    assert steps == [4, 8] and record["stopped"]["step"] == 8  # at least two, at the cap
    assert load_checkpoint(ckpt)["method"] == "threeconv"

    # the evaluation: its scores are those of its checkpoint's network on the validation slices
    res = evaluate_factor(profile, "cine", 4, progress=False)
    assert set(res) == {"RAW", "ThreeConv"}
    inp, tgt, _ = val_pairs(profile, "cine", 4, profile.evaluation.n_val)
    net = ThreeConv(ThreeConvConfig())
    net.load_state_dict(torch.load(ckpt, weights_only=True)["ema"])
    with torch.no_grad():
        out = net(torch.from_numpy(np.ascontiguousarray(inp, np.float32))[:, None])[:, 0]
    expected = _paper_psnr(tgt, out.clamp_min(0).numpy())
    assert res["ThreeConv"]["psnr"] == pytest.approx(expected, abs=1e-4)

    # the seeds: seed 1 is trained and evaluated in its own run folder, on the same data
    results = seed_results(profile, (0, 1), factors=(("cine", 4),), progress=False)
    table = {r["method"]: r for r in seed_table(results)}
    assert table["ThreeConv"]["seeds"] == 2 and table["ThreeConv"]["psnr_sd"] > 0
    assert results[0][("cine", 4)]["ThreeConv"] == res["ThreeConv"]

    # the cost model: one training sample counted on the meta device equals a count on real
    # tensors; the training notebook's FLOPs are its iterations x batch of those
    units = unit_costs(profile)["threeconv"]
    x = torch.randn(1, 1, profile.preprocess.size, profile.preprocess.size)
    with FlopCounterMode(display=False) as counter:
        nn.functional.l1_loss(net(x), x).backward()
    assert units["train"] == counter.get_total_flops() > 0
    train = profile.network("threeconv").train
    models = len(profile.tasks)  # shared_models: one per task
    assert study_cost(profile)["03_training"] == models * units["train"] * (
        train.iterations * train.batch_size
    )

    # the compute curve: every snapshot of both seeds at its training FLOPs
    rows = [r for r in compute_curve(profile, "cine", 4, ("ddim", 2, 2), (0, 1)) if r["seed"] == 0]
    mine = [r for r in rows if r["method"] == "ThreeConv"]
    assert [r["train_flops"] for r in mine] == [
        units["train"] * train.batch_size * s for s in (4, 8)
    ]
    assert [r["psnr"] for r in mine] == [r["psnr"] for r in record["rows"]]

    # the submission: one file per under-sampled file, each its network's reconstruction
    methods.get("threeconv").fit(profile, "mapping", 4, progress=False)
    sub = submit(profile, out=tmp_path / "sub", method="threeconv", progress=False)
    raw = submit(profile, out=tmp_path / "raw", method="raw", progress=False)
    assert sub.written and not sub.skipped
    pairs = list(zip(sorted(sub.written), sorted(raw.written), strict=True))
    for a, b in pairs:
        assert a.relative_to(tmp_path / "sub") == b.relative_to(tmp_path / "raw")
        mine, zero_filled = (scipy.io.loadmat(p)["img4ranking"] for p in (a, b))
        assert mine.shape == zero_filled.shape and np.isfinite(mine).all()
        assert not np.array_equal(mine, zero_filled)  # the network changed every file
    assert paths_for(profile).runs.name == "smoke-threeconv"
