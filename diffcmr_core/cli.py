"""The command line: ``python -m diffcmr_core <command>`` (or the ``diffcmr`` script).

* ``study``: run the study's notebooks for a profile and write its report (``make study``).
* ``phantom``: write a profile's synthetic CMRxRecon tree to a folder.
* ``seeds``: retrain every method with several seeds; the spread of the tables.
* ``cost``: count a profile's FLOPs per notebook and predict its time.
* ``train``: train one model from a pairs file (single process or under ``torchrun``).
* ``submit``: a challenge submission (``img4ranking`` files) from a profile's trained models.
* ``evaluate``: the evaluation and the ablation of a profile's trained models (notebooks 04 and
  05's sampling), for a run split over GPUs.

``submit`` and ``evaluate`` run in one process or under ``torchrun`` (``torchrun
--nproc-per-node 8 -m diffcmr_core submit ...``): each rank takes its share of the files or
slices, and the result is the same for any number of ranks.
* ``score``: score a submission folder against fully sampled files, as the challenge does.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from diffcmr_core.data.cmrxrecon import ACCS, TASKS
from diffcmr_core.data.phantom import make_phantom
from diffcmr_core.errors import DiffCMRError
from diffcmr_core.method.challenge import score_submission
from diffcmr_core.method.train import run_from_config
from diffcmr_core.study import methods
from diffcmr_core.study.experiments.cost import print_cost
from diffcmr_core.study.experiments.seeds import orderings, seed_results, seed_table
from diffcmr_core.study.lab.runner import dry_run, run_study
from diffcmr_core.study.settings.names import table
from diffcmr_core.study.settings.profiles import PROFILES, get_profile, paths_for, repo_root
from diffcmr_core.study.steps import evaluation_steps
from diffcmr_core.study.steps.submit import submit
from diffcmr_core.study.store import shard
from diffcmr_core.study.writeup.readme import refresh_pages
from diffcmr_core.tables import to_markdown, write_table


def _int_at_least(minimum: int):
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


_positive_int, _count = _int_at_least(1), _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


MAX_SEED = 2**63 - 1  # torch's and numpy's generators take a signed 64-bit seed


def _seed(text: str) -> int:
    """A training seed: a whole number from 0 to 2^63 - 1."""
    value = _count(text)
    if value > MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be at most 2^63 - 1 = {MAX_SEED}, got {value}")
    return value


def _profile(text: str) -> str:
    """A profile's name (``<name>-dry`` for a dry run), checked before any work."""

    try:
        get_profile(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def _factor(text: str) -> tuple[str, int]:
    """``task:acc`` of ``seeds --factor`` (e.g. ``cine:4``), checked."""

    task, sep, acc = text.partition(":")
    if not sep or task not in TASKS or not acc.isdigit() or int(acc) not in ACCS:
        raise argparse.ArgumentTypeError(
            f"expected task:factor with a task of {', '.join(TASKS)} and a factor of "
            f"{', '.join(map(str, ACCS))} (e.g. cine:4), got {text!r}"
        )
    return task, int(acc)


def _study(args: argparse.Namespace) -> None:
    if args.dry_run:
        rows = dry_run(args.profile)
        print(f"[study] profile {args.profile}, dry run: nothing is computed")
        print(to_markdown(rows))
        stale = sum(r["state"] == "stale" for r in rows)
        print(f"{stale} of {len(rows)} stale; `make study PROFILE={args.profile}` runs them")
        return
    run_study(args.profile, force=args.force, only=args.only)


def _phantom(args: argparse.Namespace) -> None:

    cfg = get_profile(args.profile).phantom
    if args.cases is not None:  # a smaller set keeps the profile's ratio of validation cases
        val = (
            cfg.n_val_cases
            if args.val_cases is not None
            else -(-args.cases * cfg.n_val_cases // max(cfg.n_cases, 1))
        )
        cfg = dataclasses.replace(cfg, n_cases=args.cases, n_val_cases=val)
    if args.val_cases is not None:
        cfg = dataclasses.replace(cfg, n_val_cases=args.val_cases)
    if args.frames is not None:
        cfg = dataclasses.replace(cfg, cine_frames=min(cfg.cine_frames, args.frames))
    if args.slices is not None:
        cfg = dataclasses.replace(
            cfg,
            **{
                k: min(getattr(cfg, k), args.slices)
                for k in ("sax_slices", "lax_slices", "mapping_slices")
            },
        )
    root = make_phantom(Path(args.out), cfg, progress=not args.quiet, force=args.force)
    print(
        f"phantom: {cfg.n_cases} training and {cfg.n_val_cases} validation cases of profile "
        f"{args.profile} in {root} (mapping truth in {root / 'Truth'})"
    )


def _seeds(args: argparse.Namespace) -> None:
    import torch

    repeated = sorted({s for s in args.seeds if args.seeds.count(s) > 1})
    if repeated:
        raise DiffCMRError(
            None,
            f"--seeds: {', '.join(map(str, repeated))} given more than once; the spread over "
            "seeds needs distinct seeds (the tables were left unchanged)",
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = _chosen(args.profile)
    factors = tuple(args.factor) if args.factor else None
    results = seed_results(
        profile, tuple(args.seeds), threads=args.threads, factors=factors, progress=not args.quiet
    )
    rows = seed_table(results)
    tag = f"seeds{'-t' + str(args.threads) if args.threads else ''}"
    out = paths_for(profile).figures
    write_table(rows, table(out, tag))
    order = orderings(rows)
    write_table(order, table(out, f"{tag}_orderings"))
    per_seed = [
        {"seed": s, "task": t, "acc": a, "method": m, **v}
        for s, by in results.items()
        for (t, a), ms in by.items()
        for m, v in ms.items()
    ]
    write_table(per_seed, table(out, f"{tag}_per_seed"))
    print(to_markdown(rows))
    print(to_markdown(order))


def _cost(args: argparse.Namespace) -> None:

    print_cost(args)


def _train(args: argparse.Namespace) -> None:

    run_from_config(args.method, args.pairs, args.out_dir, args.config)


def _chosen(name: str):
    """The profile ``name`` with the choices it made on its selection subjects (the evidence
    profile's learning rates and DiffCMR's sampling; others as they are)."""
    from diffcmr_core.study.methods.convergence import tuned

    return tuned(get_profile(name), train_missing=False)


def _submit(args: argparse.Namespace) -> None:

    with shard.launched() as ranks:
        report = submit(
            _chosen(args.profile),
            split=args.split,
            out=args.out,
            data=args.data,
            method=args.method,
            progress=not args.quiet,
        )
        if ranks.main:
            print(report.summary() + (f" ({ranks.world} ranks)" if ranks.world > 1 else ""))


def _evaluate(args: argparse.Namespace) -> None:

    profile = _chosen(args.profile)
    with shard.launched() as ranks:
        evaluation_steps(
            profile, ablation_too=not args.no_ablation, progress=not args.quiet, force=args.force
        )
        if ranks.main:
            print(
                f"evaluate: profile {profile.name} evaluated on {ranks.world} rank(s); "
                f"`python -m diffcmr_core study --profile {profile.name}` writes the tables "
                "and figures from it"
            )


def _score(args: argparse.Namespace) -> None:

    scores = score_submission(
        args.submission, args.truth, split=args.split, progress=not args.quiet
    )
    out = Path(args.out) if args.out else Path(args.submission)
    write_table(scores.files, out / "scores_files.csv")
    write_table(scores.sets, out / "scores_sets.csv")
    write_table(scores.ranking, out / "scores_ranking.csv")
    print(to_markdown(scores.sets))
    print()
    print(to_markdown(scores.ranking))
    for path in scores.missing:
        print(f"missing: {path}")
    for problem in scores.failed:
        print(f"not scored: {problem}")
    for path in scores.unmatched:
        print(f"no fully sampled file to score against: {path}")
    if scores.missing or scores.failed:
        print(
            f"{len(scores.files)} files scored, {len(scores.missing)} missing, "
            f"{len(scores.failed)} not scored (the means leave them out; see above)"
        )
    print(f"tables in {out}: scores_files.csv, scores_sets.csv, scores_ranking.csv")


def _readme(args) -> None:

    root = repo_root()
    for page, changed in refresh_pages(root).items():
        if changed:
            print(f"{page.relative_to(root)}: {', '.join(changed)} regenerated")
    print("README and docs: generated blocks up to date")


def _weights(args) -> None:
    import json

    from diffcmr_core.study.store.weights import ship

    path = ship(_chosen(args.profile))
    for name, entry in json.loads(path.read_text())["files"].items():
        print(f"{path.parent / name}: {entry['bytes'] / 1e6:.1f} MB, step {entry['step']}")
    print(f"manifest: {path}")


def parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    top = argparse.ArgumentParser(prog="diffcmr", description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    _add_study_commands(sub)
    _add_phantom_command(sub)
    _add_challenge_commands(sub)
    _add_other_commands(sub)
    return top


SPLITS = ("ValidationSet", "TrainingSet")


def _command(sub, name: str, run, help: str, *, profile: bool = True, quiet: bool = True):
    """The sub-command ``name`` that calls ``run(args)``, with ``--profile`` (default ``quick``)
    and ``--quiet`` (no progress bars) where it takes them."""
    p = sub.add_parser(name, help=help)
    if profile:
        p.add_argument("--profile", type=_profile, default="quick", help=" | ".join(PROFILES))
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)
    return p


def _add_phantom_command(sub) -> None:
    """``phantom``: a profile's synthetic tree written anywhere."""
    p = _command(sub, "phantom", _phantom, "write a profile's synthetic CMRxRecon tree")
    p.add_argument("out", help="the folder to write (it will hold MultiCoil/ and SingleCoil/)")
    p.add_argument(
        "--cases",
        type=_positive_int,
        help="TrainingSet cases (default: the profile's; at least 2, to split off validation)",
    )
    p.add_argument(
        "--val-cases",
        type=_count,
        help="ValidationSet cases (default: the profile's share of --cases)",
    )
    p.add_argument(
        "--frames", type=_positive_int, help="at most this many cine frames (over one cycle)"
    )
    p.add_argument("--slices", type=_positive_int, help="at most this many slices per file")
    p.add_argument(
        "--force",
        action="store_true",
        help="write even into a folder holding files the phantom did not write "
        "(same-named files are replaced; by default such a folder is refused)",
    )


def _add_study_commands(sub) -> None:
    """``study``, ``seeds``, ``cost``."""
    p = _command(sub, "study", _study, "run the study (all notebooks) for a profile", quiet=False)
    p.add_argument("--force", action="store_true", help="recompute every step")
    p.add_argument("--only", nargs="*", help="notebook names to run (e.g. 04_evaluation)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list every notebook and cached step, fresh or stale and why; compute nothing",
    )

    p = _command(
        sub,
        "seeds",
        _seeds,
        "retrain and evaluate every method with several seeds; "
        "mean and standard deviation per method, task and factor",
    )
    p.add_argument(
        "--seeds",
        type=_seed,
        nargs="+",
        default=[0, 1, 2],
        help="distinct training seeds (0 to 2^63 - 1)",
    )
    p.add_argument("--threads", type=_positive_int, help="torch threads (a separate run per count)")
    p.add_argument("--factor", nargs="*", type=_factor, help="only these task:acc (e.g. cine:4)")

    p = _command(sub, "cost", _cost, "FLOPs and predicted time of a profile's study", quiet=False)
    p.add_argument(
        "--tflops",
        type=_positive_float,
        nargs="*",
        default=[50.0, 100.0, 200.0],
        help="sustained rates (TFLOP/s) to predict the time at",
    )
    p.add_argument(
        "--measured",
        type=_positive_float,
        nargs="+",
        metavar="SECONDS",
        help="measured seconds of each counted notebook (03, 04, 05, 08, 09), "
        "in that order: print the sustained rate of each",
    )
    p.add_argument(
        "--ranks",
        type=_positive_int,
        default=1,
        help="processes (GPUs) the evaluation and the ablation are split over "
        "(torchrun): the time each takes",
    )


def _add_challenge_commands(sub) -> None:
    """``submit``, ``evaluate``, ``score``: the ones that run under ``torchrun`` and score."""
    p = _command(
        sub,
        "submit",
        _submit,
        "reconstruct a split with a profile's trained models and "
        "write a challenge submission (img4ranking, MATLAB v5)",
    )
    p.add_argument("--split", default="ValidationSet", choices=SPLITS)
    p.add_argument(
        "--out", help="submission folder (default runs/<profile>/submission/<method>/<split>)"
    )
    p.add_argument("--data", help="CMRxRecon tree (default: the profile's)")
    p.add_argument("--method", default="diffcmr", choices=methods.names())

    p = _command(
        sub,
        "evaluate",
        _evaluate,
        "evaluate a profile's fitted models (Tables 2-4, both "
        "protocols); split over the ranks under torchrun",
    )
    p.add_argument("--no-ablation", action="store_true", help="leave out Table 4")
    p.add_argument("--force", action="store_true", help="recompute (the cached results are redone)")

    p = _command(
        sub, "score", _score, "score a submission folder the challenge's way", profile=False
    )
    p.add_argument(
        "--submission", required=True, help="the folder holding MultiCoil/ and SingleCoil/"
    )
    p.add_argument(
        "--truth",
        required=True,
        help="a CMRxRecon tree with the split's FullSample (the phantom's: <data>/ValidationTruth)",
    )
    p.add_argument("--split", default="ValidationSet", choices=SPLITS)
    p.add_argument("--out", help="where the tables go (default: the submission folder)")


def _add_other_commands(sub) -> None:
    """``readme``, ``train``."""
    _command(
        sub,
        "readme",
        _readme,
        "regenerate the README's generated blocks (profiles, evidence) from figures/",
        profile=False,
        quiet=False,
    )
    _command(
        sub,
        "weights",
        _weights,
        "ship a finished study's cine networks (DiffCMR, U-Net) to weights/<profile>/ with a "
        "manifest (SHA-256, commit, step, validation scores)",
        quiet=False,
    )
    p = _command(
        sub,
        "train",
        _train,
        "train one model (torchrun: python -m torch.distributed.run "
        "--nproc_per_node=N -m diffcmr_core train ...)",
        profile=False,
        quiet=False,
    )
    p.add_argument("method", choices=methods.names(network=True))
    p.add_argument("pairs", help="a pairs file (pairs_<task>_accNN.h5)")
    p.add_argument("out_dir")
    p.add_argument("config", help='JSON: {"train": {...TrainConfig...}, "model": {...}}')


def main(argv: list[str] | None = None) -> None:
    """Run one command; an error of ours (a bad file, folder or value: :class:`DiffCMRError`)
    ends it with its message and exit status 2, not a traceback."""

    args = parser().parse_args(argv)
    try:
        args.run(args)
    except DiffCMRError as err:
        print(f"diffcmr {args.command}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main(sys.argv[1:])
