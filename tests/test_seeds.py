import dataclasses

import numpy as np

from diffcmr_core.study.experiments.seeds import orderings, seed_profile, seed_table
from diffcmr_core.study.settings.profiles import get_profile, paths_for


def test_seed_variant_changes_only_seeds_and_shares_the_data():
    base = get_profile("quick")
    v = seed_profile(base, 2)
    assert v.name == "quick-seed2" and seed_profile(base, 0) is base
    nets = ("diffcmr", "unet", "cgan")
    assert [v.network(m).train.seed for m in nets] == [2, 2, 2] and v.evaluation.seed == 2
    assert v.settings["cs"] == base.settings["cs"]  # PI-CS has no training seed
    same = dataclasses.replace(
        v, name=base.name, data_name=None, settings=base.settings, evaluation=base.evaluation
    )
    assert same == base
    assert paths_for(v).pairs == paths_for(base).pairs and paths_for(v).data == paths_for(base).data
    assert paths_for(v).runs != paths_for(base).runs
    assert seed_profile(base, 0, threads=1).name == "quick-t1"


def test_table_and_orderings_against_numpy():
    rng = np.random.default_rng(0)
    psnr = {
        "RAW": [17.0, 17.0, 17.0],
        "U-Net": list(rng.normal(20, 0.1, 3)),
        "DiffCMR": list(rng.normal(20.1, 0.5, 3)),
    }
    results = {
        s: {("cine", 4): {m: {"psnr": v[i], "ssim": 0.5, "nmse": 0.2} for m, v in psnr.items()}}
        for i, s in enumerate((0, 1, 2))
    }
    rows = seed_table(results)
    for r in rows:
        assert np.isclose(r["psnr"], np.mean(psnr[r["method"]]))
        assert np.isclose(r["psnr_sd"], np.std(psnr[r["method"]], ddof=1))
    order = {(o["better"], o["worse"]): o for o in orderings(rows)}
    assert order[("U-Net", "RAW")]["holds"] and order[("DiffCMR", "RAW")]["holds"]
    pair = order.get(("DiffCMR", "U-Net")) or order[("U-Net", "DiffCMR")]
    assert pair["holds"] == (
        pair["d_psnr"] > 2 * max(np.std(psnr["U-Net"], ddof=1), np.std(psnr["DiffCMR"], ddof=1))
    )
    one = seed_table({0: results[0]})
    assert not any(o["holds"] for o in orderings(one))  # one seed establishes nothing
