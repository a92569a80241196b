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

TABLES = {
    "calibration": "RAW NMSE of the phantom against the paper's (notebook 01)",
    "sampling": "the lines each factor samples, and the effective acceleration (01)",
    "table1": "Table 1: pairs per task, factor and split (02)",
    "cs_choice": "PI-CS's weight and iterations chosen on training slices (03)",
    "table2_cine": "Table 2: every method on cine, the paper's protocol (04)",
    "table3_mapping": "Table 3: every method on mapping, the paper's protocol (04)",
    "table2_cine_protocols": "Table 2 under both protocols, the paper's and the challenge's (04)",
    "table3_mapping_protocols": "Table 3 under both protocols (04)",
    "paired_psnr": "every method against DiffCMR on the same slices, with intervals (04)",
    "table4a_steps": "Table 4(a): PSNR against the steps T (05)",
    "table4b_rounds": "Table 4(b): PSNR against the rounds R (05)",
    "public_choices": "the public code's variance and clipping (05)",
    "table5_fast_sampling": "the samplers, with and without data consistency (08)",
    "table6_maps": "Table 6: T1 / T2 map errors against the fully sampled maps (09)",
    "table6_maps_truth": "Table 6 against the phantom's truth (09)",
    "table6_maps_scale": "the maps with and without the common intensity scale (09)",
    "table6_maps_uncertainty": "DiffCMR's uncertainty against its T1 error (09)",
    "convergence": "each network's training to convergence (10)",
    "curve_sampler": "the compute curve's sampler against the paper protocol (10)",
    "compute_curve": "every snapshot's validation scores against training compute (10)",
    "compute_crossings": "where two methods' seed-mean compute curves cross (10)",
    "seeds": "mean and sd over training seeds (10; `make seeds` for the other profiles)",
    "seeds_orderings": "the orderings beyond twice the seed spread",
    "seeds_per_seed": "every seed's scores",
    "paired_seeds": "methods against DiffCMR, paired over slices and seeds (10)",
    "seeds_table4a": "Table 4(a) over the seeds (10)",
    "seeds_table4b": "Table 4(b) over the seeds (10)",
    "inference_cost": "seconds per slice of each method (10)",
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
    "10_evidence": "every network trained to convergence, the compute curve, seeds",
}
_THREADS = re.compile(r"^(seeds)-t\d+(_orderings|_per_seed)?$")  # `seeds --threads N`


def table(folder: str | Path, name: str) -> Path:
    """The CSV file of the registered table ``name`` in ``folder`` (``<name>.md`` beside it)."""
    if name not in TABLES and not _THREADS.match(name):
        raise ValueError(f"no table named {name!r}; the study's tables: {', '.join(TABLES)}")
    return Path(folder) / f"{name}.csv"


def notebook(name: str) -> str:
    """``name`` itself, checked to be a registered notebook."""
    if name not in NOTEBOOKS:
        raise ValueError(f"no notebook named {name!r}; the notebooks: {', '.join(NOTEBOOKS)}")
    return name
