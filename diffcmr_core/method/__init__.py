"""The method: networks (``networks``), the noise schedule (``schedule``), the samplers and
ensembling (``samplers``), the three methods (``systems``), training (``train``), inference
(``inference``), metrics and evaluation (``metrics``, ``evaluate``). Builds on
``diffcmr_core.data``; nothing there imports it."""
