"""One cache rule: a step's key is what it reads (issue 35). Adding a method to a profile
recomputes the steps that use it and no others; a notebook whose step results or tables are
gone is stale; ``study --dry-run`` says which steps are stale and why."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from diffcmr_core import cli
from diffcmr_core.study.lab.runner import dry_run
from diffcmr_core.study.settings import profiles as profiles_mod
from diffcmr_core.study.settings.layout import STEP_CACHES
from diffcmr_core.study.settings.profiles import get_profile, stamp_changes, step_stamp
from diffcmr_core.study.store.cache import STEP_USES, cached_step


def _with_method(profile, name):
    return dataclasses.replace(profile, methods=(*profile.methods, name))


def test_adding_a_method_changes_only_the_keys_of_the_steps_that_use_it():
    base = get_profile("quick")
    smaller = dataclasses.replace(base, methods=tuple(m for m in base.methods if m != "cgan"))
    for kind in STEP_CACHES:
        before = step_stamp(smaller, STEP_USES[kind])
        after = step_stamp(base, STEP_USES[kind])
        if STEP_USES[kind] is None:  # every method: the new one is read
            assert stamp_changes(before, after) == ["methods.cgan"], kind
        else:
            assert before == after, kind
    # a network's own settings are in its key, another network's are not
    longer = base.with_training("unet", iterations=7)
    assert stamp_changes(step_stamp(base), step_stamp(longer)) == ["methods.unet"]
    assert step_stamp(base, ("raw", "diffcmr")) == step_stamp(longer, ("raw", "diffcmr"))
    wider = dataclasses.replace(base, evaluation=dataclasses.replace(base.evaluation, rounds=8))
    assert stamp_changes(step_stamp(base, ()), step_stamp(wider, ())) == ["evaluation"]


def test_a_step_is_reused_across_a_change_it_does_not_read(tmp_path):
    base = get_profile("smoke")
    calls = []

    def compute():
        calls.append(1)
        return {"rows": len(calls)}

    path = tmp_path / "ablation.json"
    uses = STEP_USES["ablation"]
    assert cached_step(path, base, compute, uses=uses, quiet=True) == {"rows": 1}
    more = dataclasses.replace(base, methods=tuple(m for m in base.methods if m != "cs"))
    assert cached_step(path, more, compute, uses=uses, quiet=True) == {"rows": 1}
    other = base.with_training("diffcmr", iterations=9)
    assert cached_step(path, other, compute, uses=uses, quiet=True) == {"rows": 2}
    assert len(calls) == 2


@pytest.fixture()
def home_copy(smoke_home, tmp_path, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(smoke_home, home, symlinks=True)
    monkeypatch.setenv("DIFFCMR_HOME", str(home))
    return home


def _states(rows):
    return {r["what"]: (r["state"], r["why"]) for r in rows}


def test_dry_run_after_a_study_is_all_fresh_and_names_what_changed(home_copy, monkeypatch, capsys):
    rows = [r for r in dry_run("smoke") if r["what"] != "notebook 11_teaching"]
    lesson = [r for r in dry_run("smoke") if r["what"] == "notebook 11_teaching"]
    assert lesson[0]["state"] == "skipped" and "lesson" in lesson[0]["why"]  # never run by a study
    assert rows and all(r["state"] == "fresh" for r in rows), [r for r in rows if r["why"]]
    assert any(r["what"].startswith("step evaluation") for r in rows)
    # a step's results deleted by hand: the notebook that made them is stale, and says why
    shutil.rmtree(home_copy / "runs" / "smoke" / "eval")
    states = _states(dry_run("smoke"))
    state, why = states["notebook 04_evaluation"]
    assert state == "stale" and "runs/smoke/eval/" in why and why.endswith("is gone")
    assert states["notebook 05_ablation"] == ("fresh", "")
    # a table deleted: its notebook is stale
    (home_copy / "figures" / "smoke" / "table4a_steps.csv").unlink()
    assert _states(dry_run("smoke"))["notebook 05_ablation"] == (
        "stale",
        "figures/smoke/table4a_steps.csv is gone",
    )
    # a network's settings changed: the steps reading it are stale, the others fresh
    smoke = get_profile("smoke")
    changed = smoke.with_training("unet", iterations=99)
    monkeypatch.setitem(profiles_mod.PROFILES, "smoke", changed)
    states = _states(dry_run("smoke"))
    steps = {k: v for k, v in states.items() if k.startswith("step ")}
    for what, (state, why) in steps.items():
        reads_unet = what.startswith(("step challenge", "step maps"))
        assert (state, why) == (
            ("stale", "changed: methods.unet") if reads_unet else ("fresh", "")
        ), what
    cli.main(["study", "--profile", "smoke", "--dry-run"])
    out = capsys.readouterr().out
    assert "dry run: nothing is computed" in out and "changed: methods.unet" in out


def test_the_done_marker_lists_what_the_notebook_made(home_copy):
    marker = json.loads(
        (home_copy / "runs" / "smoke" / "notebooks" / "04_evaluation.done.json").read_text()
    )
    made = marker["made"]
    assert "runs/smoke/eval/cine_acc04/summary.json" in made
    assert "figures/smoke/table2_cine.csv" in made
    assert all((home_copy / rel).is_file() for rel in made)
