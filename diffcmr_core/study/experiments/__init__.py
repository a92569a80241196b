"""Beyond one run: seeds, the evidence study, the cost model, the calibration against the paper."""
