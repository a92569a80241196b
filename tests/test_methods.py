"""The method registry: a method registered in one place reaches the CLI, the evaluation, the
submission and the cost model; the PI-CS baseline's choice is checked before use."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import scipy.io
from skimage.metrics import peak_signal_noise_ratio

from diffcmr_core.study import methods


class _Flip(methods.Method):
    """A trivial method: the input mirrored left-right (measurably worse than RAW)."""

    name, label = "flip", "Flipped"
    calls = 0

    def reconstructor(self, profile, task, acc, *, device=None, progress=False):
        def run(batch):
            _Flip.calls += 1
            return {"mean": np.ascontiguousarray(batch.inputs[:, :, ::-1])}

        return run

    def image_flops(self, profile, units):
        return 1e9


class _Copy(methods.Method):
    """The input unchanged, under another name."""

    name, label = "copy", "Copy"

    def reconstructor(self, profile, task, acc, *, device=None, progress=False):
        return lambda batch: {"mean": batch.inputs.copy()}


@pytest.fixture
def registered():
    for m in (_Flip(), _Copy()):
        methods.register(m)
    yield
    for name in ("flip", "copy"):
        methods.unregister(name)


def test_the_cli_choices_come_from_the_registry(registered):
    from diffcmr_core.cli import parser

    args = parser().parse_args(["submit", "--method", "flip"])
    assert args.method == "flip"
    with pytest.raises(SystemExit):
        parser().parse_args(["submit", "--method", "nonesuch"])
    train = next(
        a
        for a in parser()._subparsers._group_actions[0].choices["train"]._actions
        if a.dest == "method"
    )
    assert tuple(train.choices) == methods.names(network=True) == ("unet", "cgan", "diffcmr")


def test_registering_twice_or_unknown_names_are_errors(registered):
    with pytest.raises(ValueError, match="already registered"):
        methods.register(_Flip())
    with pytest.raises(ValueError, match="unknown method"):
        methods.get("nonesuch")


def test_the_cost_model_counts_a_registered_method(registered):
    from diffcmr_core.study.experiments.cost import study_cost, validation_images
    from diffcmr_core.study.settings.profiles import get_profile

    base = dataclasses.replace(get_profile("smoke"), methods=("copy",))
    with_flip = dataclasses.replace(base, methods=("copy", "flip"))
    ev = base.evaluation
    images = len(base.tasks) * len(base.accs) * ev.n_val + len(base.accs) * sum(
        validation_images(base)["challenge"].values()
    )
    diff = study_cost(with_flip)["04_evaluation"] - study_cost(base)["04_evaluation"]
    assert diff == pytest.approx(images * 1e9)


@pytest.mark.slow
def test_a_registered_method_runs_through_evaluation_and_submission(
    registered, smoke_home, tmp_path
):
    from diffcmr_core.study.settings.profiles import get_profile
    from diffcmr_core.study.steps import evaluate_factor, val_pairs
    from diffcmr_core.study.steps.submit import submit

    profile = dataclasses.replace(
        get_profile("smoke"), name="smoke-registry", data_name="smoke", methods=("flip", "copy")
    )
    _Flip.calls = 0
    res = evaluate_factor(profile, "cine", 4, progress=False)
    assert _Flip.calls == 1 and set(res) == {"RAW", "Flipped", "Copy"}
    inp, tgt, _ = val_pairs(profile, "cine", 4, profile.evaluation.n_val)

    def mean_psnr(recs):
        vals = []
        for g, r in zip(tgt, recs):
            g, r = g / g.max(), r / r.max()
            vals.append(peak_signal_noise_ratio(g, r, data_range=g.max()))
        return np.mean(vals)

    assert res["Flipped"]["psnr"] == pytest.approx(mean_psnr(inp[:, :, ::-1]), abs=1e-6)
    assert res["Copy"]["psnr"] == pytest.approx(res["RAW"]["psnr"], abs=1e-9)
    assert res["Flipped"]["psnr"] < res["RAW"]["psnr"]

    copy = submit(profile, out=tmp_path / "copy", method="copy", progress=False)
    raw = submit(profile, out=tmp_path / "raw", method="raw", progress=False)
    assert copy.written and len(copy.written) == len(raw.written) and not copy.skipped
    for a, b in zip(sorted(copy.written), sorted(raw.written)):
        assert a.relative_to(tmp_path / "copy") == b.relative_to(tmp_path / "raw")
        np.testing.assert_array_equal(
            scipy.io.loadmat(a)["img4ranking"], scipy.io.loadmat(b)["img4ranking"]
        )


@pytest.mark.slow
def test_pics_choice_is_checked_and_names_its_file(smoke_home):
    from diffcmr_core.errors import CheckpointError
    from diffcmr_core.method.classical import CSConfig
    from diffcmr_core.study.methods.pics import choice_table, load_choice
    from diffcmr_core.study.settings.profiles import get_profile

    profile = get_profile("smoke")
    path = methods.get("cs").artefact(profile, "cine", 4)
    record = json.loads(path.read_text())
    assert set(record["choice"]) == set(profile.preprocess.coils)
    cfg = methods.settings(profile, "cs")
    for coil, pick in record["choice"].items():
        assert pick["weight"] in cfg.weights and pick["iterations"] in cfg.iteration_grid
        scores = {}
        for r in record["grid"]:
            if r["coil"] == coil:
                scores.setdefault((r["weight"], r["iterations"]), []).append(r["psnr"])
        best = max(scores, key=lambda k: np.mean(scores[k]))
        assert (pick["weight"], pick["iterations"]) == best  # the best training PSNR
        assert len(scores) == len(cfg.weights) * len(cfg.iteration_grid)
    # chosen on training slices only: every scored slice is of the training split
    from diffcmr_core.data.pairs import load_pairs, pairs_path
    from diffcmr_core.study.settings.profiles import paths_for

    _, _, meta = load_pairs(pairs_path(paths_for(profile).pairs, "cine", 4), "train")
    assert {r["slice"] for r in record["grid"] if r["acc"] == 4} <= set(range(len(meta["coil"])))
    assert len(choice_table(profile)) == len(profile.tasks) * len(profile.preprocess.coils)
    with pytest.raises(CheckpointError, match="other PI-CS settings"):
        load_choice(path, CSConfig(weights=(0.5,)), "cine", 4, profile)
    with pytest.raises(CheckpointError, match="not mapping"):
        load_choice(path, cfg, "mapping", 4, profile)
    with pytest.raises(CheckpointError, match="no PI-CS parameters"):
        load_choice(path.with_name("missing.json"), cfg, "cine", 4, profile)
