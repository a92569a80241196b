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


def test_fit_curves_read_in_units_of_the_largest_measured_magnitude():
    import numpy as np

    from diffcmr_core.study.writeup.plots import fit_curves

    times = np.array([100.0, 1000.0, 3000.0])
    signals = {"myocardium": np.array([1.5e-4, 0.5e-4, 2.0e-4])}
    model = {"myocardium": np.linspace(2.1e-4, 2.0e-4, 200)}
    ax = fit_curves(times, signals, model, "t", "TI [ms]").axes[0]
    points, line = ax.get_lines()
    np.testing.assert_allclose(points.get_ydata(), [0.75, 0.25, 1.0])
    np.testing.assert_allclose(line.get_ydata()[0], 1.05)
    assert "largest measured = 1" in ax.get_ylabel()


def test_field_of_view_cuts_the_read_out_oversampling():
    import numpy as np

    from diffcmr_core.data.kspace import fft2c, ifft2c
    from diffcmr_core.study.writeup.plots import field_of_view

    body = np.zeros((40, 96))
    body[10:30, 30:66] = 1.0  # inside the prescribed 48 central read-out columns
    shown = field_of_view(np.abs(ifft2c(fft2c(body))))
    assert shown.shape == (40, 48)
    np.testing.assert_allclose(shown, body[:, 24:72], atol=1e-9)
