"""What every notebook does first, in one call: :func:`start`."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import sys

from diffcmr_core.errors import DiffCMRError
from diffcmr_core.study.methods.convergence import tuned
from diffcmr_core.study.settings.profiles import Paths, Profile, get_profile, paths_for

_UNKNOWN = object()  # a default that is not a literal (``os.environ.get(...)``)
PUBLISHING = "DIFFCMR_STUDY_PUBLISH"  # set to "1" by ``make study``'s runner while it executes


def _assignments(source: str) -> dict[str, object]:
    """``name -> value`` of the top-level assignments of a cell (the value when it is a literal,
    else a marker)."""
    out: dict[str, object] = {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return out
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    try:
                        out[target.id] = ast.literal_eval(node.value)
                    except (ValueError, SyntaxError, TypeError):
                        out[target.id] = _UNKNOWN
    return out


def check_parameters(cells: list[str]) -> None:
    """Refuse what papermill injected (its ``# Parameters`` cell, right after the notebook's
    parameters cell, in IPython's input history ``cells``) when a name is not one of the
    notebook's parameters (a misspelt ``profil`` would otherwise run the default profile), or a
    value's type differs from the default's (``force="no"`` would count as true)."""
    injected = [
        i for i, c in enumerate(cells) if i > 0 and str(c).lstrip().startswith("# Parameters")
    ]
    if not injected:
        return
    i = injected[-1]
    defaults, given = _assignments(str(cells[i - 1])), _assignments(str(cells[i]))
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise DiffCMRError(
            None,
            f"unknown notebook parameter(s) {', '.join(unknown)}; this "
            f"notebook takes {', '.join(defaults)}",
        )
    for name, value in given.items():
        default = defaults[name]
        if name == "profile" and not isinstance(value, str):
            raise DiffCMRError(None, f"parameter profile must be a profile's name, got {value!r}")
        if default is _UNKNOWN or default is None or value is None:
            continue
        if isinstance(default, bool) or isinstance(value, bool):
            ok = isinstance(default, bool) and isinstance(value, bool)
        elif isinstance(default, (int, float)):
            ok = isinstance(value, (int, float))
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise DiffCMRError(
                None,
                f"parameter {name} must be {type(default).__name__} like its "
                f"default {default!r}, got {value!r}",
            )


def scratch_figures(paths: Paths, notebook: str, params: dict[str, object]) -> Paths:
    """``paths`` with its figures folder moved to ``runs/<profile>/figures/<notebook>/<params>``
    (named after the notebook's parameters), so that an ad-hoc run never touches the figures and
    tables that ``make study`` writes to ``figures/<profile>/``."""
    tag = "-".join(f"{k}={v}" for k, v in params.items()) or "defaults"
    tag = re.sub(r"[^A-Za-z0-9_.,=+-]", "_", tag)
    return dataclasses.replace(paths, figures_dir=paths.layout.scratch_figures(notebook, tag))


def start(
    profile: str, publish: bool = False, notebook: str = "notebook", **params: object
) -> tuple[Profile, Paths]:
    """The profile and its folders for a notebook's parameters; makes the figures folder and
    says which data the notebook reads and where its figures go.

    ``publish``: only ``make study`` (the runner) sets it, and then the figures and tables go to
    ``figures/<profile>/``; any other run (JupyterLab, papermill by hand, nbval) writes them to
    ``runs/<profile>/figures/<notebook>/<params>/`` (:func:`scratch_figures`); ``params`` are
    the notebook's own parameters, which name that folder. A profile that sweeps its learning
    rates comes with the chosen ones once notebook 03 has chosen them
    (:func:`~diffcmr_core.study.methods.convergence.tuned`). ``publish=True`` counts only inside
    the runner (which sets ``PUBLISHING``): an executed copy in ``runs/`` carries papermill's
    ``publish = True``, and re-running it by hand must not overwrite the committed figures.
    """
    check_parameters(list(sys._getframe(1).f_globals.get("In", [])))
    if not isinstance(publish, bool):
        raise DiffCMRError(None, f"parameter publish must be True or False, got {publish!r}")
    if publish and os.environ.get(PUBLISHING) != "1":
        print(
            "publish = True outside `make study` (an executed copy run again?): this run's "
            "figures and tables go to its own folder under runs/, not to figures/"
        )
        publish = False
    P = tuned(get_profile(profile), train_missing=False)  # a swept profile: the chosen rates
    paths = paths_for(P)
    if not publish:
        paths = scratch_figures(paths, notebook, params)
    paths.figures.mkdir(parents=True, exist_ok=True)
    print(paths.describe())
    print(
        f"figures and tables of this run: {paths.figures}"
        + ("" if publish else f" (only `make study` writes {paths_for(P).figures})")
    )
    return P, paths
