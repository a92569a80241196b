"""The study, in sub-packages that each import only the ones listed before them: ``settings``
(profiles, the run layout, names, the paper's numbers), ``store`` (step caches, shards, the
validation slices), ``methods`` (the registry, training to convergence, PI-CS's choice), ``steps``
(what the notebooks compute, the submission, the maps), ``experiments`` (seeds, the evidence
study, the cost model, the calibration), ``writeup`` (figures, the report, the README's blocks)
and ``lab`` (the notebook runner, a notebook's first cell, the explorer). Builds on
``diffcmr_core.method`` and ``diffcmr_core.data``; nothing there imports it."""
