"""How hard the quick profile's task is for each image region: RAW NMSE against the paper's and the
left ventricle's size in pixels, for candidate ``roi`` and image sizes. Writes docs/roi_sweep.md.

The RAW rows come from :func:`diffcmr_core.study.experiments.calibration.raw_table` (the
subjects the quick and ``cpu`` profiles evaluate, P006 and P012 of the same phantom, 3 cine
frames; the worst of the two per cell); the heart's size is ``tests/test_phantom.py``'s measure: the
most
end-diastolic blood-pool pixels (both ventricles) along one row or column of the image's central
half, in the geometry of the images (k-space rows padded to ``pad_to``, the region cropped,
resized by scikit-image), for the short-axis slice the test uses and 3 cases.

Usage: python benchmarks/sweep_roi.py
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import numpy as np
from skimage.transform import resize

from diffcmr_core.data.kspace import crop_roi
from diffcmr_core.data.phantom import anatomy
from diffcmr_core.data.phantom.simulation import _slice_maps, _views, body_extent, draw_case, matrix
from diffcmr_core.study.experiments.calibration import (
    TOLERANCE,
    calibration_config,
    evaluated_cases,
    raw_table,
)
from diffcmr_core.study.settings.profiles import get_profile
from diffcmr_core.tables import to_markdown

CANDIDATES = [
    (32, (0.5, 0.25)),
    (32, (0.75, 0.375)),
    (32, (0.75, 0.25)),
    (32, (1.0, 0.5)),
    (32, (1.0, 0.375)),
    (32, (1.0, 0.3125)),
    (32, None),
    (48, (1.0, 0.375)),
    (48, None),
]


def lv_pixels(cfg, pad_to: int, size: int, roi, cases: int = 3) -> list[int]:
    """The test's measure of the heart's size (pixels) in the network's images, per case."""
    out = []
    for case in range(cases):
        body = draw_case(cfg, case)
        rng = np.random.default_rng([cfg.seed, 0, 0, 0])
        views = _views(body, "cine_sax", cfg.sax_slices, rng)
        ny, nx = matrix(cfg, "cine_sax", max(body_extent(body, v)[0] for v in views), rng)
        maps, _ = _slice_maps(body, views[1], (ny, nx), cfg.pixel_mm, np.array([0.0]))
        blood = ((maps[0][3] == anatomy.LABEL["blood"]) & (maps[0][4] > 0.5)).astype(np.float32)
        rows = (
            np.interp(np.linspace(0, ny - 1, pad_to), np.arange(ny), np.arange(ny))
            .round()
            .astype(int)
        )
        grid = blood[rows][:, :pad_to] if nx >= pad_to else blood[rows]
        region = crop_roi(grid, roi) if roi else grid
        small = resize(region, (size, size), order=1, anti_aliasing=True)
        q = size // 4
        centre = small[q:-q, q:-q] > 0.5
        out.append(int(max(centre.sum(0).max(), centre.sum(1).max())))
    return out


def main() -> None:
    profile = get_profile("quick")
    cfg = calibration_config(profile.phantom, frames=3)
    pad_to = profile.preprocess.pad_to
    subjects = sorted({*evaluated_cases(profile), *evaluated_cases(get_profile("cpu"))})
    rows = []
    for size, roi in CANDIDATES:
        t0 = time.perf_counter()
        table = raw_table(cfg, subjects, pad_to=pad_to, size=size, roi=roi, progress=False)
        ratios: dict[str, float] = {}
        for r in table:  # per subject: the one farthest from the paper's, per cell
            if r["subject"] != "all":
                key, v = f"{r['task']} {r['acc']}x", float(r["nmse_ratio"])
                if key not in ratios or abs(np.log(v)) > abs(np.log(ratios[key])):
                    ratios[key] = v
        lv = lv_pixels(profile.phantom, pad_to, size, roi)
        rows.append(
            {
                "size": size,
                "roi (phase, read-out)": "whole" if roi is None else f"{roi[0]:g}, {roi[1]:g}",
                **{k: f"{v:.2f}" for k, v in ratios.items()},
                "worst": f"{max(ratios.values()):.2f}",
                "all within x1.5": all(
                    1 / TOLERANCE["nmse"] <= v <= TOLERANCE["nmse"] for v in ratios.values()
                ),
                "blood pixels, widest row or column (3 cases)": " / ".join(map(str, lv)),
                ">= 8": min(lv) >= 8,
                "quick": (size, roi) == (profile.preprocess.size, profile.preprocess.roi),
            }
        )
        print(f"{size} {roi}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    text = "\n".join(
        [
            "# Which image region makes the quick task as hard as the real one",
            "",
            "Written by `" + "python " + " ".join(shlex.quote(a) for a in sys.argv) + "` "
            f"({time.strftime('%Y-%m-%d')}); regenerate it, never edit it. RAW NMSE of the quick "
            "phantom (the subjects the quick and `cpu` profiles evaluate, "
            f"{', '.join(f'P{i + 1:03d}' for i in subjects)}; 3 cine frames, both coil types; "
            "per cell the subject farthest from the paper) at each candidate region and image "
            "size, divided by the paper's RAW NMSE (the paper: whole 128 x 128 images), and the "
            "heart's "
            "size as `tests/test_phantom.py` measures it: the most end-diastolic blood-pool pixels "
            "(both ventricles) along one row or column of the image's central half (mid short-axis "
            "slice). The quick profile needs every ratio within x1.5 and at least 8 pixels; "
            "among the "
            "regions that meet both it takes the one with the largest heart and the ratios closest "
            "to 1.",
            "",
            to_markdown(rows),
            "",
        ]
    )
    out = Path(__file__).resolve().parents[1] / "docs" / "roi_sweep.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
