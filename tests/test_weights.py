"""The shipped weights (``weights/<profile>/``): the committed files are the manifest's, a file
that differs is refused, and what is shipped loads for inference."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from diffcmr_core.errors import DiffCMRError
from diffcmr_core.method.checkpoints import load_for_inference
from diffcmr_core.study.store import weights


@pytest.mark.parametrize(
    "profile", sorted(p.name for p in weights.folder("quick").parent.iterdir())
)
def test_the_committed_weights_are_the_manifests(profile):
    """Every shipped profile: one file per network method, each the manifest's by an independent
    digest, loading as the method it names, with its scores and how it was made."""
    from diffcmr_core.study.settings.profiles import get_profile

    found = weights.manifest(profile)
    assert found["profile"] == profile and set(found["files"]) == {
        f"cine_{m}.pt" for m in weights.networks(get_profile(profile))
    }
    assert found["made_by"] == f"python -m diffcmr_core weights --profile {profile}"
    for name, entry in found["files"].items():
        data = (weights.folder(profile) / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]  # an independent digest
        assert len(data) == entry["bytes"]
        method = entry["method"]
        system, model = load_for_inference(weights.shipped(profile, method))
        assert system.method == method and not model.training
        assert entry["table_scores"] and entry["lr"] > 0
        if get_profile(profile).preprocess.selection_cases:
            assert 0 < entry["selection_scores"]["ssim"] <= 1


def test_a_file_that_differs_from_its_manifest_is_refused(tmp_path):
    shutil.copytree(weights.folder("quick"), tmp_path / "weights" / "quick")
    path = tmp_path / "weights" / "quick" / "cine_diffcmr.pt"
    assert weights.shipped("quick", "diffcmr", root=tmp_path) == path
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(DiffCMRError, match="differs from its manifest"):
        weights.shipped("quick", "diffcmr", root=tmp_path)
    (tmp_path / "weights" / "quick" / "manifest.json").write_text("{")
    with pytest.raises(DiffCMRError, match="not valid JSON"):
        weights.manifest("quick", root=tmp_path)
    assert json.loads((weights.folder("quick") / "manifest.json").read_text())  # untouched


def test_the_explorer_uses_the_shipped_weights_when_nothing_is_trained(tmp_path, monkeypatch):
    """In a home where the quick study never ran, the explorer's DiffCMR is the shipped one,
    checked against its manifest, and it loads; a profile without shipped weights has none."""
    from diffcmr_core.study.lab.explorer import Explorer
    from diffcmr_core.study.settings.profiles import get_profile

    monkeypatch.setenv("DIFFCMR_HOME", str(tmp_path))
    explorer = Explorer(get_profile("quick"))
    assert not explorer.trained(4)
    assert explorer.source(4) == ("shipped", weights.folder("quick") / "cine_diffcmr.pt")
    system, model = explorer._model(4)
    assert system.method == "diffcmr" and not model.training
    assert Explorer(get_profile("smoke")).source(4) is None
