"""Figures read as their titles say: axes a person can read, legends that hide no data."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from diffcmr_core.study.writeup.plots import psnr_vs_nfe  # noqa: E402


def test_fast_sampling_axis_names_the_evaluations_and_the_legend_sits_beside_the_points():
    rows = [
        {"sampler": "ddpm", "dc": "none", "nfe": n, "psnr": 23.0 + n / 400, "label": f"d{n}"}
        for n in (40, 80, 400)
    ] + [{"sampler": "dpm++", "dc": "coil", "nfe": 40, "psnr": 25.3, "label": "p"}]
    rows[-2]["reference"] = True
    fig = psnr_vs_nfe(rows, "t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["40", "80", "400"]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.x0 >= ax.get_window_extent(renderer).x1  # not over the data
    assert legend.x1 <= fig.bbox.x1 + 1  # and inside the figure
