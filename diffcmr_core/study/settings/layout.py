"""The run layout: every path under ``runs/<profile>/``, spelled once.

A profile's run folder holds what the study computes and does not commit: the models and their
training records, each step's cache and intermediate files, the submissions and the executed
notebooks::

    runs/<profile>/
      models/<task>_accNN_<method>/     checkpoints, loss.csv, validation.json, snapshots/
      models/<task>_accall_<method>/    (a profile with shared_models: one per task)
      models/<task>_accNN_<method>_lr<rate>/  (a profile that sweeps learning rates)
      models/<task>_accNN_diffcmr_crop/ notebook 08's DiffCMR on crop pairs
      cache/<method>/                   a method's fitted parameters (PI-CS)
      calibration.json                  notebook 01's calibration
      eval/<task>_accNN/                Tables 2-3: summary.json, per-slice tables, recons
      challenge/                        the challenge protocol: scores.json, <method>/ files
      ablation/<task>_accNN/            Table 4: ablation.json, per-slice tables
      public/<task>_accNN/              the public code's choices: choices.json
      fast/<task>_accNN/                Table 5: comparison.json, reconstructions
      maps/accNN/                       Table 6: summary.json
      evidence/<task>_accNN/            the compute curve's sampler: sampler.json
      evidence/lr_<method>.json         a network's learning-rate sweep and its choice
      evidence/best_sampling.json       DiffCMR's sampler, T and R chosen on the selection subjects
      evidence/selection/<task>_accNN/  the final models on the selection subjects
      submission/<method>/<split>/      ``submit``'s default folder
      figures/<notebook>/<parameters>/  an ad-hoc notebook run's figures and tables
      notebooks/                        executed notebooks and their done markers

:class:`RunLayout` is the one way to these paths (``paths_for(profile).layout``); the report
finds the step caches through :meth:`RunLayout.step_caches`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# each step's cache file, by the kind of compute the report adds it to
STEP_CACHES = {
    "evaluation": ("eval", "summary.json"),
    "challenge": ("challenge", "scores.json"),
    "ablation": ("ablation", "ablation.json"),
    "public": ("public", "choices.json"),
    "fast sampling": ("fast", "comparison.json"),
    "maps": ("maps", "summary.json"),
    "curve sampler": ("evidence", "sampler.json"),
    "consistency": ("consistency", "summary.json"),
}


def factor(task: str, acc: int) -> str:
    """A task and factor's folder name (``cine_acc04``)."""
    return f"{task}_acc{acc:02d}"


@dataclass(frozen=True)
class RunLayout:
    """The folders and files under one profile's run folder ``root`` (``runs/<profile>``)."""

    root: Path
    shared_models: bool = False  # one model per task for every factor

    # ------------------------------------------------------------------ models
    @property
    def models(self) -> Path:
        """The folder of every model's run folder."""
        return self.root / "models"

    def model(self, task: str, acc: int, method: str, tag: str | None = None) -> Path:
        """The run folder of the model that reconstructs ``task`` at ``acc``: its own
        (``<task>_accNN_<method>``), or the task's model for every factor
        (``<task>_accall_<method>``) with ``shared_models``; ``tag`` (the learning rate of a
        profile that sweeps it, ``lr0.002``) is appended."""
        which = "all" if self.shared_models else f"{acc:02d}"
        return self.models / (f"{task}_acc{which}_{method}" + (f"_{tag}" if tag else ""))

    def crop_model(self, task: str, acc: int) -> Path:
        """Notebook 08's DiffCMR trained on the crop pairs."""
        return self.models / f"{factor(task, acc)}_diffcmr_crop"

    def method_cache(self, method: str) -> Path:
        """A method's fitted parameters (PI-CS's choice)."""
        return self.root / "cache" / method

    # ------------------------------------------------------------------ steps
    def step(self, kind: str, task: str | None = None, acc: int | None = None) -> Path:
        """The folder of a step (a key of :data:`STEP_CACHES`) for ``task`` at ``acc``
        (``maps``: per factor only; ``challenge``: one folder)."""
        top = self.root / STEP_CACHES[kind][0]
        if kind == "challenge":
            return top
        if kind == "maps":
            return top / f"acc{acc:02d}"
        return top / factor(task, acc)

    def cache(self, kind: str, task: str | None = None, acc: int | None = None) -> Path:
        """A step's cache file (see :meth:`step`)."""
        return self.step(kind, task, acc) / STEP_CACHES[kind][1]

    def step_caches(self, kind: str) -> list[Path]:
        """Every cache file of a kind of step that exists, in order."""
        folder, name = STEP_CACHES[kind]
        pattern = name if kind == "challenge" else f"*/{name}"
        return sorted((self.root / folder).glob(pattern))

    # ------------------------------------------------------------------ the evidence study
    def lr_sweep(self, method: str) -> Path:
        """A network's learning-rate sweep: its rows and choice (JSON)."""
        return self.root / "evidence" / f"lr_{method}.json"

    @property
    def best_sampling(self) -> Path:
        """DiffCMR's best sampling on the selection subjects (a step cache)."""
        return self.root / "evidence" / "best_sampling.json"

    def selection_scores(self, task: str, acc: int) -> Path:
        """The final models' scores on the selection subjects (per-slice tables, summary)."""
        return self.root / "evidence" / "selection" / factor(task, acc)

    @property
    def calibration(self) -> Path:
        """Notebook 01's calibration cache."""
        return self.root / "calibration.json"

    def challenge_files(self, method: str) -> Path:
        """The challenge protocol's reconstructed files of ``method``."""
        return self.step("challenge") / method

    def submission(self, method: str, split: str) -> Path:
        """``submit``'s default folder."""
        return self.root / "submission" / method / split

    # ------------------------------------------------------------------ notebooks
    @property
    def notebooks(self) -> Path:
        """The executed notebooks and their done markers."""
        return self.root / "notebooks"

    def scratch_figures(self, notebook: str, tag: str) -> Path:
        """An ad-hoc run's figures and tables (a notebook not run by ``make study``)."""
        return self.root / "figures" / notebook / tag
