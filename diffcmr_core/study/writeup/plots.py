"""Figures: one function per figure, fixed size and DPI, saved as PNG (and PDF where asked)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from diffcmr_core.fileio import atomic_path
from diffcmr_core.method.samplers import SAMPLER_LABEL

DPI = 120


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, papermill, nbval), False in a script."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def save(fig: plt.Figure, path: str | Path, pdf: bool = False) -> Path:
    """Save ``fig`` atomically as PNG (and PDF beside it), show it inline when running in a
    notebook (so executed notebooks carry their figures), and close it."""
    path = Path(path).with_suffix(".png")
    for p in [path] + ([path.with_suffix(".pdf")] if pdf else []):
        # no creation date in the PDF: the same figure gives the same bytes (no churn in git)
        meta = {"CreationDate": None} if p.suffix == ".pdf" else None
        with atomic_path(p) as tmp:
            fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format=p.suffix[1:], metadata=meta)
    if _in_notebook():
        from IPython.display import display

        display(fig)
    plt.close(fig)
    return path


def _show(ax, img, title=None, cmap="gray", vmin=None, vmax=None):
    ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def image_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    *,
    ncols: int | None = None,
    cmap: str = "gray",
    suptitle: str | None = None,
    size: float = 2.2,
) -> plt.Figure:
    """Images side by side, each scaled to its own range."""
    ncols = ncols or len(images)
    nrows = int(np.ceil(len(images) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat[len(images) :]:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles):
        _show(ax, img, title, cmap)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def field_of_view(images: np.ndarray) -> np.ndarray:
    """Images on the acquired grid cut to the prescribed field of view: the central half of the
    twice oversampled read-out (last axis), as a scanner shows them; the grid's pixels are
    square, so drawn as they are the anatomy keeps its proportions."""
    nx = images.shape[-1]
    return images[..., nx // 4 : nx // 4 + nx // 2]


def mark_window(ax, window: Sequence[int], colour: str = "#ffcc00") -> None:
    """Outline ``window = (y0, y1, x0, x1)`` (pixels, ends exclusive) on an image axis."""
    from matplotlib.patches import Rectangle

    y0, y1, x0, x1 = window
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec=colour, lw=1.2))


def zoomed_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str],
    windows: Sequence[Sequence[int]],
    *,
    full_title: str = "full field",
    ncols: int | None = None,
    size: float = 2.2,
) -> plt.Figure:
    """A small full-field view of the first image with its window marked, then every image
    cropped to its own window (``windows``, one per image, ``(y0, y1, x0, x1)``), each scaled
    to its own range: the heart, where the window comes from
    :func:`~diffcmr_core.study.steps.heart.zoom_window`."""
    shown = [images[0], *(im[y0:y1, x0:x1] for im, (y0, y1, x0, x1) in zip(images, windows))]
    fig = image_grid(shown, [full_title, *titles], ncols=ncols, size=size)
    mark_window(fig.axes[0], windows[0])
    return fig


def kspace_log(kspace: np.ndarray) -> np.ndarray:
    """log(1 + |k| / max|k|) for display."""
    mag = np.abs(kspace)
    return np.log1p(mag / mag.max() * 1e3)


def loss_curves(
    histories: dict[str, Sequence[dict[str, str]]],
    ncols: int,
    ylabels: dict[str, str] | None = None,
) -> plt.Figure:
    """Training loss against iteration (log scale), one panel per run, ``ncols`` per row;
    ``ylabels``: each run's loss in words (what is optimised)."""
    nrows = int(np.ceil(len(histories) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 2.4 * nrows), squeeze=False)
    for ax in axes.flat[len(histories) :]:
        ax.axis("off")
    for ax, (title, rows) in zip(axes.flat, histories.items()):
        ax.plot([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows], lw=1)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.set_ylabel((ylabels or {}).get(title, "training loss"), fontsize=8)
    fig.tight_layout()
    return fig


def fig1_diffusion(
    forward: Sequence[tuple[int, np.ndarray]], backward: Sequence[tuple[int, np.ndarray]]
) -> plt.Figure:
    """Figure 1: the forward process x_0 -> x_T (top) and the backward chain (bottom)."""
    n = max(len(forward), len(backward))
    fig, axes = plt.subplots(2, n, figsize=(2.0 * n, 4.4), squeeze=False)
    for row, (label, seq) in enumerate(
        (("forward q(x_t | x_0)", forward), ("backward p(x_{t-1} | x_t, I^u)", backward))
    ):
        for ax in axes[row]:
            ax.axis("off")
        for ax, (t, img) in zip(axes[row], seq):
            _show(ax, img, f"t = {t}")
        axes[row, 0].text(
            -0.15,
            0.5,
            label,
            transform=axes[row, 0].transAxes,
            rotation=90,
            va="center",
            ha="right",
            fontsize=9,
        )
    fig.tight_layout()
    return fig


OUTPUT_LABEL = {
    "eps": ("eps_theta", "noise"),
    "x0": ("x0_theta", "image"),
    "v": ("v_theta", "velocity"),
}


def fig2_pipeline(counts: dict[str, int], config_text: str, prediction: str = "eps") -> plt.Figure:
    """Figure 2: E(F(x_t) + G(I^u), H(t)) drawn from the modules, with parameter counts; the
    output is labelled with what the profile's network predicts (Eq. 3: eps; ``v`` or ``x0``
    where a profile departs)."""
    fig, ax = plt.subplots(figsize=(9, 4.2))
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 5)
    ax.axis("off")

    def box(x, y, w, h, text, color):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=color, ec="k"))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=9)

    def arrow(a, b):
        ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=12, lw=1.2))

    def count(key):
        return f"{counts[key] / 1e6:.2f} M" if counts[key] >= 1e5 else f"{counts[key] / 1e3:.1f} k"

    box(0.1, 3.6, 1.4, 0.8, "x_t\n(noisy image)", "#eeeeee")
    box(0.1, 1.9, 1.4, 0.8, "I^u\n(under-sampled)", "#eeeeee")
    box(0.1, 0.3, 1.4, 0.8, "t\n(time-step)", "#eeeeee")
    box(2.2, 3.6, 2.0, 0.8, f"F: conv stem\n{count('F (stem)')}", "#cfe2f3")
    box(2.2, 1.9, 2.0, 0.8, f"G: RRDB encoder\n{count('G (RRDB encoder)')}", "#d9ead3")
    box(2.2, 0.3, 2.0, 0.8, f"H: time embedding\n{count('H (time embedding)')}", "#fff2cc")
    ax.add_patch(plt.Circle((5.0, 3.0), 0.25, fc="white", ec="k"))
    ax.text(5.0, 3.0, "+", ha="center", va="center", fontsize=14)
    box(
        5.8,
        1.9,
        2.2,
        2.2,
        f"E: U-Net\n(res. blocks +\nself-attention)\n{count('E (U-Net)')}",
        "#f4cccc",
    )
    name, what = OUTPUT_LABEL[prediction]
    box(8.6, 2.6, 1.3, 0.8, f"{name}\n({what})", "#eeeeee")
    arrow((1.5, 4.0), (2.2, 4.0))
    arrow((1.5, 2.3), (2.2, 2.3))
    arrow((1.5, 0.7), (2.2, 0.7))
    arrow((4.2, 4.0), (4.8, 3.15))
    arrow((4.2, 2.3), (4.8, 2.85))
    arrow((5.25, 3.0), (5.8, 3.0))
    arrow((4.2, 0.7), (6.9, 1.9))
    arrow((8.0, 3.0), (8.6, 3.0))
    ax.text(
        5.0,
        0.1,
        f"total {counts['total'] / 1e6:.2f} M parameters;  {config_text}",
        ha="center",
        fontsize=8,
    )
    title = f"DiffCMR: {name}(x_t, I^u, t) = E(F(x_t) + G(I^u), H(t))   (Eq. 3"
    ax.set_title(
        title + (")" if prediction == "eps" else f", predicting {prediction} instead of eps)"),
        fontsize=10,
    )
    return fig


def fig3_qualitative(
    rows: Sequence[dict[str, np.ndarray]],
    labels: Sequence[str],
    row_titles: Sequence[str],
    boxes: Sequence[np.ndarray] | None = None,
) -> plt.Figure:
    """Figure 3: per row, a small full-field view of the ground truth with the heart's window
    marked, then the images named by ``labels`` (last = ground truth) zoomed to that window,
    each titled with its whole-image PSNR / SSIM (the tables' metrics), and below each its
    absolute error to the ground truth on one shared scale, in units of the ground truth's
    maximum. The zoomed images share one grey scale per row, from 0 to the ground truth's
    maximum inside the window (the heart's own range: on the whole image's scale a bright
    chest wall outside the window would leave it dim). ``boxes``: the heart's box per row
    (``heart.heart_boxes``; ``-1`` or ``None``: the whole image)."""
    from diffcmr_core.method.metrics import all_metrics
    from diffcmr_core.study.steps.heart import zoom_window

    n = len(labels)
    fig, axes = plt.subplots(
        2 * len(rows), n + 1, figsize=(1.9 * (n + 1), 4.1 * len(rows)), squeeze=False
    )
    for r, (images, row_title) in enumerate(zip(rows, row_titles)):
        gt = images[labels[-1]] / images[labels[-1]].max()  # the challenge's max-normalisation
        size = gt.shape[-1]
        box = np.full(4, -1) if boxes is None else np.asarray(boxes[r])
        y0, y1, x0, x1 = zoom_window(box, size)
        norm = {k: images[k] / images[k].max() for k in labels}
        emax = max(np.abs(norm[k] - gt)[y0:y1, x0:x1].max() for k in labels[:-1]) or 1.0
        top = float(gt[y0:y1, x0:x1].max()) or 1.0  # the zoomed panels' grey scale
        full = axes[2 * r, 0]
        _show(full, gt, "full field" if r == 0 else None, vmin=0, vmax=1)
        mark_window(full, (y0, y1, x0, x1))
        full.set_ylabel(row_title, fontsize=9)
        full.yaxis.label.set_visible(True)
        axes[2 * r + 1, 0].axis("off")
        for c, key in enumerate(labels, start=1):
            img = norm[key]
            title = key if r == 0 else ""
            if c < n:
                m = all_metrics(images[labels[-1]], images[key])
                title += f"\n{m['psnr']:.2f} dB / {m['ssim']:.3f}"
            _show(axes[2 * r, c], img[y0:y1, x0:x1], title.strip("\n"), vmin=0, vmax=top)
            axes[2 * r, c].title.set_fontsize(8)
            if c < n:
                err = np.abs(img - gt)[y0:y1, x0:x1]
                _show(axes[2 * r + 1, c], err, None, cmap="inferno", vmin=0, vmax=emax)
        axes[2 * r + 1, 1].set_ylabel("|error|", fontsize=9)
        axes[2 * r + 1, 1].yaxis.label.set_visible(True)
        # the ground truth's error cell holds the error maps' colour bar
        cell = axes[2 * r + 1, n]
        cell.axis("off")
        bar = fig.colorbar(axes[2 * r + 1, 1].images[0], ax=cell, fraction=0.5, aspect=12)
        bar.set_label("|error| (ground truth max = 1)", fontsize=8)
    fig.tight_layout()
    return fig


def ablation_plot(
    steps_rows: Sequence[dict],
    rounds_rows: Sequence[dict],
    paper_steps: dict[int, float],
    paper_rounds: dict[int, float],
) -> plt.Figure:
    """PSNR against T (R fixed) and against R (T fixed), ours beside the paper's; rows with
    ``psnr_sd`` and ``seeds`` (Table 4 over seeds) draw the mean with its sd as bars."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    panels = (
        (axes[0], steps_rows, "steps", paper_steps, "inference steps T"),
        (axes[1], rounds_rows, "rounds", paper_rounds, "ensembling rounds R"),
    )
    for ax, rows, key, paper, xlabel in panels:
        pts = [(int(r[key]), float(r["psnr"])) for r in rows if str(r[key]) != "Raw"]
        raw = next(float(r["psnr"]) for r in rows if str(r[key]) == "Raw")
        if rows and "psnr_sd" in rows[0]:
            sd = [float(r["psnr_sd"]) for r in rows if str(r[key]) != "Raw"]
            n = rows[0]["seeds"]
            ax.errorbar(*zip(*pts), yerr=sd, fmt="o-", capsize=3, label=f"ours ({n} seeds, sd)")
        else:
            ax.plot(*zip(*pts), "o-", label="ours")
        ax.axhline(raw, color="gray", ls="--", label="ours: RAW input")
        ax.plot(list(paper), list(paper.values()), "s:", color="C3", label="paper")
        ax.set_xscale("log")
        ticks = sorted({x for x, _ in pts} | set(paper))
        ax.set_xticks(ticks, [str(x) for x in ticks])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def kspace_error_figure(errors: dict[str, np.ndarray], lines: np.ndarray, title: str) -> plt.Figure:
    """``log10 |F(recon) - F(target)|`` of each data-consistency variant side by side (one colour
    scale), the acquired ky lines marked at the left edge."""
    labels = {
        "none": "no DC",
        "magnitude": "DC on the magnitude image",
        "coil": "DC on the coil data",
    }
    logs = {k: np.log10(np.maximum(v, 1e-6)) for k, v in errors.items()}
    lo = min(np.percentile(v, 1) for v in logs.values())
    hi = max(v.max() for v in logs.values())
    fig, axes = plt.subplots(1, len(logs), figsize=(3.2 * len(logs), 3.4), squeeze=False)
    for ax, (k, v) in zip(axes[0], logs.items()):
        im = ax.imshow(v, cmap="magma", vmin=lo, vmax=hi)
        rows = np.flatnonzero(lines)
        ax.plot(np.full(len(rows), -0.8), rows, ">", ms=2.5, color="tab:cyan", clip_on=False)
        ax.set_title(f"{labels.get(k, k)}\nmean |error| {errors[k].mean():.3g}", fontsize=9)
        ax.set_xlabel("kx")
        ax.set_ylabel("ky (acquired lines: cyan)")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="log10 |k-space error|")
    fig.suptitle(title, fontsize=10)
    return fig


def psnr_vs_nfe(rows: Sequence[dict], title: str) -> plt.Figure:
    """PSNR against network evaluations per slice: one line per sampler and data consistency
    (``dc``: none solid, magnitude dotted, coil data dashed); the reference row (``reference``)
    is a star."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    samplers = list(dict.fromkeys(r["sampler"] for r in rows))
    style = {
        "none": ("o-", None, ""),
        "magnitude": ("s:", "white", " + DC (magnitude)"),
        "coil": ("^--", "white", " + DC (coil data)"),
    }
    for sampler, dc in dict.fromkeys((r["sampler"], str(r["dc"])) for r in rows):
        colour = colours[samplers.index(sampler) % len(colours)]
        pts = sorted(
            (float(r["nfe"]), float(r["psnr"]))
            for r in rows
            if r["sampler"] == sampler and str(r["dc"]) == dc
        )
        marker, face, suffix = style[dc]
        ax.plot(
            *zip(*pts),
            marker,
            color=colour,
            mfc=face or colour,
            label=f"{SAMPLER_LABEL.get(sampler, sampler)}{suffix}",
        )
    for r in rows:
        if r.get("reference"):
            ax.plot(
                float(r["nfe"]),
                float(r["psnr"]),
                "*",
                ms=14,
                color="k",
                zorder=5,
                label=f"reference: {r['label']}",
            )
    ax.set_xscale("log")
    ticks = sorted({int(float(r["nfe"])) for r in rows})  # the evaluations run, as numbers
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("network evaluations per slice (T x R)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.set_size_inches(8.6, 4.0)  # the legend beside the axes, never over the points
    fig.tight_layout()
    return fig


def _error_scale(maps: dict[str, np.ndarray], labels: Sequence[str], given: float | None) -> float:
    """The symmetric error scale of one row of :func:`maps_figure`: ``given``, else the 95th
    percentile of |map - reference| over the maps (1 when there is nothing to scale)."""
    if given is not None:
        emax = given
    elif len(labels) > 1:
        ref = maps[labels[0]]
        emax = np.nanpercentile(
            np.abs(np.concatenate([(maps[k] - ref).ravel() for k in labels[1:]])), 95
        )
    else:
        emax = 1.0
    return float(emax) if np.isfinite(emax) and emax > 0 else 1.0


def _map_panel(ax, image: np.ndarray, cmap_name: str, vmin: float, vmax: float):
    """One map or error panel: unfitted pixels (NaN) grey, no ticks; returns the image."""
    cmap = plt.get_cmap(cmap_name).copy()
    cmap.set_bad("0.6")
    im = ax.imshow(
        np.ma.masked_invalid(image), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest"
    )
    ax.set_xticks([]), ax.set_yticks([])
    return im


def maps_figure(
    panels: Sequence[dict[str, np.ndarray]],
    labels: Sequence[str],
    row_titles: Sequence[str],
    *,
    error_max: Sequence[float] | None = None,
) -> plt.Figure:
    """T1 / T2 maps: per panel (one slice, one map), a row of maps [ms] named by ``labels``
    (the first is the reference) on one scale, and below it each map's error against the
    reference [ms], signed, on one symmetric scale; a colour bar in ms closes each row.
    Unfitted pixels (NaN) are shown in grey."""
    n = len(labels)
    fig, axes = plt.subplots(
        2 * len(panels),
        n + 1,
        figsize=(1.75 * n + 0.6, 3.7 * len(panels)),
        squeeze=False,
        gridspec_kw={"width_ratios": [1] * n + [0.08]},
    )
    for r, (maps, title) in enumerate(zip(panels, row_titles)):
        ref = maps[labels[0]]
        lo, hi = np.nanpercentile(ref, [1, 99]) if np.isfinite(ref).any() else (0.0, 1.0)
        emax = _error_scale(maps, labels, None if error_max is None else error_max[r])
        for c, key in enumerate(labels):
            im = _map_panel(axes[2 * r, c], maps[key], "magma", lo, hi)
            axes[2 * r, c].set_title(key, fontsize=8)
            if c == 0:
                axes[2 * r + 1, c].axis("off")
                continue
            em = _map_panel(axes[2 * r + 1, c], maps[key] - ref, "RdBu_r", -emax, emax)
        fig.colorbar(im, cax=axes[2 * r, n]).set_label(f"{title.split()[0]} [ms]", fontsize=8)
        if n > 1:
            fig.colorbar(em, cax=axes[2 * r + 1, n]).set_label("error [ms]", fontsize=8)
        else:
            axes[2 * r + 1, n].axis("off")
        axes[2 * r, 0].set_ylabel(title, fontsize=9)
        axes[2 * r + 1, 1].set_ylabel(f"- {labels[0]}", fontsize=8)
    fig.tight_layout()
    return fig


def fit_curves(
    times: np.ndarray,
    signals: dict[str, np.ndarray],
    model: dict[str, np.ndarray],
    title: str,
    xlabel: str,
) -> plt.Figure:
    """Measured magnitudes (points) and fitted model magnitudes (lines) of a few pixels, in
    units of the largest measured magnitude (the files' raw scale, ~1e-4, reads badly)."""
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    fine = np.linspace(0, times.max() * 1.05, 200)
    top = max(float(np.max(np.abs(y))) for y in signals.values()) or 1.0
    for (name, y), colour in zip(
        signals.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ):
        ax.plot(times, np.asarray(y) / top, "o", color=colour, label=name)
        ax.plot(fine, np.asarray(model[name]) / top, "-", color=colour, lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("magnitude (largest measured = 1)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def _seed_curves(ax, mine: list[dict], xkey: str, ykey: str, colour, name: str) -> None:
    """One method's curves on ``ax``: a thin line per seed, a thick one for the seed mean."""
    seeds = sorted({int(r["seed"]) for r in mine})
    for s in seeds:
        pts = sorted((float(r[xkey]), float(r[ykey])) for r in mine if int(r["seed"]) == s)
        ax.plot(*zip(*pts), "-", color=colour, lw=0.8, alpha=0.45)
    steps = sorted({int(r["step"]) for r in mine})
    mean = [
        (
            np.mean([float(r[xkey]) for r in mine if int(r["step"]) == st]),
            np.mean([float(r[ykey]) for r in mine if int(r["step"]) == st]),
        )
        for st in steps
    ]
    label = f"{name} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})"
    ax.plot(*zip(*mean), "o-", color=colour, lw=2, ms=3, label=label)


def compute_curve_figure(rows: Sequence[dict], cross: Sequence[dict], title: str) -> plt.Figure:
    """The evidence study's compute curve: PSNR and SSIM on the slices its records score (the
    title says which subjects) against training FLOPs, PSNR against CPU minutes; one colour per
    method, a thin line per seed and a thick one for the seed mean; methods without training
    (RAW, PI-CS) as horizontal lines; crossings of the seed-mean PSNR curves (``cross``) as black
    crosses."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = list(dict.fromkeys(str(r["method"]) for r in rows))
    levels = [
        n for n in names if all(float(r["train_flops"]) == 0 for r in rows if r["method"] == n)
    ]
    curves = [n for n in names if n not in levels]
    panels = (
        ("train_flops", "psnr", "training FLOPs", "PSNR (dB)"),
        ("train_flops", "ssim", "training FLOPs", "SSIM"),
        ("cpu_minutes", "psnr", "CPU minutes of training (process time)", "PSNR (dB)"),
    )
    for ax, (xkey, ykey, xlabel, ylabel) in zip(axes, panels):
        for i, name in enumerate(curves):
            mine = [r for r in rows if r["method"] == name]
            _seed_curves(ax, mine, xkey, ykey, colours[i % len(colours)], name)
        for j, name in enumerate(levels):
            value = np.mean([float(r[ykey]) for r in rows if r["method"] == name])
            ax.axhline(
                value,
                color="0.3" if name == "RAW" else colours[(len(curves) + j) % len(colours)],
                ls="--" if name == "RAW" else ":",
                lw=1.5,
                label=f"{name} (no training)",
            )
        if xkey == "train_flops" and ykey == "psnr":
            for c in cross:
                ax.plot(float(c["train_flops"]), float(c["psnr"]), "kx", ms=8, mew=2, zorder=6)
        ax.set_xscale("log")
        if xkey == "cpu_minutes":  # (under two decades: plain labels at 1, 2, 5 x 10^k only)
            from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def ensemble_law_figure(rows: Sequence[dict], title: str) -> plt.Figure:
    """The ensemble law (``verdicts.ensemble_law`` rows, per seed and R): left, the mean
    squared error of DiffCMR's mean of R rounds against R, measured (mean over seeds, their
    range as bars) beside the two predictions from the rounds' own spread v (any independent
    rounds: MSE_inf + v / R; exact posterior samples: (1 + 1/R) MSE_inf), with the U-Net's
    error as a level; right, the measured PSNR against R with the U-Net's."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    rs = sorted({int(r["rounds"]) for r in rows})
    seeds = sorted({int(r["seed"]) for r in rows})

    def over_seeds(key: str, r: int) -> np.ndarray:
        return np.array([float(x[key]) for x in rows if int(x["rounds"]) == r])

    for key, style, label in (
        ("mse", "o-", f"measured (mean of {len(seeds)} seeds, range as bars)"),
        ("mse_spread_law", "s--", "MSE_inf + v / R (independent rounds, their spread v)"),
        ("mse_posterior_law", "^:", "(1 + 1/R) MSE_inf (exact posterior samples)"),
    ):
        values = [over_seeds(key, r) for r in rs]
        mean = np.array([v.mean() for v in values])
        if key == "mse":
            err = np.array([[m - v.min(), v.max() - m] for m, v in zip(mean, values)]).T
            ax.errorbar(rs, mean, yerr=err, fmt=style, capsize=3, label=label, zorder=3)
        else:
            ax.plot(rs, mean, style, label=label)
    if rows and "unet_mse" in rows[0]:
        unet = np.mean([float(x["unet_mse"]) for x in rows if int(x["rounds"]) == rs[0]])
        ax.axhline(unet, color="0.3", ls="-.", lw=1.2, label="U-Net (one regression output)")
        unet_psnr = np.mean([float(x["unet_psnr"]) for x in rows if int(x["rounds"]) == rs[0]])
        bx.axhline(unet_psnr, color="0.3", ls="-.", lw=1.2, label="U-Net")
    psnr = [over_seeds("psnr", r) for r in rs]
    bx.errorbar(
        rs,
        [p.mean() for p in psnr],
        yerr=[p.std(ddof=1) if len(p) > 1 else 0 for p in psnr],
        fmt="o-",
        capsize=3,
        label=f"DiffCMR, mean of R rounds (sd over {len(seeds)} seeds)",
    )
    for a, ylabel in ((ax, "mean squared error (normalised intensity^2)"), (bx, "mean PSNR (dB)")):
        a.set_xscale("log", base=2)
        a.set_xticks(rs)
        a.set_xticklabels([str(r) for r in rs])
        a.set_xlabel("rounds R")
        a.set_ylabel(ylabel)
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
