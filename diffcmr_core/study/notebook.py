"""What every notebook does first, in one call: :func:`start`."""

from __future__ import annotations

import dataclasses
import re

from diffcmr_core.study.profiles import Paths, Profile, get_profile, paths_for


def scratch_figures(paths: Paths, notebook: str, params: dict[str, object]) -> Paths:
    """``paths`` with its figures folder moved to ``runs/<profile>/figures/<notebook>/<params>``
    (named after the notebook's parameters), so that an ad-hoc run never touches the figures and
    tables that ``make study`` writes to ``figures/<profile>/``."""
    tag = "-".join(f"{k}={v}" for k, v in params.items()) or "defaults"
    tag = re.sub(r"[^A-Za-z0-9_.,=+-]", "_", tag)
    return dataclasses.replace(paths, figures_dir=paths.runs / "figures" / notebook / tag)


def start(profile: str, publish: bool = False, notebook: str = "notebook",
          **params: object) -> tuple[Profile, Paths]:
    """The profile and its folders for a notebook's parameters; makes the figures folder and
    says which data the notebook reads and where its figures go.

    ``publish``: only ``make study`` (the runner) sets it, and then the figures and tables go to
    ``figures/<profile>/``; any other run (JupyterLab, papermill by hand, nbval) writes them to
    ``runs/<profile>/figures/<notebook>/<params>/`` (:func:`scratch_figures`); ``params`` are
    the notebook's own parameters, which name that folder.
    """
    P = get_profile(profile)
    paths = paths_for(P)
    if not publish:
        paths = scratch_figures(paths, notebook, params)
    paths.figures.mkdir(parents=True, exist_ok=True)
    print(paths.describe())
    print(f"figures and tables of this run: {paths.figures}"
          + ("" if publish else f" (only `make study` writes {paths_for(P).figures})"))
    return P, paths
