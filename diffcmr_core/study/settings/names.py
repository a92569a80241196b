"""The study's notebooks and result tables, named once.

:data:`NOTEBOOKS`: the notebooks ``make study`` runs, in order (``notebooks/<name>.ipynb``; the
runner refuses a notebook file that is not registered). :data:`TABLES`: every table a notebook
writes into
``figures/<profile>/`` (as ``<name>.csv`` and ``<name>.md``) and the report, the README's
blocks and the tests read, with what it holds. :func:`table` is the one way to its file, so a
misspelt or unregistered name is an error at once, not a silently missing section."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from diffcmr_core.tables import read_checked, read_csv


class Table(NamedTuple):
    """A registered table: the notebook that writes it and what it holds."""

    notebook: str
    what: str


TABLES = {
    "calibration": Table("01_data_exploration", "RAW NMSE of the phantom against the paper's"),
    "sampling": Table(
        "01_data_exploration", "the lines each factor samples, and the effective acceleration"
    ),
    "table1": Table("02_preprocessing", "Table 1: pairs per task, factor and split"),
    "cs_choice": Table("03_training", "PI-CS's weight and iterations chosen on training slices"),
    "training_lr_sweep": Table(
        "03_training", "each network's learning rates and their final selection scores (seed 0)"
    ),
    "table2_cine": Table("04_evaluation", "Table 2: every method on cine, the paper's protocol"),
    "table3_mapping": Table(
        "04_evaluation", "Table 3: every method on mapping, the paper's protocol"
    ),
    "table2_cine_protocols": Table(
        "04_evaluation", "Table 2 under both protocols, the paper's and the challenge's"
    ),
    "table3_mapping_protocols": Table("04_evaluation", "Table 3 under both protocols"),
    "paired_psnr": Table(
        "04_evaluation", "every method against DiffCMR on the same slices, with intervals"
    ),
    "table4a_steps": Table("05_ablation", "Table 4(a): PSNR against the steps T"),
    "table4b_rounds": Table("05_ablation", "Table 4(b): PSNR against the rounds R"),
    "public_choices": Table("05_ablation", "the public code's variance and clipping"),
    "table5_fast_sampling": Table(
        "08_fast_sampling", "the samplers, with and without data consistency"
    ),
    "timing_fast_sampling": Table(
        "08_fast_sampling",
        "Table 5's seconds per slice (they vary between runs; the result tables carry none)",
    ),
    "table6_maps": Table(
        "09_mapping", "Table 6: T1 / T2 map errors against the fully sampled maps"
    ),
    "table6_maps_truth": Table("09_mapping", "Table 6 against the phantom's truth"),
    "table6_maps_scale": Table(
        "09_mapping", "the maps with and without the common intensity scale"
    ),
    "table6_maps_uncertainty": Table("09_mapping", "DiffCMR's uncertainty against its T1 error"),
    "evidence_split": Table("10_evidence", "the subjects: training, selection and test"),
    "convergence": Table(
        "10_evidence", "each network's budget: the selection curve's slope, the decay's gain"
    ),
    "evidence_best_sampling": Table(
        "10_evidence", "DiffCMR's samplers, T and R on the selection subjects (the choice)"
    ),
    "curve_sampler": Table("10_evidence", "the compute curve's sampler against the paper protocol"),
    "compute_curve": Table(
        "10_evidence", "every snapshot's selection scores against training compute"
    ),
    "compute_crossings": Table("10_evidence", "where two methods' seed-mean compute curves cross"),
    "seeds": Table(
        "10_evidence", "mean and sd over training seeds (`make seeds` for the other profiles)"
    ),
    "seeds_orderings": Table("10_evidence", "`make seeds`: the orderings beyond twice the seed sd"),
    "seeds_per_seed": Table("10_evidence", "every seed's scores"),
    "seeds_table4a": Table("10_evidence", "Table 4(a) over the seeds"),
    "seeds_table4b": Table("10_evidence", "Table 4(b) over the seeds"),
    "evidence_per_image": Table(
        "10_evidence", "every image's scores: subject, split, method, seed, setting"
    ),
    "evidence_verdicts": Table(
        "10_evidence", "the paper's claims (and ours) on the test subjects, hierarchical bootstrap"
    ),
    "evidence_dc": Table(
        "10_evidence", "the networks on the whole field of view, without and with data consistency"
    ),
    "evidence_ensemble_law": Table(
        "10_evidence", "DiffCMR's error against R beside the (1 + 1/R) law and the U-Net"
    ),
    "inference_cost": Table("10_evidence", "seconds per slice of each method"),
}
NOTEBOOKS = {
    "01_data_exploration": "the data: k-space, masks, coil images, cine frames, weightings",
    "02_preprocessing": "§2.2 and Table 1",
    "03_training": "the DiffCMR models and the baselines; PI-CS's parameters",
    "04_evaluation": "Tables 2 and 3, Figure 3, both protocols, paired comparisons",
    "05_ablation": "Table 4(a) and 4(b); the public code's sampling choices",
    "06_figures_1_2": "Figures 1 and 2",
    "07_explorer": "an interactive explorer",
    "08_fast_sampling": "fewer steps and data consistency",
    "09_mapping": "T1 and T2 maps, Table 6",
    "10_evidence": "held-out test subjects, tuned networks, the compute curve, seeds",
    "11_teaching": "a class: the operators, PI-CS, data consistency, the chain, the ensemble law",
}
LESSON = "11_teaching"  # runs on the shipped weights; `make study` leaves it to the class
_THREADS = re.compile(r"^(seeds)-t\d+(_orderings|_per_seed)?$")  # `seeds --threads N`


def table(folder: str | Path, name: str) -> Path:
    """The CSV file of the registered table ``name`` in ``folder`` (``<name>.md`` beside it)."""
    if name not in TABLES and not _THREADS.match(name):
        raise ValueError(f"no table named {name!r}; the study's tables: {', '.join(TABLES)}")
    return Path(folder) / f"{name}.csv"


def read(folder: str | Path, name: str, **checks) -> list[dict[str, str]]:
    """The rows of the registered table ``name`` in ``folder``, read only when complete
    (``checks``: what :func:`~diffcmr_core.tables.read_checked` must find); otherwise a
    :class:`~diffcmr_core.tables.TableError` naming the file, the problem and the notebook that
    writes the table."""
    return read_checked(table(folder, name), made_by=made_by(name, Path(folder).name), **checks)


def present(folder: str | Path) -> dict[str, list[dict[str, str]]]:
    """Every registered table that ``folder`` holds, read once: ``{name: rows}`` (what the
    report lays out; a table it must trust is read with :func:`read`)."""
    found = {name: table(folder, name) for name in TABLES}
    return {name: read_csv(path) for name, path in found.items() if path.is_file()}


def made_by(name: str, profile: str = "<profile>") -> str:
    """How a registered table is made, in words for an error message: its notebook and the
    command that runs it."""
    nb = TABLES[name].notebook if name in TABLES else "10_evidence"
    return f"notebook {nb}, `python -m diffcmr_core study --profile {profile} --only {nb}`"


def notebook(name: str) -> str:
    """``name`` itself, checked to be a registered notebook."""
    if name not in NOTEBOOKS:
        raise ValueError(f"no notebook named {name!r}; the notebooks: {', '.join(NOTEBOOKS)}")
    return name


# notebooks whose evaluation needs the phantom's truth: skipped, with this reason, on real data
NEEDS_PHANTOM = {
    notebook("09_mapping"): "the maps' errors need the phantom's tissue labels and truth maps "
    "(diffcmr_core.fit_t1 / fit_t2 fit maps of any images)"
}


EVIDENCE = notebook("10_evidence")


def skip_reason(name: str, paths, profile=None) -> str | None:
    """Why ``make study`` does not run the notebook ``name`` on this profile's data, or None: the
    lesson (:data:`LESSON`, no result of the study); the phantom's truth on real data; a
    notebook the profile does not list (``Profile.notebooks``); the evidence study in a profile
    without its settings (``Profile.evidence``)."""
    if name == LESSON:
        return "a lesson, not a result: open it in JupyterLab (`make lab`); nbval runs it"
    if name in NEEDS_PHANTOM and not paths.is_synthetic:
        return f"not run on real data: {NEEDS_PHANTOM[name]}"
    if profile is not None and profile.notebooks is not None and name not in profile.notebooks:
        return f"not in profile {profile.name}'s notebooks ({', '.join(profile.notebooks)})"
    if profile is not None and name == EVIDENCE and profile.evidence is None:
        return (
            f"profile {profile.name} has no evidence settings (the evidence study is "
            "`make study PROFILE=cpu`)"
        )
    return None
