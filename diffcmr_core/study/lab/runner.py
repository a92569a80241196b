"""``make study``: execute the notebooks in order with papermill for a profile, then write
REPORT.md. Executed copies go to ``runs/<profile>/notebooks/``.

A notebook is skipped only when its *done marker* (``<name>.done.json``, written after papermill
returns without error) matches the notebook's source, the package's source and the parameters,
and the step results it read or wrote (its ledger, see :mod:`~diffcmr_core.study.store.cache`) and
the
tables it wrote are still there; a notebook interrupted half-way has no matching marker and runs
again (its finished steps are cached, so it redoes only what is missing).
:func:`stale_reason` says why a notebook would run; :func:`dry_run` lists every notebook and
every cached step of a profile, fresh or stale and why (``study --dry-run``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from diffcmr_core.errors import DiffCMRError
from diffcmr_core.fileio import write_text_atomic
from diffcmr_core.study.lab.notebook import PUBLISHING
from diffcmr_core.study.methods.convergence import tuned
from diffcmr_core.study.settings.layout import STEP_CACHES
from diffcmr_core.study.settings.names import TABLES, notebook, skip_reason, table
from diffcmr_core.study.settings.profiles import get_profile, paths_for, stamp_changes, step_stamp
from diffcmr_core.study.store.cache import LEDGER, STEP_USES, stored_key
from diffcmr_core.study.writeup.report import write_report

PACKAGE = (
    Path(__file__).resolve().parents[2]
)  # diffcmr_core (this: diffcmr_core/study/lab/runner.py)


def notebooks_dir() -> Path:
    """The study's notebooks, beside the package in the checkout."""
    return PACKAGE.parent / "notebooks"


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _fingerprint(notebook: Path, parameters: dict) -> dict[str, str]:
    """What a notebook's result depends on, part by part: its source, the package's source,
    its parameters (hashes)."""
    code = hashlib.sha256()
    for p in sorted(PACKAGE.rglob("*.py")):
        code.update(str(p.relative_to(PACKAGE)).encode() + p.read_bytes())
    return {
        "notebook": _hash(notebook.read_bytes()),
        "code": code.hexdigest()[:16],
        "parameters": _hash(json.dumps(parameters, sort_keys=True).encode()),
    }


PARTS = {"notebook": "the notebook changed", "code": "the package's code changed"}


def _marker(run_dir: Path, notebook: Path) -> Path:
    return run_dir / f"{notebook.stem}.done.json"


def _ledger(run_dir: Path, notebook: Path) -> Path:
    return run_dir / f".{notebook.stem}.ledger"


def stale_reason(
    run_dir: Path, notebook: Path, parameters: dict, root: Path | None = None
) -> str | None:
    """Why ``notebook`` must run again (None: it finished with these parameters and the current
    code, and what it made is still there): no marker or executed copy, which part of its
    fingerprint changed, or which of its step results (under ``root``, the study's folder) or
    tables is gone."""
    marker = _marker(run_dir, notebook)
    if not marker.is_file():
        return "never finished (no done marker)"
    if not (run_dir / notebook.name).is_file():
        return "its executed copy is gone"
    try:
        data = json.loads(marker.read_text())
        old = data["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return "its done marker is unreadable"
    new = _fingerprint(notebook, parameters)
    if not isinstance(old, dict):
        return "marked by an older version of the study"
    changed = [PARTS.get(k, f"its {k} changed") for k in new if old.get(k) != new[k]]
    if changed:
        return "; ".join(changed)
    for rel in data.get("made", []) if root is not None else []:
        if not (root / rel).is_file():
            return f"{rel} is gone"
    return None


def is_done(run_dir: Path, notebook: Path, parameters: dict, root: Path | None = None) -> bool:
    """Whether ``notebook`` finished with these parameters and the current code, and what it
    made is still there (:func:`stale_reason`)."""
    return stale_reason(run_dir, notebook, parameters, root) is None


def _made(root: Path, figures: Path, nb: Path, ledger: Path) -> list[str]:
    """What a finished notebook made or read, relative to the study's folder: the step results
    of its ledger and the registered tables it writes that exist."""
    try:
        used = dict.fromkeys(ledger.read_text().splitlines())
    except OSError:
        used = {}
    tables = [table(figures, n) for n, spec in TABLES.items() if spec.notebook == nb.stem]
    paths = [Path(u) for u in used if u] + [t for t in tables if t.is_file()]
    return sorted(
        {str(p.relative_to(root)) for p in paths if p.is_file() and p.is_relative_to(root)}
    )


def _local_kernel(folder: Path):
    """A kernel manager whose kernel talks over Unix sockets in ``folder`` (POSIX; the kernel
    runs on this machine, so no TCP port is opened and ipykernel has no unencrypted TCP to warn
    about on every notebook); None elsewhere (papermill's default)."""
    if os.name != "posix":
        return None
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class LocalKernel(AsyncKernelManager):
        @default("transport")
        def _default_transport(self) -> str:
            return "ipc"

        @default("ip")
        def _default_ip(self) -> str:
            return str(folder / "kernel")  # absolute: kernel and client share it

    return LocalKernel


def _execute(nb: Path, out: Path, params: dict, paths) -> None:
    """Run one notebook with papermill into ``out`` and mark it done with its fingerprint, its
    seconds and what it made (:func:`_made`); a failing cell stops the study, naming the
    notebook and the cell."""
    import papermill as pm  # papermill and its kernels start slowly: only a run needs them

    run_dir = out.parent
    _marker(run_dir, nb).unlink(missing_ok=True)
    ledger = _ledger(run_dir, nb)
    ledger.unlink(missing_ok=True)
    print(f"[study] {nb.name} ...", flush=True)
    t0 = time.perf_counter()
    os.environ[LEDGER] = str(ledger)  # the kernel lists the steps it reads and writes
    os.environ[PUBLISHING] = "1"  # the kernel may write figures/<profile>/ (notebook.start)
    sockets = Path(tempfile.mkdtemp(prefix="diffcmr-kernel-"))
    manager = _local_kernel(sockets)
    try:
        pm.execute_notebook(
            str(nb),
            str(out),
            parameters=params,
            cwd=str(nb.parent),
            progress_bar=False,
            kernel_name="python3",
            **({"kernel_manager_class": manager} if manager else {}),
        )
    except pm.PapermillExecutionError as err:
        raise SystemExit(
            f"[study] {nb.name} failed in cell {err.exec_count}: {err.ename}: "
            f"{err.evalue}\n(executed copy: {out})"
        ) from None
    finally:
        os.environ.pop(LEDGER, None)
        os.environ.pop(PUBLISHING, None)
        shutil.rmtree(sockets, ignore_errors=True)
    seconds = time.perf_counter() - t0
    marker = {
        "fingerprint": _fingerprint(nb, {**params, "force": False}),
        "seconds": round(seconds, 1),
        "made": _made(paths.root, paths.figures, nb, ledger),
    }
    write_text_atomic(_marker(run_dir, nb), json.dumps(marker, indent=1))
    ledger.unlink(missing_ok=True)
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
        params = {**study_parameters(profile.name), "force": force}
        out = run_dir / nb.name
        stale = stale_reason(run_dir, nb, {**params, "force": False}, paths.root)
        if not force and stale is None:
            print(f"[study] {nb.name}: up to date, skipped")
            continue
        if stale is not None and not stale.startswith("never"):
            print(f"[study] {nb.name}: runs again: {stale}")
        _execute(nb, out, params, paths)
        ran.append(nb.stem)
    report = write_report(profile, time.perf_counter() - start, ran)
    print(f"[study] report: {report}")
    return report


def study_parameters(profile_name: str) -> dict:
    """The parameters ``make study`` gives every notebook (``force`` left out)."""
    return {"profile": profile_name, "force": False, "progress": False, "publish": True}


def dry_run(profile_name: str) -> list[dict[str, str]]:
    """What ``make study`` would do, computing nothing: each notebook of the profile, fresh or
    stale and why (:func:`stale_reason`), and each cached step found under the run folder,
    fresh or stale and which of its inputs changed (its key against
    :func:`~diffcmr_core.study.settings.profiles.step_stamp`, with the choices the profile made
    on its selection subjects)."""
    profile = tuned(get_profile(profile_name), train_missing=False)
    paths = paths_for(profile)
    rows = []
    for nb in sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb")):
        reason = skip_reason(nb.stem, paths, profile)
        if reason is None:
            reason = stale_reason(
                paths.layout.notebooks, nb, study_parameters(profile.name), paths.root
            )
            state = "fresh" if reason is None else "stale"
        else:
            state = "skipped"
        rows.append({"what": f"notebook {nb.stem}", "state": state, "why": reason or ""})
    for kind in STEP_CACHES:
        extra = profile.evidence if kind == "curve sampler" else None
        want = step_stamp(profile, STEP_USES[kind], extra)
        for cache in paths.layout.step_caches(kind):
            changed = stamp_changes(stored_key(cache), want)
            rows.append(
                {
                    "what": f"step {kind}: {cache.relative_to(paths.root)}",
                    "state": "stale" if changed else "fresh",
                    "why": ("changed: " + ", ".join(changed)) if changed else "",
                }
            )
    return rows
