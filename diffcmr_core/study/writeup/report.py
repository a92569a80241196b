"""REPORT.md: every table of the study beside the paper's numbers, with provenance."""

from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
from pathlib import Path

import numpy as np
import torch

from diffcmr_core.data.pairs import table1
from diffcmr_core.fileio import write_text_atomic
from diffcmr_core.study.methods.convergence import tuned
from diffcmr_core.study.settings import names, paper
from diffcmr_core.study.settings.layout import RunLayout
from diffcmr_core.study.settings.profiles import Paths, Profile, paths_for, step_stamp
from diffcmr_core.study.store.cache import STEP_USES, read_entry
from diffcmr_core.tables import TableError, read_csv, to_markdown


def compute_seconds(profile: Profile, layout: RunLayout | None = None) -> dict[str, float]:
    """Compute time behind a profile's current results, whichever runs made them: training
    (from the models' loss logs, summed over resumed sessions) and the cached steps: evaluation
    (both protocols), ablation (with the public code's choices), fast sampling and maps; for an
    evidence profile its other seeds' runs and its data-consistency networks' too. Steps
    cached for another configuration are left out. ``layout``: the profile's run layout, when
    the caller has it. A profile that makes choices on its selection subjects is read with
    them (:func:`~diffcmr_core.study.methods.convergence.tuned`), as its steps were keyed."""
    profile = tuned(profile, train_missing=False)
    runs = [(profile, layout or paths_for(profile).layout)]
    if profile.evidence is not None:  # its other seeds and its data-consistency networks
        from diffcmr_core.study.experiments.consistency import dc_profile
        from diffcmr_core.study.experiments.seeds import seed_profile

        others = [seed_profile(profile, s) for s in profile.evidence.seeds if s]
        try:
            others.append(dc_profile(profile))
        except ValueError:  # its choices are not made yet: no such networks
            pass
        runs += [(p, paths_for(p).layout) for p in others]
    totals = {
        "training": 0.0,
        "evaluation": 0.0,
        "ablation": 0.0,
        "fast sampling": 0.0,
        "maps": 0.0,
    }
    for run, layout in runs:
        for log in sorted(layout.models.glob("*/loss.csv")):
            session_max, last = 0.0, 0.0
            for row in read_csv(log):
                sec = float(row.get("seconds") or 0.0)
                if sec < last:  # the elapsed clock restarts when a run resumes
                    totals["training"] += session_max
                    session_max = 0.0
                session_max, last = max(session_max, sec), sec
            totals["training"] += session_max
        for key, kind in (
            ("evaluation", "evaluation"),
            ("evaluation", "challenge"),
            ("evaluation", "consistency"),
            ("ablation", "ablation"),
            ("ablation", "public"),
            ("fast sampling", "fast sampling"),
            ("maps", "maps"),
        ):
            for cache in layout.step_caches(kind):
                entry = read_entry(cache, step_stamp(run, STEP_USES[kind]))
                if entry is not None:
                    totals[key] += float(entry.get("seconds", 0.0))
    return totals


def notebook_seconds(profile: Profile, layout: RunLayout | None = None) -> dict[str, float]:
    """Seconds each notebook took in the ``make study`` run that last executed it (its done
    marker in ``runs/<profile>/notebooks/``), data generation included (notebook 01)."""
    out = {}
    for marker in sorted((layout or paths_for(profile).layout).notebooks.glob("*.done.json")):
        try:
            out[marker.name[: -len(".done.json")]] = float(
                json.loads(marker.read_text())["seconds"]
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def _notebook_line(seconds: dict[str, float]) -> str:
    if not seconds:
        return "- notebook times: none recorded"
    parts = ", ".join(f"{k[:2]} {v:.0f} s" for k, v in seconds.items())
    return (
        f"- notebook times (the `make study` runs that executed them): {parts}; "
        f"{sum(seconds.values()) / 60:.1f} min in all, data generation included"
    )


def _commit(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        # the study itself rewrites figures/, so only changes elsewhere make the commit inexact
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude)figures",
            ],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return out + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_description() -> str:
    """The device a run used: the GPU's name, or the CPU's model (from /proc/cpuinfo where there
    is one), its architecture and torch's thread count."""
    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    arch = platform.processor() or platform.machine()
    return f"CPU: {model + ' (' + arch + ')' if model else arch}, {torch.get_num_threads()} threads"


def _f(x: str | float, digits: int = 2) -> str:
    return f"{float(x):.{digits}f}"


def _beside_paper(r: dict, p: tuple | None) -> dict[str, str]:
    """A row's PSNR, SSIM and NMSE, each beside the paper's (``p``; "-" where it has none)."""
    out = {}
    for i, (name, digits) in enumerate((("PSNR", 2), ("SSIM", 4), ("NMSE", 4))):
        out[name] = _f(r[name.lower()], digits)
        out[f"paper {name}"] = _f(p[i], digits) if p else "-"
    return out


def _results_section(task: str, rows: list[dict[str, str]]) -> list[str]:
    out, verdicts = [], []
    table = []
    for r in rows:
        acc, method = int(r["acc"]), r["method"]
        p = paper.TABLE2_3[task].get(method, {}).get(acc)  # None: not in the paper
        table.append({"method": method, "acc": acc, **_beside_paper(r, p)})
    out.append(_Rows(table))
    for acc in sorted({int(r["acc"]) for r in rows}):
        by = {r["method"]: r for r in rows if int(r["acc"]) == acc}
        d, raw = by["DiffCMR"], by["RAW"]
        beats_raw = float(d["psnr"]) > float(raw["psnr"]) and float(d["nmse"]) < float(raw["nmse"])
        best = max(by, key=lambda m: float(by[m]["psnr"]))
        paper_best = max(paper.TABLE2_3[task], key=lambda m: paper.TABLE2_3[task][m][acc][0])
        verdicts.append(
            f"- {acc}x: DiffCMR {'beats' if beats_raw else 'does NOT beat'} RAW in PSNR and NMSE "
            f"({_f(d['psnr'])} vs {_f(raw['psnr'])} dB); best PSNR here: {best} "
            f"(paper: {paper_best}){' - agrees' if best == paper_best else ' - differs'}."
        )
    return out + verdicts


def _paired_section(rows: list[dict[str, str]]) -> list[str]:
    """Every method against DiffCMR on the same slices (notebook 04's ``paired_psnr``)."""
    table = [
        {
            "task": r["task"],
            "acc": r["acc"],
            "method": r["method"],
            "d PSNR vs " + r["reference"]: _f(r["d_psnr"]),
            "95 % CI": f"[{_f(r['ci_low'])}, {_f(r['ci_high'])}]",
            "slices": r["slices"],
            "beyond": "yes" if r["beyond"] == "True" else "no",
        }
        for r in rows
    ]
    held = [r for r in rows if r["beyond"] == "True"]
    words = (
        "; ".join(
            f"{r['method']} {'above' if float(r['d_psnr']) > 0 else 'below'} "
            f"{r['reference']} at {r['task']} {r['acc']}x ({float(r['d_psnr']):+.2f} dB)"
            for r in held
        )
        or "none"
    )
    return [
        "## Paired comparisons on the same slices (seed 0)",
        "",
        "Per-slice PSNR differences against DiffCMR, with the 95 % confidence interval of their "
        "mean over the slices (the slice-to-slice spread; the seed spread, where `make seeds` "
        "ran, is in the Seeds section).",
        "",
        _Rows(table),
        "",
        f"Intervals that exclude 0: {words}.",
        "",
    ]


def _compute_line(seconds: dict[str, float]) -> str:
    parts = " + ".join(f"{k} {v / 60:.1f}" for k, v in seconds.items())
    return (
        f"- compute behind these results: {sum(seconds.values()) / 60:.1f} min ({parts}; data "
        "generation not included), from the training logs and the step caches, whichever runs "
        "made them"
    )


def write_report(profile: Profile, wall_seconds: float, notebooks: list[str]) -> Path:
    """Write ``figures/<profile>/REPORT.md`` from the tables the notebooks wrote (a profile
    that makes choices on its selection subjects: with them)."""
    profile = tuned(profile, train_missing=False)
    paths = paths_for(profile)
    fig = paths.figures
    found = names.present(fig)  # every table, read once; the sections lay them out
    lines = _provenance_section(profile, paths, wall_seconds, notebooks)
    lines += _lacking_section(profile, found)
    lines += _evidence_section(fig, found, profile)
    lines += _calibration_section(profile, found, paths.root)
    lines += _table1_section(found)
    lines += _results_sections(found)
    lines += _ablation_sections(profile, found)
    if "paired_psnr" in found and profile.evidence is None:  # (evidence: the verdicts' rule)
        lines += _paired_section(found["paired_psnr"])
    lines += _fast_section(found)
    lines += _maps_section(found)
    lines += _seeds_section(found)
    lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in sorted(fig.glob("fig*.png"))]
    path = fig / "REPORT.md"
    text = "\n".join(to_markdown(b) if isinstance(b, _Rows) else b for b in lines)
    write_text_atomic(path, text + "\n")
    return path


class _Rows(list):
    """A table inside the report's lines, rendered as Markdown when the report is written."""


Found = dict[str, list[dict[str, str]]]  # a figures folder's tables by name (names.present)


def _provenance_section(
    profile: Profile, paths: Paths, wall_seconds: float, notebooks: list[str]
) -> list[str]:
    """The report's title and provenance: profile, data, device, commit, date, times, protocol."""
    diffcmr = profile.network("diffcmr")
    scored = "test" if profile.preprocess.selection_cases else "validation"
    return [
        f"# DiffCMR study report: profile `{profile.name}`",
        "",
        "## Provenance",
        "",
        f"- profile: `{profile.name}` (see `diffcmr_core/study/settings/profiles.py`)",
        "- data: "
        + (
            "synthetic phantom (diffcmr_core.data.phantom)"
            if paths.is_synthetic
            else f"real CMRxRecon at {paths.data}"
        ),
        f"- device: {device_description()}; torch {torch.__version__}",
        f"- commit: {_commit(paths.root)}",
        f"- date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        _compute_line(compute_seconds(profile, paths.layout)),
        _notebook_line(notebook_seconds(profile, paths.layout)),
        f"- wall time of this run: {wall_seconds / 60:.1f} min (notebooks run: "
        f"{', '.join(notebooks) or 'none, all reused'}; "
        "finished steps are reused from the run folder unless forced)",
        f"- protocol: DiffCMR {profile.evaluation.sampler} T = {profile.evaluation.steps}, "
        f"R = {profile.evaluation.rounds}, "
        + (
            f"{profile.evaluation.n_val} {scored} slices"
            if profile.evaluation.n_val
            else f"the whole {scored} subset (at most {profile.preprocess.n_val_subset} slices)"
        )
        + f" per task and factor; image size {profile.preprocess.size}; DiffCMR output "
        f"`{diffcmr.model.prediction}`, loss weighting `{diffcmr.model.loss_weighting}`, "
        f"{diffcmr.train.iterations} iterations",
        "",
        "Synthetic data and a small profile cannot reproduce the paper's absolute numbers; "
        "what can be compared is the ordering of methods and the trends.",
        "",
    ]


def expected_tables(profile: Profile) -> list[str]:
    """The tables the report's main sections read that this profile's notebooks make: Table 1,
    the data's calibration and sampling, Tables 2-3 of its tasks, and the evidence study's
    tables when the profile runs it."""
    wanted = ["calibration", "sampling", "table1"]
    wanted += [
        n for t, n in (("cine", "table2_cine"), ("mapping", "table3_mapping")) if t in profile.tasks
    ]
    if profile.evidence is not None:
        wanted += ["convergence", "seeds", "evidence_verdicts"]
    paths = paths_for(profile)
    return [
        n for n in wanted if names.skip_reason(names.TABLES[n].notebook, paths, profile) is None
    ]


def _lacking_section(profile: Profile, found: Found) -> list[str]:
    """The tables this report lacks (a run of only some notebooks in a new home), each with the
    notebook and the command that make it; nothing when none is missing."""
    lacking = [n for n in expected_tables(profile) if n not in found]
    if not lacking:
        return []
    lines = [
        "## Tables not yet made",
        "",
        f"This report lacks {len(lacking)} table(s) of profile `{profile.name}`; their "
        "sections are left out until the notebooks that make them have run:",
        "",
    ]
    lines += [
        f"- `{n}.csv` ({names.TABLES[n].what}): {names.made_by(n, profile.name)}" for n in lacking
    ]
    return lines + [""]


def _table1_section(found: Found) -> list[str]:
    """Table 1 beside the paper's, with the note on its swapped rows (nothing without it)."""
    if "table1" not in found:
        return []
    t1 = found["table1"]
    return [
        "## Table 1: pairs",
        "",
        _Rows(t1),
        "",
        "Paper (real data), under the task each row counts:",
        "",
        _Rows(table1(paper.TABLE1_BY_TASK)),
        "",
        paper.table1_note(),
        "",
    ]


def _results_sections(found: Found) -> list[str]:
    """Tables 2 and 3 beside the paper's, each with both protocols when scored."""
    lines: list[str] = []
    for task, name, title in (
        ("cine", "table2_cine", "Table 2: cine"),
        ("mapping", "table3_mapping", "Table 3: T1/T2 mapping"),
    ):
        if name in found:
            lines += [f"## {title}", ""] + _results_section(task, found[name]) + [""]
        if f"{name}_protocols" in found:
            lines += _protocols_section(found[f"{name}_protocols"])
    return lines


def _ablation_sections(profile: Profile, found: Found) -> list[str]:
    """Tables 4(a) and 4(b) beside the paper's, with the trend in words."""
    lines: list[str] = []
    ev = profile.evaluation
    t_max, r_fixed = max(ev.ablation_steps), min(ev.rounds, max(ev.ablation_rounds))
    for name, key, ref, title in (
        (
            "table4a_steps",
            "steps",
            paper.TABLE4A,
            f"Table 4(a): steps T (R = {r_fixed}; the paper's R = 4)",
        ),
        (
            "table4b_rounds",
            "rounds",
            paper.TABLE4B,
            f"Table 4(b): rounds R (T = {t_max}; the paper's T = 1000)",
        ),
    ):
        if name in found:
            rows = found[name]
            table = []
            for r in rows:
                k = r[key] if r[key] == "Raw" else int(r[key])
                p = ref.get(k)
                table.append({key: r[key], **_beside_paper(r, p)})
            psnrs = [float(r["psnr"]) for r in rows if r[key] != "Raw"]
            trend = (
                "rises"
                if all(b >= a - 0.05 for a, b in zip(psnrs, psnrs[1:]))
                else "does not rise monotonically"
            )
            lines += [
                f"## {title}",
                "",
                _Rows(table),
                f"Ours: PSNR {trend} with {key} (paper: rises).",
                "",
            ]
    return lines


def _fast_section(found: Found) -> list[str]:
    """Table 5 (beyond the paper): the samplers and data consistency."""
    if "table5_fast_sampling" not in found:
        return []
    rows = found["table5_fast_sampling"]
    shown = [
        {
            k: (
                _f(v, 4 if k in ("ssim", "nmse") else 2 if k == "psnr" else 3)
                if k in ("psnr", "ssim", "nmse")
                else v
            )
            for k, v in r.items()
        }
        for r in rows
    ]
    return ["## Table 5 (beyond the paper): fast sampling", "", _Rows(shown)]


def _protocols_section(rows: list[dict[str, str]]) -> list[str]:
    """One task's methods scored by the paper's protocol and the challenge's, side by side."""
    table = [
        {
            "method": r["method"],
            "acc": r["acc"],
            "PSNR paper / challenge": f"{_f(r['paper psnr'])} / {_f(r['challenge psnr'])}",
            "SSIM paper / challenge": f"{_f(r['paper ssim'], 4)} / {_f(r['challenge ssim'], 4)}",
            "NMSE paper / challenge": f"{_f(r['paper nmse'], 4)} / {_f(r['challenge nmse'], 4)}",
        }
        for r in rows
    ]
    return [
        "Both protocols: the paper's (each network-size image whole, the validation subset) and "
        "the challenge's (every file of the validation cases at its original matrix size, "
        "`run4Ranking`'s central two slices, first three cine frames, central third of the "
        "read-out by half of the phase encoding, per-file then per-set means, the larger "
        "MultiCoil / SingleCoil mean kept for each metric as the organisers' code does).",
        "",
        _Rows(table),
        "",
    ]


def _calibration_section(profile: Profile, found: Found, root: Path) -> list[str]:
    """The data against the paper's RAW rows: this profile's (notebook 01) and the paper-size
    calibration (``docs/calibration.md``, ``benchmarks/bench_phantom.py``)."""
    lines = ["## The data against the paper's RAW rows", ""]
    if "calibration" in found:
        rows = found["calibration"]
        ok = sum(r[k] == "True" for r in rows for k in ("psnr_ok", "ssim_ok", "nmse_ok"))
        lines += [
            f"RAW (zero-filled input against the reference) of this profile's phantom at this "
            f"profile's preprocessing, beside the paper's; tolerances PSNR +-1 dB, SSIM "
            f"+-0.04, NMSE within x1.5 ({ok} of {3 * len(rows)} cells within); `range` = "
            "mean(gt^2) / max^2.",
            "",
            _Rows(rows),
        ]
    if "sampling" in found:
        lines += [
            "What each factor samples (its mask files; the central lines make the effective "
            "factor smaller than the nominal one):",
            "",
            _Rows(found["sampling"]),
        ]
    doc = root / "docs" / "calibration.md"
    if doc.is_file():
        lines += [
            "At the paper's own preprocessing (512 -> 128, the `paper` profile's phantom): "
            "[docs/calibration.md](../../docs/calibration.md).",
            "",
        ]
    return lines


def _maps_section(found: Found) -> list[str]:
    """Table 6 (notebook 09): T1 and T2 map errors of every method, and what the common scale
    and DiffCMR's uncertainty say."""
    if "table6_maps" not in found:
        return []

    def rounded(rows: list[dict[str, str]], digits: int = 1) -> list[dict[str, str]]:
        return [
            {
                k: (_f(v, digits) if k not in ("method", "acc", "pixels") else v)
                for k, v in r.items()
            }
            for r in rows
        ]

    lines = [
        "## Table 6 (beyond the paper): T1 and T2 maps",
        "",
        "Every method's reconstructions of the mapping validation slices (multi-coil) on their "
        "common scale, fitted voxel by voxel (MOLLI three-parameter with polarity restoration and "
        "the Look-Locker correction; T2-prep mono-exponential); mean absolute error and bias [ms] "
        "in the myocardium and the blood pool, against the fully sampled images' maps:",
        "",
        _Rows(rounded(found["table6_maps"])),
    ]
    for name, text, digits in (
        (
            "table6_maps_truth",
            "Against the phantom's truth (the fully sampled maps' own error is the "
            "floor: noise and partial volume):",
            1,
        ),
        (
            "table6_maps_scale",
            "Without the common scale (each weighted image at its own input's "
            "maximum, as the network outputs it), myocardium:",
            2,
        ),
        (
            "table6_maps_uncertainty",
            "DiffCMR's uncertainty against its |T1 error| (Spearman, heart "
            "pixels of the T1 slices):",
            3,
        ),
    ):
        if name in found:
            lines += [text, "", _Rows(rounded(found[name], digits))]
    return lines + _maps_discussion(found) + [""]


def _maps_discussion(found: Found) -> list[str]:
    """Table 6 in sentences: the best method per factor and map, the floor, the scale, the
    uncertainty (generated from the CSV files notebook 09 wrote)."""
    rows = found["table6_maps"]
    out = []
    for acc in dict.fromkeys(r["acc"] for r in rows):
        parts = []
        for key in ("T1", "T2"):
            col = f"{key} myo MAE"
            ranked = sorted(
                (float(r[col]), r["method"])
                for r in rows
                if r["acc"] == acc and r[col] not in ("", "nan")
            )
            if ranked:
                parts.append(
                    f"{key} best {ranked[0][1]} ({ranked[0][0]:.0f} ms), worst "
                    f"{ranked[-1][1]} ({ranked[-1][0]:.0f} ms)"
                )
        out.append(
            f"- {acc}x, myocardium against the fully sampled maps: " + "; ".join(parts) + "."
        )
    if "table6_maps_truth" in found:
        floor = [r for r in found["table6_maps_truth"] if r["method"] == "Fully sampled"]
        if floor:
            out.append(
                f"- The fully sampled maps themselves are {float(floor[0]['T1 myo MAE']):.0f} "
                f"ms (T1) "
                f"and {float(floor[0]['T2 myo MAE']):.0f} ms (T2) from the truth in the "
                f"myocardium: "
                "the floor."
            )
    if "table6_maps_scale" in found:
        sc = found["table6_maps_scale"]
        own = [float(r["T1 myo MAE (own scale)"]) for r in sc]
        common = [float(r["T1 myo MAE (common scale)"]) for r in sc]
        out.append(
            f"- Without the common scale the myocardial T1 error is "
            f"{min(own):.0f}-{max(own):.0f} ms "
            f"(with it {min(common):.0f}-{max(common):.0f} ms)."
        )
    if "table6_maps_uncertainty" in found:
        unc = found["table6_maps_uncertainty"]
        rhos = [
            float(r[k])
            for r in unc
            for k in ("rho (std map)", "rho (T1 std over rounds)")
            if r[k] not in ("", "nan")
        ]
        if rhos:
            out.append(
                f"- DiffCMR's uncertainty against its |T1 error|: Spearman rho "
                f"{min(rhos):.2f} to {max(rhos):.2f}"
                + (" (no useful prediction)." if max(abs(x) for x in rhos) < 0.3 else ".")
            )
    return ["", *out]


def _seeds_section(found: Found) -> list[str]:
    """Mean and standard deviation over training seeds (``make seeds``), and which orderings
    exceed twice the spread."""
    if "seeds" not in found:
        return []
    rows = found["seeds"]
    table = [
        {
            "task": r["task"],
            "acc": r["acc"],
            "method": r["method"],
            "seeds": r["seeds"],
            "PSNR": f"{float(r['psnr']):.2f} +- {float(r['psnr_sd']):.2f}",
            "SSIM": f"{float(r['ssim']):.4f} +- {float(r['ssim_sd']):.4f}",
            "NMSE": f"{float(r['nmse']):.4f} +- {float(r['nmse_sd']):.4f}",
        }
        for r in rows
    ]
    lines = ["## Seeds: mean +- standard deviation over retrained models", "", _Rows(table)]
    if "seeds_orderings" in found:
        order = found["seeds_orderings"]
        holds = [
            f"{o['better']} > {o['worse']} ({o['task']} {o['acc']}x, {float(o['d_psnr']):.2f} dB)"
            for o in order
            if o["holds"] == "True"
        ]
        within = [
            f"{o['better']} vs {o['worse']} ({o['task']} {o['acc']}x, {float(o['d_psnr']):.2f} dB)"
            for o in order
            if o["holds"] != "True"
        ]
        lines += [
            "PSNR orderings beyond twice the larger standard deviation: "
            + ("; ".join(holds) or "none")
            + ".",
            "",
            "Within the spread (not established): " + ("; ".join(within) or "none") + ".",
            "",
        ]
    return lines


def _evidence_section(fig: Path, found: Found, profile: Profile) -> list[str]:
    """The evidence study (notebook 10): what it found, then its tables: the split, the
    learning rates, the budgets, DiffCMR's setting, the verdicts, the ensemble law, the seeds,
    the curve's sampler, the compute curve's crossings, the inference cost."""
    if "evidence_verdicts" not in found:
        return []
    try:
        text = evidence_findings(fig, profile)
    except TableError as err:  # an incomplete table: said, not used
        text = f"The findings are left out: {err}"
    lines = ["## Evidence on held-out subjects (notebook 10)", "", text, ""]
    for name, title in (
        ("evidence_verdicts", "The paper's claims on the test subjects (hierarchical bootstrap)"),
        ("training_lr_sweep", "Learning rates (seed 0, final PSNR on the selection subjects)"),
        ("convergence", "Budgets: the selection curve's slope, the decay's gain"),
        ("evidence_best_sampling", "DiffCMR's sampling on the selection subjects"),
        ("evidence_ensemble_law", "The ensemble law on the test subjects"),
        ("seeds", "Test subjects: mean and standard deviation over the seeds"),
        ("seeds_table4a", "Table 4(a) over seeds"),
        ("seeds_table4b", "Table 4(b) over seeds"),
        ("curve_sampler", "The compute curve's sampler (paired with the reference)"),
        ("compute_crossings", "Where the compute curves cross"),
        ("inference_cost", "Inference cost on this machine"),
    ):
        if name in found:
            shown = [{k: _shown(k, v) for k, v in r.items()} for r in found[name]]
            lines += [f"### {title}", "", _Rows(shown) if shown else "none", ""]
    lines += [
        "Every image's scores: `evidence_per_image.csv`; the split: `evidence_split.csv`; "
        "compute curve: `compute_curve.csv`, `fig_compute_curve.png`; the ensemble law: "
        "`fig_ensemble_law.png`.",
        "",
    ]
    return lines


def _shown(key: str, value: str) -> str:
    """A table cell as the report shows it: numbers at a precision that suits their column."""
    if not (_numeric(value) and ("." in value or "e" in value)):
        return value
    if "mse" in key and "nmse" not in key or key in ("lr", "spread_v"):
        return f"{float(value):.3g}"
    return _f(value, 4 if "ssim" in key or "nmse" in key else 3 if "seconds" in key else 2)


def _numeric(v: str) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def evidence_findings(fig: Path, profile: Profile | None = None, *, required: bool = False) -> str:
    """One paragraph on the evidence study from its tables: the split, the training, DiffCMR's
    setting, each of the paper's claims (ordering, T, R) with its subject-level interval and
    verdict, and the ensemble law. Each table is read only when complete (else a
    :class:`~diffcmr_core.tables.TableError` naming it); with ``required`` (the README's
    block) the split, the budgets and the ensemble law must be there too, else a missing one
    is left out."""
    spread = ("ci_low", "ci_high")
    claims = names.read(
        fig,
        "evidence_verdicts",
        columns=("claim", "a", "b", "verdict", "subjects", "seeds", "images"),
        numeric=("d_psnr", *spread),
    )
    parts = []
    for name, words in (
        ("evidence_split", _split_words),
        ("convergence", _budget_words_checked(fig)),
    ):
        if required or names.table(fig, name).is_file():
            parts.append(words(names.read(fig, name)))
    head = claims[0]

    def said(rows: list[dict[str, str]]) -> str:
        return "; ".join(
            f"{c['claim']}: {float(c['d_psnr']):+.2f} dB [{float(c['ci_low']):.2f}, "
            f"{float(c['ci_high']):.2f}], {c['verdict']}"
            for c in rows
        )

    ours = [c for c in claims if c.get("source", "the paper") != "the paper"]
    parts.append(
        f"**The paper's claims** ({head['a']} in the tables; {head['seeds']} seeds, "
        f"{head['subjects']} test subjects; the difference of the first method named minus "
        "the second, mean over seeds, subjects and images, with its 95 % hierarchical "
        "bootstrap interval; a claim is reproduced or reversed only when the interval "
        "excludes 0): " + said([c for c in claims if c not in ours]) + "."
    )
    if ours:
        parts.append(
            "**Beyond the paper: data consistency on the acquired coil data** (the networks "
            f"trained again on the whole field of view, {ours[0]['seeds']} seed, "
            f"`evidence_dc.csv`; confirmed or contradicted under the same rule): "
            + said(ours)
            + "."
            + _ceiling_words(fig)
        )
    if required or names.table(fig, "evidence_ensemble_law").is_file():
        parts.append(_law_words(names.read(fig, "evidence_ensemble_law")))
    return " ".join(parts)


def _ceiling_words(fig: Path) -> str:
    """The consistency's ceiling in a sentence, from ``evidence_dc.csv`` when it has the
    reference's row: the truth made consistent, against the best network without it."""
    if not names.table(fig, "evidence_dc").is_file():
        return ""
    rows = {r["method"]: r for r in names.read(fig, "evidence_dc", numeric=("psnr",))}
    ceiling = rows.get("reference + DC")
    plain = [(float(r["psnr"]), m) for m, r in rows.items() if "+ DC" not in m and m != "RAW"]
    if ceiling is None or not plain:
        return ""
    best, who = max(plain)
    return (
        f" The operator's ceiling: the fully sampled reference itself made consistent scores "
        f"{float(ceiling['psnr']):.2f} dB (its maps and phase estimated from the acquired lines "
        f"at the networks' grid), against {best:.2f} dB for {who} without consistency."
    )


def evidence_summary(fig: Path) -> str:
    """The README's short form of :func:`evidence_findings` (the claims are its table): the
    split, how many trainings had not converged, and the ensemble law; each table required."""
    split = names.read(fig, "evidence_split")
    count = {p: sum(r["split"] == p for r in split) for p in ("training", "selection", "test")}
    runs = names.read(fig, "convergence")
    rising = sum(r["still_rising"] == "True" for r in runs)
    checked = budget_check(runs, fig.parent.parent / "docs" / BUDGETS)
    budget = (
        f"**Subjects**: {count['training']} training, {count['selection']} selection, "
        f"{count['test']} test. **Training**: {len(runs)} networks, "
        + (
            f"{rising} still rising at the end of the constant rate (`convergence.csv`)"
            if rising
            else "none still rising at the end of the constant rate (`convergence.csv`)"
        )
        + (f"; {checked}." if checked else ".")
    )
    return " ".join([budget, _law_words(names.read(fig, "evidence_ensemble_law"), short=True)])


BUDGETS = "training_budget.csv"  # benchmarks/bench_budget.py's comparison of budgets, in docs/


def budget_check(runs: list[dict[str, str]], path: Path, within: float = 0.1) -> str:
    """Whether each network's budget in ``runs`` (``convergence.csv``: method, lr, steps)
    sufficed by the comparison of budgets in ``path`` (``docs/training_budget.csv``, seed 0's
    final selection PSNR of each budget's schedule at a rate): within ``within`` dB of the
    best budget's, or how far short of it (or past it). Empty when the file is missing; a
    network measured at another rate or budget is said to be not measured."""
    if not path.is_file():
        return ""
    bench = read_csv(path)
    said = []
    for method in dict.fromkeys(r["method"] for r in runs):
        run = next(r for r in runs if r["method"] == method)
        steps, lr = int(float(run["steps"])), float(run["lr"])
        rows = [r for r in bench if r["method"] == method and float(r["lr"]) == lr]
        mine = [r for r in rows if int(float(r["budget"])) == steps]
        if not mine:
            said.append(f"{method} {steps} steps not measured")
            continue
        best = max(rows, key=lambda r: float(r["final_psnr"]))
        gap = float(best["final_psnr"]) - float(mine[0]["final_psnr"])
        if gap <= within:
            said.append(f"{method} {steps} steps within {within:g} dB of its best")
        else:
            where = "short of" if steps < int(float(best["budget"])) else "past"
            said.append(f"{method} {steps} {gap:.2f} dB {where} its best ({best['budget']})")
    return (
        "against seed 0's comparison of budgets (`docs/training_budget.md`, "
        "selection PSNR): " + ", ".join(said)
    )


def _split_words(rows: list[dict[str, str]]) -> str:
    """The split in one sentence."""
    by = {
        part: [r["subject"] for r in rows if r["split"] == part]
        for part in ("training", "selection", "test")
    }
    test = by["test"]
    if not test:
        return "**Subjects**: no test subjects."
    named = test[0] if len(test) == 1 else f"{test[0]}-{test[-1]}"
    return (
        f"**Subjects**: {len(by['training'])} training, {len(by['selection'])} selection "
        f"({', '.join(by['selection'])}) and {len(test)} test ({named}); every choice was made "
        "on the selection subjects, the verdicts are on the test subjects."
    )


def _budget_words(rows: list[dict[str, str]]) -> str:
    """The training in one sentence: steps, rates, budgets that did not suffice, CPU time."""
    rising = [f"{r['method']} seed {r['seed']}" for r in rows if r["still_rising"] == "True"]
    untested = sum(
        not _numeric(r["slope_db_per_1k"]) or r["slope_db_per_1k"] == "nan" for r in rows
    )
    rates = {r["method"]: r["lr"] for r in rows}
    cpu = sum(float(r["cpu_minutes"]) for r in rows)
    pflop = sum(float(r["train_pflop"]) for r in rows if _numeric(r.get("train_pflop", "")))
    steps = sorted({r["steps"] for r in rows})
    return (
        f"**Training**: {len(rows)} networks, {' / '.join(steps)} steps each ending in a linear "
        "decay, at the learning rates chosen on the selection subjects ("
        + ", ".join(f"{m} {float(lr):g}" for m, lr in rates.items())
        + f"); {cpu:.0f} CPU minutes (process time) and {pflop:.2g} PFLOP of training for "
        "these (the sweep's other rates: `training_lr_sweep.csv`); the selection curve "
        "was still rising at the end of the constant phase (its slope's 95 % interval above 0) "
        f"for {len(rising)} of {len(rows)}"
        + (f" ({', '.join(rising)})" if rising else "")
        + (f"; {untested} had too few snapshots to test" if untested else "")
        + "."
    )


def _budget_words_checked(fig: Path):
    """:func:`_budget_words` and, where the comparison of budgets is committed, whether each
    budget sufficed (:func:`budget_check`)."""

    def words(rows: list[dict[str, str]]) -> str:
        checked = budget_check(rows, fig.parent.parent / "docs" / BUDGETS)
        text = _budget_words(rows)
        return text[:-1] + f"; {checked}." if checked else text

    return words


def _law_words(rows: list[dict[str, str]], *, short: bool = False) -> str:
    """The ensemble law in two sentences, from the seed means of its table (``short``: the
    README's one sentence, the measured and the posterior gain and the U-Net's ratio)."""
    rs = sorted({int(r["rounds"]) for r in rows})

    def mean(key: str, r: int) -> float:
        return float(np.mean([float(x[key]) for x in rows if int(x["rounds"]) == r]))

    lo, hi = rs[0], rs[-1]
    measured = 10 * np.log10(mean("mse", lo) / mean("mse", hi))
    posterior = 10 * np.log10(mean("mse_posterior_law", lo) / mean("mse_posterior_law", hi))
    worst = max(abs(mean("mse_spread_law", r) / mean("mse", r) - 1) for r in rs)
    ratio = mean("spread_v", lo) / mean("mse_inf", lo)
    if short:
        text = (
            f"**The ensemble law**: from R = {lo} to {hi} DiffCMR's "
            f"squared error fell {measured:.2f} dB, exact posterior samples would give "
            f"{posterior:.2f} dB (the rounds spread {ratio:.2f} times as much as posterior samples)"
        )
        if "unet_mse" in rows[0]:
            unet, limit = mean("unet_mse", lo), mean("mse_inf", lo)
            text += f"; the U-Net's is {unet / limit:.2f} times DiffCMR's limit at R = infinity"
        return text + "."
    text = (
        f"**The ensemble law**: from R = {lo} to {hi} the mean of DiffCMR's rounds lowered its "
        f"squared error by {measured:.2f} dB, where exact posterior samples would give "
        f"{posterior:.2f} dB; the rounds' spread is {ratio:.2f} times the error left at "
        f"infinitely many rounds (1 for posterior samples: the rounds are "
        f"{'narrower' if ratio < 1 else 'wider'} than the posterior), and with it "
        f"MSE_inf + v / R predicts every R within {100 * worst:.1f} %."
    )
    if "unet_mse" in rows[0]:
        unet, limit = mean("unet_mse", lo), mean("mse_inf", lo)
        text += (
            f" The U-Net's squared error is {unet / limit:.2f} times DiffCMR's limit at "
            f"infinitely many rounds ({unet:.3g} against {limit:.3g})."
        )
    return text


# ----------------------------------------------------------------------------- findings in words
def ablation_findings(steps_rows: list[dict], rounds_rows: list[dict]) -> str:
    """What Table 4 shows, in Markdown sentences generated from its rows (ours against the
    paper's trend: PSNR rises with T and with R)."""
    raw = float(steps_rows[0]["psnr"])
    steps = [(int(r["steps"]), float(r["psnr"])) for r in steps_rows if str(r["steps"]) != "Raw"]
    rounds = [
        (int(r["rounds"]), float(r["psnr"])) for r in rounds_rows if str(r["rounds"]) != "Raw"
    ]

    def listing(points, key):
        return (
            ", ".join(f"{p:.2f}" for _, p in points)
            + " dB for "
            + key
            + " = "
            + ", ".join(str(k) for k, _ in points)
        )

    def rises(points):
        return all(b >= a - 0.05 for (_, a), (_, b) in zip(points, points[1:]))

    best_t = max(steps, key=lambda kp: kp[1])
    out = [
        f"- **R**: PSNR {'rises' if rises(rounds) else 'does not rise monotonically'} with the "
        f"number of rounds ({listing(rounds, 'R')}; RAW {raw:.2f} dB); the paper: rises.",
        f"- **T**: PSNR {'rises' if rises(steps) else 'does not rise monotonically'} with the "
        f"chain "
        f"length ({listing(steps, 'T')}); best at T = {best_t[0]}; the paper: rises, with its "
        f"T = 20 and T = 100 rows below RAW. The public code cannot have made those two rows "
        f"as shipped: it builds an N-step chain by scaling the 1000-step betas by 1000 / N, so "
        f"at N = 20 beta reaches 1, abar_T = 0 and sampling returns NaN, and N = 100 is its "
        f"training chain itself; ours respace one 1000-step chain (notebook 05).",
    ]
    return "\n".join(out)


def fast_sampling_findings(rows: list[dict]) -> str:
    """What Table 5 shows, in Markdown sentences generated from its rows."""
    ref = next(r for r in rows if r.get("reference"))
    plain = [r for r in rows if r["nfe"] and _dc(r) == "none" and not r.get("reference")]
    out = [
        f"- Paper protocol ({ref['label']}): {float(ref['psnr']):.2f} dB, SSIM "
        f"{float(ref['ssim']):.3f}, "
        f"{ref['nfe']} network evaluations per slice."
    ]
    if plain:
        best = max(plain, key=lambda r: float(r["psnr"]))
        out.append(
            f"- Best without data consistency: {best['label']}, {float(best['psnr']):.2f} dB "
            f"({float(best['psnr']) - float(ref['psnr']):+.2f} dB) at {best['nfe']} evaluations "
            f"({ref['nfe'] / best['nfe']:.0f}x fewer)"
            + (
                f", {float(best['seconds_per_slice']):.3f} s per slice against "
                f"{float(ref['seconds_per_slice']):.3f} s."
                if "seconds_per_slice" in best
                else "."
            )
        )
    none = {
        (r["sampler"], r["steps"], r["rounds"]): r for r in rows if r["nfe"] and _dc(r) == "none"
    }
    what = {
        "magnitude": "on the magnitude images (the acquired lines of the zero-filled magnitude "
        "image's k-space, which is not the acquisition)",
        "coil": "on the acquired coil data (ESPIRiT maps, the low-resolution phase, the "
        "measured lines, RSS)",
    }
    for variant, words in what.items():
        dc = [r for r in rows if _dc(r) == variant]
        if not dc:
            continue
        gains = [
            float(r["psnr"]) - float(none[(r["sampler"], r["steps"], r["rounds"])]["psnr"])
            for r in dc
        ]
        at_ref = next(
            (
                g
                for r, g in zip(dc, gains)
                if (r["sampler"], r["steps"], r["rounds"])
                == (ref["sampler"], ref["steps"], ref["rounds"])
            ),
            None,
        )
        ssims = [float(r["ssim"]) for r in dc]
        out.append(
            f"- Data consistency {words} changes PSNR by {min(gains):+.2f} to {max(gains):+.2f} dB"
            + (f" ({at_ref:+.2f} dB at the paper protocol)" if at_ref is not None else "")
            + f"; SSIM {min(ssims):.3f}-{max(ssims):.3f}."
        )
    return "\n".join(out)


def _dc(row: dict) -> str:
    """A Table 5 row's data consistency (older tables stored a bool: True was the magnitude one)."""
    v = row["dc"]
    if isinstance(v, bool) or v in ("True", "False"):
        return "magnitude" if v in (True, "True") else "none"
    return str(v)


def evaluation_findings(
    tables: dict[str, list[dict]], protocols: dict[str, list[dict]] | None = None
) -> str:
    """Tables 2 and 3 in sentences (notebook 04): per task and factor, the best method by PSNR and
    by SSIM on the paper's protocol, DiffCMR's gain over RAW, and, when given, the best method by
    the challenge's protocol."""
    lines = []
    for task, rows in tables.items():
        for acc in dict.fromkeys(r["acc"] for r in rows):
            here = {r["method"]: r for r in rows if r["acc"] == acc}
            best_psnr = max(here, key=lambda m: here[m]["psnr"])
            best_ssim = max(here, key=lambda m: here[m]["ssim"])
            line = (
                f"* **{task} {acc}x**: best PSNR {best_psnr} ({here[best_psnr]['psnr']:.2f} dB), "
                f"best SSIM {best_ssim} ({here[best_ssim]['ssim']:.3f})"
            )
            if "DiffCMR" in here and "RAW" in here:
                line += (
                    f"; DiffCMR {here['DiffCMR']['psnr']:.2f} dB, "
                    f"{here['DiffCMR']['psnr'] - here['RAW']['psnr']:+.2f} dB over RAW"
                )
            if protocols and task in protocols:
                ch = {r["method"]: r for r in protocols[task] if r["acc"] == acc}
                if ch:
                    top = max(ch, key=lambda m: ch[m]["challenge psnr"])
                    line += (
                        f"; by the challenge's protocol {top} ({ch[top]['challenge psnr']:.2f} dB)"
                    )
            lines.append(line + ".")
    return "\n".join(lines)
