"""One rank of the sharding tests (``tests/test_shard.py``), started by ``torchrun``.

``shard_worker.py submit OUT REPORT [--die-after N]``: the smoke profile's DiffCMR submission of
the ValidationSet into OUT; rank 0 writes the report (files written, kept, skipped) as JSON to
REPORT. With ``--die-after N`` rank 1 ends its process (``os._exit``, as a killed rank would)
right after writing its N-th file and its record.

``shard_worker.py evaluate REPORT``: the smoke profile's evaluation of cine 4x and its ablation,
recomputed (``force``) with one slice per chunk, so that two ranks share the slices; rank 0
writes the two steps' results to REPORT.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from diffcmr_core.study.settings.profiles import get_profile
from diffcmr_core.study.steps import submit as submit_module
from diffcmr_core.study.store import shard


def main(argv: list[str]) -> None:
    command = argv[0]
    with shard.launched() as ranks:
        if command == "submit":
            out, report_path = argv[1], argv[2]
            if "--die-after" in argv and ranks.rank == 1:
                _die_after(int(argv[argv.index("--die-after") + 1]))
            report = submit_module.submit(
                get_profile("smoke"), split="ValidationSet", out=out, progress=False
            )
            result = {k: sorted(str(p) for p in getattr(report, k)) for k in ("written", "kept")}
            result["skipped"] = report.skipped
        else:
            from diffcmr_core.study.steps import ablation, evaluate_factor

            report_path = argv[1]
            smoke = get_profile("smoke")
            profile = dataclasses.replace(
                smoke, evaluation=dataclasses.replace(smoke.evaluation, batch=1)
            )
            result = {
                "evaluation": evaluate_factor(profile, "cine", 4, progress=False, force=True),
                "ablation": ablation(profile, "cine", 4, progress=False, force=True),
            }
        if ranks.main:
            with open(report_path, "w") as fh:
                json.dump({"world": ranks.world, **result}, fh)


def _die_after(n: int) -> None:
    real = submit_module._write_record
    count = {"files": 0}

    def record_then_maybe_die(path, record):
        real(path, record)
        count["files"] += 1
        if count["files"] >= n:
            os._exit(17)

    submit_module._write_record = record_then_maybe_die


if __name__ == "__main__":
    main(sys.argv[1:])
