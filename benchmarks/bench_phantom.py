"""The phantom: speed and memory of one real-size case, and its RAW rows beside the paper's.

1. Speed and memory: writes one case of the ``paper`` profile's phantom (every file of both coil
   types, fully sampled and 4x / 8x / 10x, masks, times, mapping truth: about 1 GB) in a child
   process, and reports its time and peak memory against the targets (60 s, 4 GB). The baseline,
   measured in the same run, is the cost of only writing the same files (zeros of the same
   shapes, through the same writer): what any generator must pay.
2. Contrast: per cine file of the paper profile's evaluated subjects (P111-P120), blood over
   myocardium and the brightest pixels over the blood on the fully sampled RSS image
   (``calibration.cine_contrast``, with the cine labels).
3. Mechanisms: the RAW rows and the contrast of the paper profile's phantom, and of each of its
   mechanisms reverted alone (``--cases`` subjects, ``--slices`` slices per file).
4. Calibration: the RAW rows of Tables 2 and 3 (the zero-filled input against the reference at
   each profile's preprocessing, each image divided by its own max) per subject each profile
   evaluates (``calibration.profile_table``), beside the paper's, with the tolerances of issue 12
   (PSNR +-1 dB, SSIM +-0.04, NMSE within a factor 1.5); an intensity histogram of the references.

Usage: python benchmarks/bench_phantom.py [--cases 2] [--frames 3] [--slices 2] [--skip-speed]
       [--phantom KEY=VALUE ... --out DIR/calibration.md]  (a candidate phantom; see --help)
Writes ``docs/calibration.md`` (the tables), ``docs/calibration_histogram.png`` and
``docs/phantom_paper_views.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, resource, sys, time, dataclasses
import numpy as np
from diffcmr_core.data import cmrxrecon as io
from diffcmr_core.data.phantom import write_case, simulate
from diffcmr_core.study.settings.profiles import get_profile
mode, out = sys.argv[1], sys.argv[2]
cfg = dataclasses.replace(get_profile("paper").phantom, n_cases=1, n_val_cases=0)
t = time.perf_counter()
if mode == "phantom":
    write_case(out, cfg, 0)
else:   # baseline: the same files, zeros, through the same writer
    shapes = {}
    for task, names in io.TASK_FILES.items():
        for name in names:
            sim = simulate(dataclasses.replace(cfg, cine_frames=1, sax_slices=1, lax_slices=1,
                                               mapping_slices=1), 0, name)
            shapes[name] = {c: k.shape for c, k in sim.kspace.items()}
    n = {"cine_sax": cfg.sax_slices, "cine_lax": cfg.lax_slices}
    t = time.perf_counter()
    for task, names in io.TASK_FILES.items():
        for name in names:
            for coil, shape in shapes[name].items():
                t_len = cfg.cine_frames if task == "cine" else shape[0]
                full = np.zeros((t_len, n.get(name, cfg.mapping_slices)) + shape[2:], np.complex64)
                for acc in (None, *io.ACCS):
                    io.save_kspace(io.file_path(out, coil, task, "P001", name, acc=acc),
                                   io.kspace_key(coil, acc), full)
seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
size = sum(p.stat().st_size for p in __import__("pathlib").Path(out).rglob("*") if p.is_file())
print(json.dumps({"seconds": seconds, "peak_gb": peak, "bytes": size}))
"""


PHANTOM_OVERRIDES: dict = {}  # --phantom KEY=VALUE: PhantomConfig fields set in every profile


def _profile(name: str):
    """Profile ``name`` with :data:`PHANTOM_OVERRIDES` applied to its phantom."""
    from diffcmr_core.study.settings.profiles import get_profile

    prof = get_profile(name)
    if not PHANTOM_OVERRIDES:
        return prof
    return dataclasses.replace(prof, phantom=dataclasses.replace(prof.phantom, **PHANTOM_OVERRIDES))


def _overrides(items: list[str]) -> dict:
    """``KEY=VALUE`` strings as PhantomConfig fields (values as Python literals)."""
    import ast

    from diffcmr_core.data.phantom import PhantomConfig

    fields = {f.name for f in dataclasses.fields(PhantomConfig)}
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(
                f"--phantom {item!r}: expected KEY=VALUE with KEY a PhantomConfig field "
                f"({', '.join(sorted(fields))})"
            )
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value  # a bare string, e.g. coil_array=dense-30
    try:
        PhantomConfig(**out)
    except (TypeError, ValueError) as err:
        raise SystemExit(f"--phantom {out}: not a valid PhantomConfig ({err})") from None
    return out


def _child(mode: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, mode, tmp],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def speed() -> str:
    ours, base = _child("phantom"), _child("baseline")
    lines = [
        "| one real-size case (paper profile) | time [s] | peak memory [GB] | written [GB] |",
        "|---|---|---|---|",
        f"| phantom (simulate + write) | {ours['seconds']:.1f} | {ours['peak_gb']:.2f} | "
        f"{ours['bytes'] / 1e9:.2f} |",
        f"| baseline: writing zeros of the same shapes | {base['seconds']:.1f} | "
        f"{base['peak_gb']:.2f} | {base['bytes'] / 1e9:.2f} |",
        "| target | 60 | 4 | |",
        "",
        f"(Measured {time.strftime('%Y-%m-%d')} on {_cpu()}; `--skip-speed` keeps this section "
        "of the existing file.)",
    ]
    return "\n".join(lines)


def _cpu() -> str:
    """The CPU's model name (family and model) and core count, for the record of a timing."""
    import os

    info = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())  # the first CPU's
    family = f" (family {info['cpu family']} model {info['model']})" if "model" in info else ""
    return f"{info.get('model name', 'unknown CPU')}{family}, {os.cpu_count()} cores"


def _kept_speed(path: Path) -> str | None:
    """The speed section of an existing ``path`` (without its heading), or None."""
    if not path.is_file():
        return None
    text = path.read_text()
    head = "## Speed and memory\n"
    if head not in text:
        return None
    body = text.split(head, 1)[1]
    return body.split("\n## ", 1)[0].strip()


KEEP = (
    "subject", "task", "acc", "slices", "psnr", "paper_psnr", "ssim", "paper_ssim", "nmse",
    "paper_nmse", "nmse_ratio", "range", "paper_range", "psnr_ok", "ssim_ok", "nmse_ok",
)  # fmt: skip


def calibration(frames: int, figure: Path) -> str:
    """Each profile's RAW rows per subject it evaluates, at its own preprocessing; the
    reference intensities' histogram of the paper and quick profiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from diffcmr_core.study.experiments import calibration as cal
    from diffcmr_core.tables import to_markdown

    out = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for name in ("paper", "quick", "cpu"):
        prof = _profile(name)
        pre = prof.preprocess
        rows = cal.profile_table(prof, frames=frames, progress=False)
        rows = [{k: r[k] for k in KEEP} for r in cal.rounded_rows(rows)]
        out.append(
            f"### {name} profile (pad to {pre.pad_to}, "
            f"{'crop ' + str(pre.roi) + ', ' if pre.roi else ''}resize to {pre.size} "
            f"({pre.resize}); its evaluated subjects, {frames} cine frames)\n\n"
            + cal.findings(rows)
            + "\n\n"
            + to_markdown(rows)
        )
        print(out[-1], flush=True)
        if name == "cpu":
            continue
        ax = axes[0 if name == "paper" else 1]
        cfg = cal.calibration_config(prof.phantom, frames=frames)
        values = [
            gt.ravel() / gt.max()
            for task, acc, coil, g, _ in cal.raw_images(
                cfg,
                cal.evaluated_cases(prof)[:1],
                pad_to=pre.pad_to,
                size=pre.size,
                roi=pre.roi,
                resize=pre.resize,
                accs=(4,),
            )
            for gt in g
        ]
        ax.hist(np.concatenate(values), bins=100, log=True, color="0.3")
        ax.set_title(f"{name}: reference intensities (each image / its max)")
        ax.set_xlabel("intensity")
    fig.tight_layout()
    fig.savefig(figure, dpi=100)
    return "\n\n".join(out)


def _phase_ramp_response(df_hz):
    """The phantom's bSSFP response before this change: a phase ramp of half the precession
    per TR within a band (the TR / 2 echo does not refocus it), for the mechanisms table."""
    import numpy as np

    from diffcmr_core.data.phantom.simulation import BSSFP

    theta = 2 * np.pi * np.asarray(df_hz) * BSSFP["tr"] / 1000.0
    wrapped = np.mod(theta + np.pi, 2 * np.pi) - np.pi
    to_band = np.pi - np.abs(wrapped)
    return (1.0 - 0.85 * np.exp(-((to_band / 0.35) ** 2))) * np.exp(0.5j * wrapped)


def _variant_row(label, cfg, resize, response, subjects) -> dict:
    """One row of the mechanisms tables: the RAW rows (all ``subjects``) at the paper's
    preprocessing and the median contrast of their cine files, for phantom ``cfg`` (and
    ``response`` in place of the bSSFP off-resonance response, if given)."""
    from unittest import mock

    import numpy as np

    from diffcmr_core.data.phantom import simulate, simulation
    from diffcmr_core.study.experiments import calibration as cal

    patch = (
        mock.patch.object(simulation, "bssfp_response", response)
        if response
        else contextlib.nullcontext()
    )
    with patch:
        table = cal.raw_table(cfg, subjects, pad_to=512, size=128, resize=resize, progress=False)
        contrast = [
            cal.cine_contrast(sim.kspace["MultiCoil"], sim.truth["label"])
            for i in subjects
            for sim in (simulate(cfg, i, n) for n in ("cine_sax", "cine_lax"))
        ]
    get = {(r["task"], r["acc"]): r for r in table if r["subject"] == "all"}
    row = {"variant": label}
    for acc in (4, 8, 10):
        row[f"cine NMSE {acc}x"] = round(get[("cine", acc)]["nmse"], 3)
    row["cine PSNR 4x"] = round(get[("cine", 4)]["psnr"], 2)
    row["cine SSIM 4x"] = round(get[("cine", 4)]["ssim"], 3)
    row["cine range"] = round(get[("cine", 4)]["range"], 4)
    row["mapping NMSE 4x"] = round(get[("mapping", 4)]["nmse"], 3)
    row["mapping PSNR 4x"] = round(get[("mapping", 4)]["psnr"], 2)
    row["mapping range"] = round(get[("mapping", 4)]["range"], 4)
    ratios = {k: [c[k] for c in contrast] for k in ("blood_over_myocardium", "max_over_blood")}
    row["blood / myo"] = round(float(np.median(ratios["blood_over_myocardium"])), 2)
    row["max / blood"] = round(float(np.median(ratios["max_over_blood"])), 1)
    print(row, flush=True)
    return row


def _paper_row() -> dict:
    """The paper's RAW rows in the columns of :func:`_variant_row`."""
    from diffcmr_core.study.experiments import calibration as cal
    from diffcmr_core.study.settings.paper import TABLE2_3

    raw = {task: TABLE2_3[task]["RAW"] for task in ("cine", "mapping")}
    return {
        "variant": "paper (Tables 2-3, RAW)",
        **{f"cine NMSE {acc}x": raw["cine"][acc][2] for acc in (4, 8, 10)},
        "cine PSNR 4x": raw["cine"][4][0],
        "cine SSIM 4x": raw["cine"][4][1],
        "cine range": round(cal.paper_dynamic_range("cine", 4), 4),
        "mapping NMSE 4x": raw["mapping"][4][2],
        "mapping PSNR 4x": raw["mapping"][4][0],
        "mapping range": round(cal.paper_dynamic_range("mapping", 4), 4),
        "blood / myo": "2-4 (issue 37)",
        "max / blood": "<= 5 (issue 37)",
    }


def _variants_table(variants, subjects, frames: int, slices: int) -> tuple[str, str]:
    """Where the mechanisms tables were measured (the start of their sentence) and the table
    of ``variants`` (``(label, cfg, resize, response)``, see :func:`_variant_row`) with the
    paper's row last."""
    from diffcmr_core.tables import to_markdown

    rows = [_variant_row(*v, subjects) for v in variants] + [_paper_row()]
    names = ", ".join(f"P{i + 1:03d}" for i in subjects)
    where = (
        f"The paper profile's phantom at the paper's preprocessing on {names} ({frames} cine "
        f"frames, {slices} slices per file)"
    )
    return where, to_markdown(rows)


def coil_arrays(cases: int, frames: int, slices: int) -> str:
    """Receive arrays measured as candidates (the phantom keeps ``loops-10``): the RAW rows and
    the contrast of the paper profile's phantom with each array."""
    from diffcmr_core.study.experiments import calibration as cal

    prof = _profile("paper")
    subjects = cal.evaluated_cases(prof)[:cases]
    base = cal.calibration_config(prof.phantom, frames=frames, slices=slices)
    dense = dataclasses.replace(base, coil_array="dense-30")
    variants = [
        ("loops-10: 10 loops of 75 mm (posterior 90 mm), 30 / 40 mm off the skin "
         "(this phantom)", base),
        ("dense-30: 30 loops of 45 mm, 30 / 40 mm off the skin, compressed to 10", dense),
        ("dense-30, 45 / 55 mm off the skin",
         dataclasses.replace(dense, coil_gap_mm=(45.0, 55.0))),
    ]  # fmt: skip
    where, table = _variants_table(
        [(label, cfg, "public", None) for label, cfg in variants], subjects, frames, slices
    )
    return (
        f"{where} with each receive array "
        "(`PhantomConfig.coil_array`; the dense array is `coils.dense_array`, its compression "
        "`coils.compression`, as the CMRxRecon files hold 10 compressed channels). Smaller "
        "loops shade the torso more steeply from the skin inwards: the range (mean(gt^2) / "
        "max^2) falls to the paper's, but the brightest pixels (subcutaneous fat under a loop) "
        "rise over the blood and the zero-filled images' NMSE rises (the steep shading is "
        "along the phase-encoding direction, front to back, so it spreads energy beyond the "
        "central lines).\n\n" + table
    )


def fat_share(cases: list[int]) -> str:
    """The subcutaneous fat's share of the torso's axial section at the heart (the fat label
    within the outer quarter of the torso's ellipse, arms excluded) for each fat thickness
    draw, against CT measurements."""
    import numpy as np

    from diffcmr_core.data.phantom import anatomy
    from diffcmr_core.data.phantom.simulation import PhantomConfig, View, _slice_maps, draw_case
    from diffcmr_core.tables import to_markdown

    rows = []
    for fat in ((5.0, 8.0), (6.0, 24.0)):
        shares = []
        for index in cases:
            body = draw_case(PhantomConfig(fat_mm=fat), index)
            cx, cy, a_t, b_t = body.torso
            mid = body.base + body.axis * 0.4 * body.lv_length
            view = View(np.array([cx, cy, mid[2]]), np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
            maps, p = _slice_maps(body, view, (220, 320), 1.5, np.array([0.1]))
            label = maps[0][3].reshape(220, 320)
            rho = np.hypot((p[:, 0] - cx) / a_t, (p[:, 1] - cy) / b_t).reshape(220, 320)
            torso = (rho < 1.1) & (label != anatomy.LABEL["air"])
            outer = torso & (rho > 0.75) & (label == anatomy.LABEL["fat"])
            shares.append(100 * outer.sum() / torso.sum())
        now = fat == PhantomConfig().fat_mm
        rows.append(
            {
                "fat thickness drawn [mm]": f"{fat[0]:g}-{fat[1]:g}"
                + (" (this phantom)" if now else " (before)"),
                "share min [%]": f"{min(shares):.1f}",
                "share median [%]": f"{np.median(shares):.1f}",
                "share max [%]": f"{max(shares):.1f}",
            }
        )
    names = f"P{cases[0] + 1:03d}-P{cases[-1] + 1:03d}"
    return (
        f"The subcutaneous fat's share of the torso's axial section through the heart ({names}; "
        "the fat within the outer quarter of the torso, arms excluded). Measured by CT at the "
        "sternal angle in 105 Japanese adults: 6.8-18.3 % in men, 11.2-30.2 % in women "
        "(Kadowaki, J Showa Med Assoc 1985; the abstract).\n\n" + to_markdown(rows)
    )


def mechanisms(cases: int, frames: int, slices: int) -> str:
    """The paper profile's phantom and preprocessing, and each mechanism reverted alone to what
    the phantom had before: its effect on the RAW rows and on the contrast a reader sees."""

    from diffcmr_core.study.experiments import calibration as cal

    prof = _profile("paper")
    subjects = cal.evaluated_cases(prof)[:cases]
    base = cal.calibration_config(prof.phantom, frames=frames, slices=slices)
    variants = [
        ("this phantom, the public code's resize", base, "public", None),
        ("resize anti-aliased (area), not the public code's", base, "area", None),
        (
            "coils: 80 mm loops 6 / 10 mm off the skin (the previous size and gaps)",
            dataclasses.replace(base, coil_radius_mm=40.0, coil_gap_mm=(6.0, 10.0)),
            "public",
            None,
        ),
        (
            "noise: a fixed 0.03 (before), not each subject's myocardial SNR (22-36)",
            dataclasses.replace(base, noise=0.03),
            "public",
            None,
        ),
        (
            "fat: one peak at -3.4 ppm, not six",
            dataclasses.replace(base, fat_spectrum="single"),
            "public",
            None,
        ),
        (
            "fat: 5-8 mm thick (before), not 6-24",
            dataclasses.replace(base, fat_mm=(5.0, 8.0)),
            "public",
            None,
        ),
        (
            "bSSFP: a phase ramp within a band (before), not the refocused echo",
            base,
            "public",
            _phase_ramp_response,
        ),
    ]
    where, table = _variants_table(variants, subjects, frames, slices)
    return (
        f"{where}, and each mechanism reverted alone to what the phantom had before; contrast "
        "columns: medians over the cine files of `calibration.cine_contrast`.\n\n" + table
    )


def views_figure(path: Path) -> None:
    """One case of the paper profile's phantom as acquired (RSS of the fully sampled coils, the
    central half of the oversampled read-out, true aspect): a short-axis cine frame, the
    4-chamber view and a T1 weighting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from diffcmr_core.data.kspace import ifft2c
    from diffcmr_core.data.phantom import simulate

    cfg = dataclasses.replace(_profile("paper").phantom, cine_frames=1, coils=("MultiCoil",))
    shown = [
        (simulate(cfg, 0, "cine_sax").kspace["MultiCoil"][0, 5], "short-axis cine, mid, ED"),
        (simulate(cfg, 0, "cine_lax").kspace["MultiCoil"][0, 0], "long axis, 4-chamber, ED"),
        (simulate(cfg, 0, "T1map").kspace["MultiCoil"][5, 2], "MOLLI T1 weighting 6 of 9"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    for ax, (k, title) in zip(axes, shown):
        img = np.sqrt((np.abs(ifft2c(k)) ** 2).sum(0))
        nx = img.shape[1]
        img = img[:, nx // 4 : 3 * nx // 4]
        ax.imshow(img, cmap="gray", vmax=np.percentile(img, 99.5))
        ax.set_title(f"{title} ({k.shape[-2]} x {k.shape[-1]} k-space)")
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def contrast(frames: int) -> str:
    """Per cine file of the paper profile's phantom (its evaluated subjects): blood over
    myocardium, the maximum and the fat's 99th percentile over the blood pool, on the fully
    sampled multi-coil RSS image."""
    from diffcmr_core.data.phantom import case_name, simulate
    from diffcmr_core.study.experiments.calibration import (
        calibration_config,
        cine_contrast,
        cine_snr,
        evaluated_cases,
    )
    from diffcmr_core.tables import to_markdown

    prof = _profile("paper")
    cfg = calibration_config(dataclasses.replace(prof.phantom, coils=("MultiCoil",)), frames=frames)
    rows = []
    cases = evaluated_cases(prof)
    for index in cases:
        for name in ("cine_sax", "cine_lax"):
            sim = simulate(cfg, index, name)
            clean = simulate(dataclasses.replace(cfg, noise=0.0), index, name)
            got = cine_contrast(sim.kspace["MultiCoil"], sim.truth["label"])
            got |= cine_snr(sim.kspace["MultiCoil"], clean.kspace["MultiCoil"], sim.truth["label"])
            rows.append(
                {"case": case_name(index), "file": name, **{k: round(v, 2) for k, v in got.items()}}
            )
    inside = sum(2 <= r["blood_over_myocardium"] <= 4 and r["max_over_blood"] <= 5 for r in rows)
    return (
        f"The paper profile's evaluated subjects ({case_name(cases[0])}-{case_name(cases[-1])}), "
        f"{cfg.cine_frames} frames, every slice; `calibration.cine_contrast` on the fully "
        "sampled multi-coil RSS image with the phantom's cine labels (blood and myocardium: "
        "their interior pixels). Issue 37 asks for blood over myocardium between 2 and 4 and "
        f"the maximum at most 5 times the blood; {inside} of {len(rows)} files meet both. "
        "SNR and CNR as a reader measures them (`calibration.cine_snr`: the noise-free twin "
        "gives the noise); measured in conventional breath-hold 2D cine at 1.8 x 1.8 x 8 mm: "
        "myocardial SNR 29 +- 7, blood-myocardium CNR 69 +- 14 (PMC8147553, Table 1), and a "
        "blood-myocardium CNR of 48 +- 7 at 3 T (Maroules et al., JMRI 2008).\n\n"
        + to_markdown(rows)
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cases", type=int, default=2, help="subjects of the mechanisms table")
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--slices", type=int, default=2, help="slices per file, mechanisms table")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "calibration.md")
    ap.add_argument(
        "--phantom",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a candidate phantom: set this PhantomConfig field in every profile (repeatable; "
        "no speed section); write it with --out elsewhere",
    )
    args = ap.parse_args()
    PHANTOM_OVERRIDES.update(_overrides(args.phantom))
    parts = [
        "# The phantom: speed, contrast and calibration\n",
        "Written by `python benchmarks/bench_phantom.py` "
        f"(`--cases {args.cases} --frames {args.frames} --slices {args.slices}`), "
        f"{time.strftime('%Y-%m-%d')}, on this machine (2-core CPU). Tolerances: PSNR "
        "+-1 dB, SSIM +-0.04, NMSE within a factor 1.5 of the paper's; `range` is "
        "mean(gt^2) / max(gt)^2, the paper's from its own PSNR and NMSE. The paper profile "
        "resizes as the public code does (`PreprocessConfig.resize = 'public'`, bilinear "
        "without anti-aliasing); the quick and `cpu` profiles crop and resize anti-aliased, so "
        "only their NMSE compares with the paper's.\n",
    ]
    if PHANTOM_OVERRIDES:
        parts.append(
            "**A candidate phantom**: every profile's phantom with "
            + ", ".join(f"`{k} = {v!r}`" for k, v in PHANTOM_OVERRIDES.items())
            + " (`--phantom`); the rows named after today's phantom are this one.\n"
        )
    kept = _kept_speed(args.out) if args.skip_speed else None
    if not PHANTOM_OVERRIDES and (not args.skip_speed or kept):
        parts.append("## Speed and memory\n\n" + (kept or speed()))
        print(parts[-1], flush=True)
    parts.append("## Contrast a reader sees (cine)\n\n" + contrast(args.frames))
    print(parts[-1], flush=True)
    parts.append(
        "## What each mechanism does\n\n" + mechanisms(args.cases, args.frames, args.slices)
    )
    print(parts[-1], flush=True)
    parts.append(
        "## Receive arrays and fat (candidates)\n\n"
        + coil_arrays(args.cases, args.frames, args.slices)
        + "\n\n"
        + fat_share(list(range(110, 120)))
    )
    print(parts[-1], flush=True)
    figure = args.out.with_name("calibration_histogram.png")
    parts.append(
        "## RAW rows against the paper's, per evaluated subject\n\n"
        + calibration(args.frames, figure)
        + f"\n\n![intensity histogram]({figure.name})"
    )
    views_figure(args.out.with_name("phantom_paper_views.png"))
    parts.append("## One case of the paper profile's phantom\n\n![views](phantom_paper_views.png)")
    args.out.write_text("\n\n".join(parts) + "\n")
    print(parts[-1])


if __name__ == "__main__":
    main()
