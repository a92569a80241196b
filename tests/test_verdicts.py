"""The evidence study's subject-level statistics: the hierarchical bootstrap against its exact
variance, the pairing of the per-image table, the verdict rule, and the ensemble law's
arithmetic; and the committed study's interval recomputed from its per-image CSV."""

import itertools
from pathlib import Path

import numpy as np
import pytest

from diffcmr_core.study.experiments import verdicts
from diffcmr_core.tables import read_csv

FIGURES = Path(__file__).resolve().parents[1] / "figures" / "cpu"


def _diffs(d: np.ndarray) -> dict:
    """``d[seed, subject, image]`` as :func:`verdicts.paired_differences` gives them."""
    return {
        f"P{i:03d}": {
            s: {("c", "f", str(j), "0"): d[s, i, j] for j in range(d.shape[2])}
            for s in range(d.shape[0])
        }
        for i in range(d.shape[1])
    }


def exact_sd(d: np.ndarray) -> float:
    """The standard deviation of the hierarchical bootstrap's replicate, exactly: over the
    S^S equally likely draws of the seeds, the two-stage (subjects, then images) variance of
    the seed-averaged differences, plus the variance over the draws of its mean."""
    n_seeds, n_subj, n_img = d.shape
    means, variances = [], []
    for draw in itertools.product(range(n_seeds), repeat=n_seeds):
        e = d[list(draw)].mean(0)  # [subjects, images]
        subject = e.mean(1)
        within = e.var(1) / n_img  # population variance over the images, over J
        variances.append((subject.var() + within.mean()) / n_subj)
        means.append(subject.mean())
    return float(np.sqrt(np.mean(variances) + np.var(means)))


def test_the_hierarchical_bootstrap_has_its_exact_variance():
    """Subject effects (sd 1 dB), seed effects (0.3 dB) and image noise (2 dB): the interval's
    half-width over 1.96 is the exact standard deviation within 6 %; the estimate is the mean."""
    rng = np.random.default_rng(1)
    d = (
        0.5
        + rng.normal(0, 1.0, (1, 10, 1))
        + rng.normal(0, 0.3, (3, 1, 1))
        + rng.normal(0, 2.0, (3, 10, 48))
    )
    res = verdicts.hierarchical_interval(_diffs(d), replicates=6000)
    assert res["estimate"] == pytest.approx(d.mean(), abs=1e-12)
    half = (res["ci_high"] - res["ci_low"]) / (2 * 1.96)
    assert half == pytest.approx(exact_sd(d), rel=0.06)
    assert res["subjects"] == 10 and res["images"] == 480 and res["seeds"] == 3


def test_slices_of_one_subject_do_not_count_as_independent():
    """Ten subjects whose images agree within each subject but whose means differ: the
    subject-level interval is as wide as ten observations allow, several times the interval a
    t test over the 480 images as independent gives."""
    rng = np.random.default_rng(2)
    d = np.repeat(rng.normal(0.3, 1.0, (1, 10, 1)), 3, 0) + rng.normal(0, 0.05, (3, 10, 48))
    res = verdicts.hierarchical_interval(_diffs(d))
    naive = 1.96 * d.mean(0).std(ddof=1) / np.sqrt(480)
    assert (res["ci_high"] - res["ci_low"]) / 2 > 4 * naive


def test_paired_differences_pair_the_same_image_and_seed():
    rows = []
    for method, setting, base in (("A", "x", 30.0), ("B", "", 29.0)):
        for subject, seed, sl in itertools.product(("P1", "P2"), (0, 1), range(3)):
            psnr = base + seed + 0.1 * sl + (subject == "P2")
            rows.append(
                {
                    "subject": subject,
                    "split": "test",
                    "coil": "MultiCoil",
                    "file": "cine_sax",
                    "slice": sl,
                    "frame": 0,
                    "method": method,
                    "setting": setting,
                    "seed": seed,
                    "psnr": psnr,
                }
            )
    rows.append({**rows[0], "split": "selection", "psnr": 99.0})  # never in a test pairing
    d = verdicts.paired_differences(rows, ("A", "x"), ("B", ""))
    assert sorted(d) == ["P1", "P2"] and sorted(d["P1"]) == [0, 1]
    assert all(
        v == pytest.approx(1.0) for per in d.values() for s in per.values() for v in s.values()
    )


def test_a_verdict_needs_the_interval_and_says_the_sign():
    rng = np.random.default_rng(3)
    rows = []
    for subject, seed, sl in itertools.product(range(8), (0, 1, 2), range(6)):
        for method, shift in (("DiffCMR", 0.0), ("U-Net", 1.0), ("cGAN", 0.0)):
            rows.append(
                {
                    "subject": f"P{subject}",
                    "split": "test",
                    "coil": "c",
                    "file": "f",
                    "slice": sl,
                    "frame": 0,
                    "method": method,
                    "seed": seed,
                    "setting": "s" if method == "DiffCMR" else "",
                    "psnr": 30 + shift + rng.normal(0, 0.3),
                }
            )
    claims = [
        {"claim": "above U-Net", "a": ("DiffCMR", "s"), "b": ("U-Net", ""), "paper": 1},
        {"claim": "above cGAN", "a": ("DiffCMR", "s"), "b": ("cGAN", ""), "paper": 1},
    ]
    out = verdicts.verdict_rows(rows, claims)
    assert [r["verdict"] for r in out] == ["reversed", "not established"]
    assert out[0]["d_psnr"] == pytest.approx(-1.0, abs=0.1)


def test_rounds_list():
    assert verdicts.rounds_list(16) == [1, 2, 4, 8, 16]
    assert verdicts.rounds_list(6) == [1, 2, 4, 6]
    assert verdicts.rounds_list(1) == [1]


@pytest.mark.skipif(not (FIGURES / "evidence_per_image.csv").is_file(), reason="no cpu study yet")
def test_the_committed_ordering_interval_recomputed_from_the_per_image_csv():
    """The committed U-Net - DiffCMR verdict: its estimate is the mean of the per-image
    differences (seeds, subjects, images, by pandas-free numpy), its interval's half-width
    the exact bootstrap standard deviation times 1.96 (within 10 %)."""
    rows = read_csv(FIGURES / "evidence_per_image.csv")
    verdict = next(
        r
        for r in read_csv(FIGURES / "evidence_verdicts.csv")
        if r["claim"] == "DiffCMR above U-Net"
    )
    a_setting = verdict["a"].split(" ", 1)[1]
    cells: dict = {}
    for r in rows:
        if r["split"] == "test" and (r["method"], r["setting"]) in (
            ("DiffCMR", a_setting),
            ("U-Net", ""),
        ):
            key = (r["subject"], int(r["seed"]), r["coil"], r["file"], r["slice"], r["frame"])
            cells.setdefault(key, {})[r["method"]] = float(r["psnr"])
    subjects = sorted({k[0] for k in cells})
    seeds = sorted({k[1] for k in cells})
    images = sorted({k[2:] for k in cells})
    d = np.array(
        [
            [
                [
                    cells[(p, s, *im)]["DiffCMR"] - cells[(p, s, *im)]["U-Net"]
                    for im in images
                    if (p, s, *im) in cells
                ]
                for p in subjects
            ]
            for s in seeds
        ]
    )
    assert float(verdict["d_psnr"]) == pytest.approx(d.mean(), abs=1e-9)
    half = (float(verdict["ci_high"]) - float(verdict["ci_low"])) / 2
    assert half == pytest.approx(1.96 * exact_sd(d), rel=0.10)
