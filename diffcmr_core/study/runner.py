"""``make study``: execute the notebooks in order with papermill for a profile, then write
REPORT.md. Executed copies go to ``runs/<profile>/notebooks/``.

A notebook is skipped only when its *done marker* (``<name>.done.json``, written after papermill
returns without error) matches the notebook's source, the package's source and the parameters;
a notebook interrupted half-way has no matching marker and runs again (its finished steps are
cached, so it redoes only what is missing)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from diffcmr_core.errors import DiffCMRError
from diffcmr_core.fileio import write_text_atomic
from diffcmr_core.study.names import notebook, skip_reason
from diffcmr_core.study.profiles import get_profile, paths_for
from diffcmr_core.study.report import write_report

PACKAGE = Path(__file__).resolve().parents[1]


def notebooks_dir() -> Path:
    """The study's notebooks, beside the package in the checkout."""
    return PACKAGE.parent / "notebooks"


def _fingerprint(notebook: Path, parameters: dict) -> str:
    """Hash of what a notebook's result depends on: its source, the package, its parameters."""
    h = hashlib.sha256(notebook.read_bytes())
    for p in sorted(PACKAGE.rglob("*.py")):
        h.update(str(p.relative_to(PACKAGE)).encode() + p.read_bytes())
    h.update(json.dumps(parameters, sort_keys=True).encode())
    return h.hexdigest()


def _marker(run_dir: Path, notebook: Path) -> Path:
    return run_dir / f"{notebook.stem}.done.json"


def is_done(run_dir: Path, notebook: Path, parameters: dict) -> bool:
    """Whether ``notebook`` finished with these parameters and the current code."""
    marker = _marker(run_dir, notebook)
    if not marker.is_file() or not (run_dir / notebook.name).is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("fingerprint") == _fingerprint(
            notebook, parameters
        )
    except (OSError, ValueError):
        return False


def _execute(nb: Path, out: Path, params: dict) -> None:
    """Run one notebook with papermill into ``out`` and mark it done with its fingerprint and
    seconds; a failing cell stops the study, naming the notebook and the cell."""
    import papermill as pm

    run_dir = out.parent
    _marker(run_dir, nb).unlink(missing_ok=True)
    print(f"[study] {nb.name} ...", flush=True)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(
            str(nb),
            str(out),
            parameters=params,
            cwd=str(nb.parent),
            progress_bar=False,
            kernel_name="python3",
        )
    except pm.PapermillExecutionError as err:
        raise SystemExit(
            f"[study] {nb.name} failed in cell {err.exec_count}: {err.ename}: "
            f"{err.evalue}\n(executed copy: {out})"
        ) from None
    seconds = time.perf_counter() - t0
    marker = {
        "fingerprint": _fingerprint(nb, {**params, "force": False}),
        "seconds": round(seconds, 1),
    }
    write_text_atomic(_marker(run_dir, nb), json.dumps(marker))
    print(f"[study] {nb.name} done in {seconds:.0f} s", flush=True)


def run_study(
    profile_name: str = "quick", *, force: bool = False, only: list[str] | None = None
) -> Path:
    """Execute the notebooks in order with papermill for a profile; write REPORT.md.

    ``force`` runs every notebook and makes each recompute its own step. A failing notebook
    stops the run with the notebook and the cell named.
    """
    profile = get_profile(profile_name)
    paths = paths_for(profile)
    names = [nb.stem for nb in sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))]
    for name in names:
        notebook(name)  # a notebook file the registry does not know is an error
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise DiffCMRError(
            None,
            f"--only: no notebook named {', '.join(unknown)}; the notebooks are {', '.join(names)}",
        )
    if profile.evidence is not None:
        # CPU minutes are measured: OpenMP's idle threads must not spin (spinning counts as CPU
        # time when another process shares the cores); the kernels inherit this
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    run_dir = paths.layout.notebooks
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"[study] {paths.describe()}")
    start, ran = time.perf_counter(), []
    for nb in sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb")):
        if only and nb.stem not in only:
            continue
        reason = skip_reason(nb.stem, paths, profile)
        if reason:
            print(f"[study] {nb.name}: {reason}")
            continue
        params = {"profile": profile.name, "force": force, "progress": False, "publish": True}
        out = run_dir / nb.name
        if not force and is_done(run_dir, nb, {**params, "force": False}):
            print(f"[study] {nb.name}: up to date, skipped")
            continue
        _execute(nb, out, params)
        ran.append(nb.stem)
    report = write_report(profile, time.perf_counter() - start, ran)
    print(f"[study] report: {report}")
    return report
