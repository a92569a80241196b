"""Shared fixtures: a tiny synthetic CMRxRecon tree, built once per test session."""

from __future__ import annotations

import pytest

from diffcmr_core.data.phantom import PhantomConfig, make_phantom

TINY = PhantomConfig(
    n_cases=3,
    pixel_mm=6.0,
    acs_lines=6,
    n_coils=4,
    cine_frames=3,
    sax_slices=2,
    lax_slices=1,
    mapping_slices=1,
)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    return make_phantom(tmp_path_factory.mktemp("cmrx"), TINY, progress=False)


@pytest.fixture(scope="session")
def smoke_home(tmp_path_factory):
    """One end-to-end run of the smoke study (every notebook) in a temporary home; its models,
    data and figures are shared by the tests that need a finished study."""
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("DIFFCMR_HOME", str(home))
    mp.delenv("CMRXRECON_ROOT", raising=False)
    from diffcmr_core.study.lab.runner import run_study

    run_study("smoke")
    yield home
    mp.undo()
