"""REPORT.md: every table of the study beside the paper's numbers, with provenance."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from pathlib import Path

import torch

from diffcmr_core import paper
from diffcmr_core.fileio import write_text_atomic
from diffcmr_core.profiles import Profile, paths_for
from diffcmr_core.study import compute_seconds
from diffcmr_core.tables import read_csv, to_markdown


def _commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        # the study itself rewrites figures/, so only changes elsewhere make the commit inexact
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no",
                                "--", ".", ":(exclude)figures"],
                               capture_output=True, text=True).stdout.strip()
        return out + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_description() -> str:
    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def _f(x: str | float, digits: int = 2) -> str:
    return f"{float(x):.{digits}f}"


def _results_section(task: str, rows: list[dict[str, str]]) -> list[str]:
    out, verdicts = [], []
    table = []
    for r in rows:
        acc, method = int(r["acc"]), r["method"]
        p_psnr, p_ssim, p_nmse = paper.TABLE2_3[task][method][acc]
        table.append({"method": method, "acc": acc, "PSNR": _f(r["psnr"]), "paper PSNR": _f(p_psnr),
                      "SSIM": _f(r["ssim"], 4), "paper SSIM": _f(p_ssim, 4),
                      "NMSE": _f(r["nmse"], 4), "paper NMSE": _f(p_nmse, 4)})
    out.append(to_markdown(table))
    for acc in sorted({int(r["acc"]) for r in rows}):
        by = {r["method"]: r for r in rows if int(r["acc"]) == acc}
        d, raw = by["DiffCMR"], by["RAW"]
        beats_raw = float(d["psnr"]) > float(raw["psnr"]) and float(d["nmse"]) < float(raw["nmse"])
        best = max(by, key=lambda m: float(by[m]["psnr"]))
        paper_best = max(paper.TABLE2_3[task], key=lambda m: paper.TABLE2_3[task][m][acc][0])
        verdicts.append(
            f"- {acc}x: DiffCMR {'beats' if beats_raw else 'does NOT beat'} RAW in PSNR and NMSE "
            f"({_f(d['psnr'])} vs {_f(raw['psnr'])} dB); best PSNR here: {best} "
            f"(paper: {paper_best}){' - agrees' if best == paper_best else ' - differs'}.")
    return out + verdicts


def _compute_line(seconds: dict[str, float]) -> str:
    parts = " + ".join(f"{k} {v / 60:.1f}" for k, v in seconds.items())
    return (f"- compute behind these results: {sum(seconds.values()) / 60:.1f} min ({parts}; data "
            "generation not included), from the training logs and the step caches, whichever runs made them")


def write_report(profile: Profile, wall_seconds: float, notebooks: list[str]) -> Path:
    """Write ``figures/<profile>/REPORT.md`` from the tables the notebooks wrote."""
    paths = paths_for(profile)
    fig = paths.figures
    lines = [f"# DiffCMR study report: profile `{profile.name}`", "",
             "## Provenance", "",
             f"- profile: `{profile.name}` (see `diffcmr_core/profiles.py`)",
             f"- data: {'synthetic phantom (diffcmr_core.phantom)' if paths.is_synthetic else f'real CMRxRecon at {paths.data}'}",
             f"- device: {device_description()}; torch {torch.__version__}",
             f"- commit: {_commit(paths.root)}",
             f"- date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
             _compute_line(compute_seconds(profile)),
             f"- wall time of this run: {wall_seconds / 60:.1f} min (notebooks run: {', '.join(notebooks) or 'none, all reused'}; "
             "finished steps are reused from the run folder unless forced)",
             f"- protocol: T = {profile.evaluation.steps}, R = {profile.evaluation.rounds}, "
             f"{profile.evaluation.n_val} validation slices per task and factor; image size "
             f"{profile.preprocess.size}; DiffCMR output `{profile.diffcmr.prediction}`, loss weighting "
             f"`{profile.train_diffcmr.loss_weighting}`, {profile.train_diffcmr.iterations} iterations",
             "", "Synthetic data and a small profile cannot reproduce the paper's absolute numbers; "
             "what can be compared is the ordering of methods and the trends.", ""]
    t1 = read_csv(fig / "table1.csv")
    lines += ["## Table 1: pairs", "", to_markdown(t1), "Paper (real data):", "",
              to_markdown([{"task": t, **{f"AccFactor{a:02d} {s}": paper.TABLE1[t][a][i]
                                          for a in (4, 8, 10) for i, s in enumerate(("Train", "Valid"))}}
                           for t in ("cine", "mapping")])]
    for task, name, title in (("cine", "table2_cine", "Table 2: cine"),
                              ("mapping", "table3_mapping", "Table 3: T1/T2 mapping")):
        if (fig / f"{name}.csv").is_file():
            lines += [f"## {title}", ""] + _results_section(task, read_csv(fig / f"{name}.csv")) + [""]
    for name, key, ref, title in (("table4a_steps", "steps", paper.TABLE4A, "Table 4(a): steps T (R = 4)"),
                                  ("table4b_rounds", "rounds", paper.TABLE4B, "Table 4(b): rounds R (T = 1000)")):
        if (fig / f"{name}.csv").is_file():
            rows = read_csv(fig / f"{name}.csv")
            table = []
            for r in rows:
                k = r[key] if r[key] == "Raw" else int(r[key])
                p = ref.get(k)
                table.append({key: r[key], "PSNR": _f(r["psnr"]), "paper PSNR": _f(p[0]) if p else "-",
                              "SSIM": _f(r["ssim"], 4), "paper SSIM": _f(p[1], 4) if p else "-",
                              "NMSE": _f(r["nmse"], 4), "paper NMSE": _f(p[2], 4) if p else "-"})
            psnrs = [float(r["psnr"]) for r in rows if r[key] != "Raw"]
            trend = "rises" if all(b >= a - 0.05 for a, b in zip(psnrs, psnrs[1:])) else "does not rise monotonically"
            lines += [f"## {title}", "", to_markdown(table),
                      f"Ours: PSNR {trend} with {key} (paper: rises).", ""]
    lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in sorted(fig.glob("fig*.png"))]
    path = fig / "REPORT.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path
