"""The study: profiles (``profiles``), cached steps (``cache``, ``steps``), the papermill runner
(``runner``), the report and the paper's numbers (``report``, ``paper``), figures (``plots``),
the explorer (``explorer``), the cost model (``cost``) and the notebooks' opening (``notebook``).
Builds on ``diffcmr_core.method`` and ``diffcmr_core.data``; nothing there imports it."""
