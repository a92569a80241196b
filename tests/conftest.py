"""Shared fixtures: a tiny synthetic CMRxRecon tree, built once per test session."""

from __future__ import annotations

import pytest

from diffcmr_core.data.phantom import PhantomConfig, make_phantom

TINY = PhantomConfig(n_cases=3, pixel_mm=6.0, acs_lines=6, n_coils=4, cine_frames=3,
                     sax_slices=2, lax_slices=1, mapping_slices=1)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    return make_phantom(tmp_path_factory.mktemp("cmrx"), TINY, progress=False)
