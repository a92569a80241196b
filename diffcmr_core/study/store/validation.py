"""The validation slices a profile scores on: the first ``n`` of the pairs files' validation
subset, checked to come from the profile's preprocessing (or from the data-consistency
comparison's crop preprocessing); and the slices it makes its choices on (stopping, learning
rates, samplers): its selection cases' when it has them (``PreprocessConfig.selection_cases``),
else the same validation subset (the paper's design)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from diffcmr_core.data.pairs import load_pairs, pairs_path, pairs_stamp
from diffcmr_core.study.settings.profiles import Profile, paths_for


def crop_preprocess(profile: Profile):
    """The preprocessing of the data-consistency comparison: the k-space centre at the
    network's size (``crop=True``), i.e. the whole field of view, never an image ``roi``."""
    return dataclasses.replace(profile.preprocess, crop=True, roi=None)


def val_pairs(
    profile: Profile, task: str, acc: int, n: int | None, *, crop_dir: Path | None = None
):
    """``(input, target, meta)`` of the first ``n`` slices of the validation subset (all if
    None), checked to come from this profile's preprocessing."""
    paths = paths_for(profile)
    pre = profile.preprocess if crop_dir is None else crop_preprocess(profile)
    folder = paths.pairs if crop_dir is None else crop_dir
    return load_pairs(
        pairs_path(folder, task, acc),
        "val_subset",
        subset=n,
        expect=pairs_stamp(paths.data, task, pre),
    )


def selection_pairs(profile: Profile, task: str, acc: int, n: int | None):
    """``(input, target, meta)`` of the first ``n`` slices the profile's choices are made on:
    its selection cases' slices, which no table scores, when it has selection cases; else the
    validation subset (:func:`val_pairs`)."""
    if not profile.preprocess.selection_cases:
        return val_pairs(profile, task, acc, n)
    paths = paths_for(profile)
    return load_pairs(
        pairs_path(paths.pairs, task, acc),
        "selection",
        subset=n,
        expect=pairs_stamp(paths.data, task, profile.preprocess),
    )
