"""What every notebook does first, in one call: :func:`start`."""

from __future__ import annotations

from diffcmr_core.study.profiles import Paths, Profile, get_profile, paths_for


def start(profile: str) -> tuple[Profile, Paths]:
    """The profile and its folders for a notebook's ``profile`` parameter; makes the figures
    folder and says which data the notebook will read."""
    P = get_profile(profile)
    paths = paths_for(P)
    paths.figures.mkdir(parents=True, exist_ok=True)
    print(paths.describe())
    return P, paths
