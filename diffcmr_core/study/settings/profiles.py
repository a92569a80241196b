"""Profiles: one typed configuration of the whole study, scaled from a CPU toy to the paper.

* ``paper``: §3.1-3.2 and, where the paper is silent, the public code (xmed-lab/DiffCMR), on
  the real data: for a user with the data and a GPU.
* ``gpu``: the paper's network at 128 x 128 on the phantom, sized for one GPU.
* ``quick`` (default): the whole study in minutes on a 2-core CPU (the README gives the time).
* ``cpu``: the evidence study (notebook 10): the quick networks on separate training, selection
  and test subjects, learning rates and DiffCMR's sampling chosen on the selection subjects,
  three seeds, cine 4x; notebooks 01-05 and 10 only.
* ``smoke``: a seconds-long run of every notebook for nbval in CI.

Where the short profiles deviate from §3.2 (why, and the measurements: ``docs/profiles.md``):

* E's output read as v (``prediction="v"``); ``paper`` keeps eps.
* Eq. 5 weighted by 1 / abar_t (``loss_weighting="v"``); ``paper`` keeps Eq. 5.
* Training draws t from all 1000 base steps; a cosine learning-rate decay and a short EMA
  (``cpu``: warm-up, a constant rate and a linear decay on a fixed budget, EMA 0.999).
* ``quick``: one model per task for all factors (``shared_models``), T = 20 for the tables, an
  image region (``roi``) and 10 central lines that keep the real task's difficulty.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffcmr_core.data.cmrxrecon import ACCS, TASKS
from diffcmr_core.data.pairs import PreprocessConfig
from diffcmr_core.data.phantom import PhantomConfig
from diffcmr_core.method.classical import CSConfig
from diffcmr_core.method.networks import DiffCMRConfig, UNetConfig
from diffcmr_core.method.settings import NetworkSettings, TrainConfig
from diffcmr_core.method.systems import CGANConfig
from diffcmr_core.study.settings.layout import RunLayout
from diffcmr_core.study.settings.names import notebook, table


@dataclass(frozen=True)
class EvalConfig:
    """Inference protocol for the tables, the figures and the ablation."""

    n_val: int | None = None  # None: the whole validation subset of the pairs
    # files (PreprocessConfig.n_val_subset, 240)
    steps: int = 1000  # T
    rounds: int = 4  # R
    sampler: str = "ddpm"  # the tables' sampler: Alg. 2 ("ddpm", on a respaced chain when
    # T < 1000), or "ddim" / "dpm++" (an evidence profile's choice on its selection subjects)
    batch: int = 60  # slices per sampling batch (x R in the network)
    ablation_steps: tuple[int, ...] = (20, 100, 500, 1000)
    ablation_rounds: tuple[int, ...] = (1, 2, 4, 8)
    ablation_n_val: int | None = None
    # notebook 08: (sampler, T, R); the first is the paper protocol, the reference;
    # "ddpm" with a smaller T is Alg. 2 on a respaced chain
    fast_settings: tuple[tuple[str, int, int], ...] = (
        ("ddpm", 1000, 4),
        ("ddpm", 25, 4),
        ("ddim", 25, 4),
        ("ddim", 50, 2),
        ("dpm++", 10, 4),
        ("dpm++", 25, 4),
        ("dpm++", 50, 2),
    )
    seed: int = 0
    # DiffCMR trained on the crop pairs of notebook 08 (data consistency): its iterations (None:
    # the profile's DiffCMR iterations); the comparison is of samplers on one model
    fast_model_iterations: int | None = None
    # the public code's choices where they differ from the paper's text (see the README's
    # "where we depart" list): Alg. 2's beta-tilde (paper) or beta (public); x0 clipped to
    # [-1, 1] at each step (public) or not (Alg. 2 as printed); bf16 or fp32 (public) network on
    # CUDA; EMA (ours) or raw (the public inference script) weights. No clipping by default: the
    # public code clips to the data's range because it divides each target by its own maximum;
    # our pairs divide both images by the input's maximum (nothing of the target leaks into the
    # input), so targets exceed 1 (quick: the target's peak is a median 1.5x the input's, 2-2.6 %
    # of its pixels lie above 1) and clipping truncates them (figures/quick/public_choices.md
    # measures both, notebook 05)
    variance: str = "beta_tilde"
    clip: bool = False
    precision: str = "bf16"
    weights: str = "ema"

    def sampling(self) -> dict[str, object]:
        """The keyword arguments of :func:`~diffcmr_core.method.inference.reconstruct` that
        say how DiffCMR samples (everything but T, R and the slices)."""
        return {"variance": self.variance, "clip": self.clip, "precision": self.precision}


@dataclass(frozen=True)
class EvidenceConfig:
    """The evidence study (notebook 10, :mod:`~diffcmr_core.study.experiments.evidence`): every
    network trained on a fixed budget with its learning rate chosen on the selection cases,
    checkpoints along the way scored against their training compute, the final points repeated
    over training seeds.

    A network trains its ``iterations`` (warm-up, stable, decay:
    :func:`~diffcmr_core.study.methods.convergence.budget_plan`): a constant rate in chunks of
    ``snapshot_every`` steps, each EMA snapshot scored on the selection slices (DiffCMR with
    ``validation_sampler``), then the last ``decay_fraction`` of the steps (whole chunks) with
    the rate falling linearly to 0; the final model is the decayed one, scored likewise. Whether
    the budget sufficed is a test on the stable phase's selection curve: the slope of its last
    ``trend_fraction`` (least squares, 95 % t interval); "still rising" when the interval lies
    above 0. Nothing stops early, so snapshot noise cannot stop a run. With ``lr_factors``, each
    network's rate is chosen among its configured rate times each factor (seed 0, the best
    final selection PSNR)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    factors: tuple[tuple[str, int], ...] = (("cine", 4),)  # where the seeds are repeated
    decay_fraction: float = 0.2
    trend_fraction: float = 0.5
    lr_factors: tuple[float, ...] = ()  # () : the configured rates, no sweep
    lr_extend: int = 2  # rates tried beyond an edge of the sweep while the best is there
    # the budget (steps) at which the sweep compares rates (None: each network's own). A
    # network whose budget is longer trains its table run (seed 0) on from the chosen rate's
    # sweep run: its constant phase is the same run up to the sweep's decay, bit for bit
    # (convergence.train_to_budget); run folders then carry the budget (``lr0.002_6000steps``)
    sweep_iterations: int | None = None
    lr_chosen: tuple[str, ...] = ()  # the networks carrying their sweep's choice, and
    sampling_chosen: bool = False  # the tables carrying DiffCMR's best (``convergence.tuned``)
    # DiffCMR at its best: each (sampler, T) run with max(best_rounds) rounds on the selection
    # slices, scored at each R of ``best_rounds``; the best becomes the tables' setting
    # (``convergence.best_sampling``; () : the evaluation's own)
    best_samplers: tuple[tuple[str, int], ...] = ()
    best_rounds: tuple[int, ...] = (1, 2, 4, 8, 16)
    n_val: int | None = None  # selection slices of the curves (None: all)
    validation_sampler: tuple[str, int, int] = ("dpm++", 10, 4)
    # the fastest of these (by T x R) within ``within_db`` of the reference on the ablation's
    # slices is DiffCMR's setting for the compute curve (none within: the closest, said so)
    reference: tuple[str, int, int] = ("ddpm", 1000, 4)
    # (at most 100 evaluations: every snapshot of every seed is scored with the chosen one)
    candidates: tuple[tuple[str, int, int], ...] = (
        ("dpm++", 10, 4),
        ("dpm++", 20, 2),
        ("ddim", 20, 4),
        ("dpm++", 20, 4),
        ("ddim", 50, 2),
    )
    within_db: float = 0.2
    # networks whose runs do not depend on each other train in this many processes at once
    # on a CPU, torch's threads shared among them (methods.side_by_side); 1: in turn
    train_workers: int = 2


@dataclass(frozen=True)
class Profile:
    """Everything one run of the study is: its data, preprocessing, evaluation, the methods it
    runs with their settings and, for the evidence study, its convergence settings (see the
    module)."""

    name: str
    phantom: PhantomConfig
    preprocess: PreprocessConfig
    evaluation: EvalConfig
    # each method's settings where it has any: a network's NetworkSettings (its configuration
    # and training), PI-CS's CSConfig (else its default, study.methods.settings)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    tasks: tuple[str, ...] = TASKS
    accs: tuple[int, ...] = ACCS
    methods: tuple[str, ...] = ("unet", "cgan", "diffcmr", "cs")  # names in study.methods
    real_data: bool = False  # use $CMRXRECON_ROOT / data/CMRxRecon when present
    data_name: str | None = None  # share another profile's data and pairs (seeds)
    # its own pairs under this name, of ``data_name``'s phantom (another preprocessing of the
    # same subjects: the evidence study's data-consistency networks)
    pairs_name: str | None = None
    shared_models: bool = False  # one model per task and method, trained on the
    # pairs of all its factors (the paper: one per factor)
    budget_minutes: float = 15.0
    evidence: EvidenceConfig | None = None  # notebook 10's study (None: skipped)
    notebooks: tuple[str, ...] | None = None  # the notebooks ``make study`` runs (None: all)

    def network(self, method: str) -> NetworkSettings:
        """The settings of the trained network ``method`` (its configuration and training)."""
        found = self.settings.get(method)
        if not isinstance(found, NetworkSettings):
            raise ValueError(
                f"profile {self.name} gives no network settings for {method!r} "
                f"(settings[{method!r}] is {type(found).__name__}, not NetworkSettings)"
            )
        return found

    def with_training(self, method: str, **changes: Any) -> Profile:
        """This profile with ``method``'s training settings changed (``iterations=...``)."""
        net = self.network(method)
        train = dataclasses.replace(net.train, **changes)
        return dataclasses.replace(
            self, settings={**self.settings, method: dataclasses.replace(net, train=train)}
        )

    def fast_train_config(self) -> TrainConfig:
        """The training settings of notebook 08's DiffCMR on crop pairs: the profile's, with
        ``EvalConfig.fast_model_iterations`` when set."""
        n, t = self.evaluation.fast_model_iterations, self.network("diffcmr").train
        return (
            t
            if n is None
            else dataclasses.replace(t, iterations=n, checkpoint_every=min(t.checkpoint_every, n))
        )


def networks(
    diffcmr: DiffCMRConfig,
    unet: UNetConfig,
    *,
    train_diffcmr: TrainConfig,
    train_unet: TrainConfig,
    train_cgan: TrainConfig,
    cgan_l1_weight: float = 100.0,
) -> dict[str, NetworkSettings]:
    """The settings of the study's three networks: DiffCMR, the U-Net, and the cGAN, whose
    generator is that U-Net, with pix2pix's weight of L1 beside the adversarial loss."""
    return {
        "diffcmr": NetworkSettings(diffcmr, train_diffcmr),
        "unet": NetworkSettings(unet, train_unet),
        "cgan": NetworkSettings(CGANConfig(generator=unet, l1_weight=cgan_l1_weight), train_cgan),
    }


# the real data's anatomy, coils and noise on a 3 mm grid (read-out 256 samples, 81-123 lines);
# 10 central lines keep the mask's sampled fraction close to the real data's (24 of ~204)
_QUICK_PHANTOM = PhantomConfig(
    n_cases=6,
    n_val_cases=2,
    pixel_mm=3.0,
    acs_lines=10,
    cine_frames=4,
    sax_slices=4,
    lax_slices=2,
    mapping_slices=3,
)
# the whole phase field of view (81-123 lines of 3 mm) and the central 5/16 of the oversampled
# read-out (240 mm, the smallest phase field of view): 7.5-11.5 x 7.5 mm per pixel at 32 x 32
_QUICK_PRE = PreprocessConfig(pad_to=256, size=32, roi=(1.0, 0.3125))
_QUICK_NET = DiffCMRConfig(
    image_size=32,
    channels=16,
    channel_mult=(1, 2, 2),
    num_res_blocks=1,
    attention_resolutions=(8,),
    num_heads=2,
    rrdb_blocks=1,
    rrdb_channels=16,
    rrdb_growth=8,
    prediction="v",
    train_steps=1000,
    loss_weighting="v",
)


def _cpu_train(iterations: int, lr: float, *, chunk: int) -> TrainConfig:
    """The ``cpu`` profile's training of a network: batch 8, ``iterations`` steps of a constant
    rate after 100 warm-up steps then a linear decay (``EvidenceConfig.decay_fraction``), EMA
    0.999, a snapshot (and a checkpoint) every ``chunk`` steps."""
    return TrainConfig(
        iterations=iterations,
        batch_size=8,
        lr=lr,
        ema_decay=0.999,
        warmup=100,
        log_every=20,
        checkpoint_every=chunk,
        snapshot_every=chunk,
    )


# the smoke profile's training of each network: eight steps, snapshots at 4 and 8
_SMOKE_TRAIN = TrainConfig(
    iterations=8, batch_size=4, lr=1e-3, log_every=2, checkpoint_every=8, snapshot_every=4
)

PROFILES: dict[str, Profile] = {
    "paper": Profile(
        name="paper",
        phantom=PhantomConfig(n_cases=120, n_val_cases=60),
        preprocess=PreprocessConfig(pad_to=512, size=128, resize="public"),
        settings={
            **networks(
                DiffCMRConfig.paper(),
                UNetConfig(channels=32, depth=4),
                train_diffcmr=TrainConfig(
                    iterations=120_000,
                    batch_size=6,
                    lr=1e-5,
                    ema_decay=0.9999,
                    ema_warmup=False,
                    precision="fp32",
                    checkpoint_every=2000,
                    log_every=50,
                ),
                train_unet=TrainConfig(
                    iterations=50_000, batch_size=6, lr=1e-4, log_every=50, checkpoint_every=2000
                ),
                train_cgan=TrainConfig(
                    iterations=50_000, batch_size=6, lr=2e-4, log_every=50, checkpoint_every=2000
                ),
            ),
        },
        evaluation=EvalConfig(precision="fp32"),
        real_data=True,
        budget_minutes=6 * 24 * 60,
    ),
    "gpu": Profile(
        name="gpu",
        phantom=PhantomConfig(
            n_cases=24,
            pixel_mm=3.0,
            acs_lines=10,
            cine_frames=8,
            sax_slices=6,
            lax_slices=3,
            mapping_slices=3,
        ),
        preprocess=PreprocessConfig(pad_to=256, size=128),
        settings={
            **networks(
                dataclasses.replace(
                    DiffCMRConfig.paper(), prediction="v", train_steps=1000, loss_weighting="v"
                ),
                UNetConfig(channels=32, depth=4),
                train_diffcmr=TrainConfig(
                    iterations=2000,
                    batch_size=6,
                    lr=1e-4,
                    ema_decay=0.999,
                    lr_schedule="cosine",
                    checkpoint_every=1000,
                    log_every=20,
                ),
                train_unet=TrainConfig(iterations=2000, batch_size=6, lr=3e-4, log_every=20),
                train_cgan=TrainConfig(iterations=2000, batch_size=6, lr=2e-4, log_every=20),
            ),
        },
        evaluation=EvalConfig(n_val=48, steps=200, rounds=4, batch=48, ablation_n_val=16),
        budget_minutes=25.0,
    ),
    "quick": Profile(
        name="quick",
        phantom=_QUICK_PHANTOM,
        preprocess=_QUICK_PRE,
        settings={
            **networks(
                _QUICK_NET,
                UNetConfig(channels=16, depth=3),
                train_diffcmr=TrainConfig(
                    iterations=500,
                    batch_size=8,
                    lr=1e-3,
                    ema_decay=0.99,
                    lr_schedule="cosine",
                    log_every=10,
                    checkpoint_every=100,
                ),
                train_unet=TrainConfig(
                    iterations=300, batch_size=8, lr=2e-3, log_every=10, checkpoint_every=100
                ),
                train_cgan=TrainConfig(
                    iterations=300, batch_size=8, lr=1e-3, log_every=10, checkpoint_every=100
                ),
            ),
            "cs": CSConfig(tuning_slices=2),
        },
        shared_models=True,
        evaluation=EvalConfig(
            n_val=16,
            steps=20,
            rounds=4,
            batch=16,
            ablation_steps=(10, 20, 50, 100),
            ablation_n_val=8,
            fast_model_iterations=300,
            fast_settings=(
                ("ddpm", 100, 4),
                ("ddpm", 20, 4),
                ("ddim", 20, 4),
                ("dpm++", 10, 4),
                ("dpm++", 20, 4),
            ),
        ),
    ),
    # the evidence study: the quick profile's networks on more cases (20 training, 2 selection,
    # 10 test subjects), each network's learning rate swept, cine 4x, three seeds
    "cpu": Profile(
        name="cpu",
        phantom=dataclasses.replace(_QUICK_PHANTOM, n_cases=32, n_val_cases=3),
        preprocess=dataclasses.replace(
            _QUICK_PRE, val_fraction=12 / 32, selection_cases=2, n_val_subset=480
        ),
        settings={
            **networks(
                _QUICK_NET,
                UNetConfig(channels=16, depth=3),
                # the sweep's centres: the rates a first sweep chose (docs/profiles.md)
                train_diffcmr=_cpu_train(3000, 4e-3, chunk=300),
                train_unet=_cpu_train(3000, 4e-3, chunk=300),
                train_cgan=_cpu_train(3000, 2e-3, chunk=300),
            ),
        },
        tasks=("cine",),
        accs=(4,),
        evaluation=EvalConfig(
            n_val=None,
            steps=100,
            rounds=4,
            batch=24,
            ablation_steps=(20, 100, 1000),
            ablation_rounds=(1, 2, 4),
            ablation_n_val=20,
        ),
        evidence=EvidenceConfig(
            lr_factors=(0.5, 1.0, 2.0),
            best_samplers=(("ddpm", 20), ("ddim", 20), ("dpm++", 10), ("dpm++", 20)),
        ),
        notebooks=(
            notebook("01_data_exploration"),
            notebook("02_preprocessing"),
            notebook("03_training"),
            notebook("04_evaluation"),
            notebook("05_ablation"),
            notebook("10_evidence"),
        ),
        budget_minutes=120.0,
    ),
    "smoke": Profile(
        name="smoke",
        phantom=dataclasses.replace(
            _QUICK_PHANTOM,
            n_cases=3,
            n_val_cases=1,
            n_coils=4,
            cine_frames=2,
            sax_slices=2,
            lax_slices=1,
            mapping_slices=1,
        ),
        preprocess=_QUICK_PRE,
        settings={
            **networks(
                dataclasses.replace(_QUICK_NET, channels=8, num_heads=1),
                UNetConfig(channels=8, depth=2),
                train_diffcmr=_SMOKE_TRAIN,
                train_unet=_SMOKE_TRAIN,
                train_cgan=_SMOKE_TRAIN,
            ),
            "cs": CSConfig(weights=(1e-2, 1e-1), iteration_grid=(5, 10), tuning_slices=1),
        },
        shared_models=True,
        evidence=EvidenceConfig(
            seeds=(0, 1),
            decay_fraction=0.25,  # (no learning-rate sweep, no sampling choice: cpu-dry's)
            n_val=4,
            validation_sampler=("ddim", 3, 2),
            reference=("ddpm", 10, 2),
            candidates=(("ddim", 3, 2), ("dpm++", 5, 2)),
        ),
        evaluation=EvalConfig(
            n_val=4,
            steps=10,
            rounds=2,
            batch=4,
            ablation_steps=(5, 10),
            ablation_rounds=(1, 2),
            ablation_n_val=2,
            fast_settings=(("ddpm", 20, 2), ("ddpm", 5, 2), ("ddim", 5, 2), ("dpm++", 5, 2)),
        ),
        budget_minutes=5.0,
    ),
}


DRY = "-dry"


def _dry_preprocess(pre: PreprocessConfig, size: int) -> PreprocessConfig:
    """A dry run's preprocessing: ``size``, the multi-coil files; of its three cases one
    trains, one selects (where the profile selects) and one tests."""
    selects = {"val_fraction": 2 / 3, "selection_cases": 1} if pre.selection_cases else {}
    return dataclasses.replace(pre, size=size, coils=("MultiCoil",), **selects)


def dry_profile(profile: Profile) -> Profile:
    """The same profile at a few iterations, steps and slices: its networks (at half the image
    size, so that the paper's network runs in minutes on a 2-core CPU), data format and every
    notebook's code path unchanged, on one factor (4x) and the multi-coil files, so a shape,
    memory or configuration error of the profile shows on a CPU in minutes (CI runs
    ``gpu-dry``). Its results mean nothing."""
    ev = profile.evaluation
    curves = profile.evidence is not None  # two chunks of one step: the convergence test runs
    few = dict(
        iterations=2 if curves else 1,
        batch_size=1,
        log_every=1,
        checkpoint_every=1,
        snapshot_every=1 if curves else 0,
    )
    settings = tuple(dict.fromkeys((s, min(t, 3), min(r, 2)) for s, t, r in ev.fast_settings))
    size = max(32, profile.preprocess.size // 2)
    return dataclasses.replace(
        profile,
        name=profile.name + DRY,
        real_data=False,
        budget_minutes=30.0,
        accs=(4,),
        preprocess=_dry_preprocess(profile.preprocess, size),
        settings={
            name: _dry_settings(s, _dry_few(s, few, profile.evidence), size)
            for name, s in profile.settings.items()
        },
        phantom=dataclasses.replace(
            profile.phantom,
            n_cases=3,
            n_val_cases=0,
            cine_frames=1,
            sax_slices=2,
            lax_slices=1,
            mapping_slices=1,
        ),
        evidence=_dry_evidence(profile.evidence, few["iterations"]),
        evaluation=dataclasses.replace(
            ev,
            n_val=1,
            steps=2,
            rounds=2,
            batch=1,
            ablation_steps=(2, 3),
            ablation_rounds=(1, 2),
            ablation_n_val=1,
            fast_settings=settings,
        ),
    )


def _dry_evidence(evc: EvidenceConfig | None, iterations: int) -> EvidenceConfig | None:
    """A dry run's evidence settings: two seeds and rates, the smallest samplers, one slice;
    the sweep (when the profile sets its budget) at the dry networks' ``iterations``."""
    if evc is None:
        return None
    return dataclasses.replace(
        evc,
        seeds=evc.seeds[:2],
        lr_factors=evc.lr_factors[:2],
        sweep_iterations=None if evc.sweep_iterations is None else iterations,
        best_samplers=tuple((s, min(t, 3)) for s, t in evc.best_samplers[:2]),
        best_rounds=(1, 2),
        n_val=1,
        reference=("ddpm", 3, 2),
        candidates=(("ddim", 2, 2), ("dpm++", 2, 2)),
        validation_sampler=("ddim", 2, 2),
    )


def _dry_few(settings: Any, few: dict[str, int], evidence: EvidenceConfig | None) -> dict:
    """A dry network's training: ``few`` steps, twice as many for a network whose budget is
    longer than the sweep's (``sweep_iterations``), so that a dry run goes on from a sweep run
    as the profile's own run does."""
    longer = (
        evidence is not None
        and evidence.sweep_iterations is not None
        and isinstance(settings, NetworkSettings)
        and settings.train.iterations > evidence.sweep_iterations
    )
    return {**few, "iterations": 2 * few["iterations"]} if longer else few


def _dry_settings(settings: Any, few: dict[str, int], size: int) -> Any:
    """A method's settings in a dry run: a network trained for ``few`` steps, at ``size`` when
    its configuration has an image size; other settings unchanged."""
    if not isinstance(settings, NetworkSettings):
        return settings
    model = settings.model
    if "image_size" in {f.name for f in dataclasses.fields(model)}:
        model = dataclasses.replace(model, image_size=size)
    return NetworkSettings(model, dataclasses.replace(settings.train, **few))


def get_profile(name: str | None = None) -> Profile:
    """A profile by name; ``None`` reads ``$DIFFCMR_PROFILE`` (default ``quick``). A name ending
    in ``-dry`` (e.g. ``gpu-dry``) is that profile's :func:`dry_profile`."""
    name = name or os.environ.get("DIFFCMR_PROFILE", "quick")
    base = name[: -len(DRY)] if name.endswith(DRY) else name
    if base not in PROFILES:
        raise ValueError(
            f"unknown profile {name!r}; choose one of {sorted(PROFILES)} "
            f"(or <name>{DRY} for a dry run)"
        )
    return dry_profile(PROFILES[base]) if base != name else PROFILES[base]


def stamp(profile: Profile) -> str:
    """A profile's whole configuration, as JSON (what a seed study's variants share; a step's
    cache is keyed by :func:`step_stamp`, what the step reads)."""
    return json.dumps(dataclasses.asdict(profile), sort_keys=True, default=list)


# what the data a step reads depends on: the tree, the slices and the runs' shape
DATA_FIELDS = ("phantom", "preprocess", "tasks", "accs", "real_data", "data_name", "shared_models")


def _plain(value: object) -> object:
    """``value`` as plain JSON data (dataclasses as dicts, tuples as lists)."""

    def plain(obj: object) -> object:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return dataclasses.asdict(obj)
        return list(obj)  # tuples, sets

    return json.loads(json.dumps(value, sort_keys=True, default=plain))


def method_settings(profile: Profile, name: str) -> dict:
    """What a method's results depend on in ``profile``: the settings the profile gives it
    (None: the method's default, which is its code) and, for a network of an evidence profile,
    the rule that stops its training."""
    given = profile.settings.get(name)
    out: dict[str, object] = {"settings": _plain(given)}
    if isinstance(given, NetworkSettings) and profile.evidence is not None:
        evc = profile.evidence
        out["stopping"] = _plain(
            {k: getattr(evc, k) for k in ("decay_fraction", "n_val", "validation_sampler")}
        )
    return out


SCORING_FIELDS = ("batch", "seed", "variance", "clip", "precision")  # what a training
# record's scores read of the evaluation (its sampler is the evidence settings')


def step_stamp(
    profile: Profile,
    uses: tuple[str, ...] | None = None,
    extra: object = None,
    *,
    evaluation: tuple[str, ...] | None = None,
) -> dict:
    """What one step of ``profile`` reads, as plain JSON data (its cache's key): the data's
    settings, the evaluation protocol (only its fields ``evaluation`` when given), the settings
    of each method in ``uses`` (None: RAW and every method of the profile) and the step's own
    ``extra`` settings. Adding a method to a profile changes the key of the steps that use it
    and of no other."""
    uses = ("raw", *profile.methods) if uses is None else uses
    ev = _plain(profile.evaluation)
    return {
        "data": _plain({f: getattr(profile, f) for f in DATA_FIELDS}),
        "evaluation": ev if evaluation is None else {k: ev[k] for k in evaluation},
        "methods": {name: method_settings(profile, name) for name in uses},
        "extra": _plain(extra),
    }


def stamp_changes(old: object, new: dict) -> list[str]:
    """Which parts of a step's key differ between a stored ``old`` and ``new``
    (``data``, ``evaluation``, ``methods.<name>``, ``extra``), for saying why a step is stale."""
    if not isinstance(old, dict):
        return ["the whole key (made by an older version)"]
    out = [k for k in ("data", "evaluation", "extra") if old.get(k) != new.get(k)]
    old_m, new_m = old.get("methods") or {}, new["methods"]
    out += [f"methods.{m}" for m in sorted(set(old_m) | set(new_m)) if old_m.get(m) != new_m.get(m)]
    return out


def repo_root() -> Path:
    """The study's folder: ``$DIFFCMR_HOME``, else the checkout holding this package."""
    if "DIFFCMR_HOME" in os.environ:
        return Path(os.environ["DIFFCMR_HOME"])
    here = Path(__file__).resolve().parents[3]  # diffcmr_core/study/settings/profiles.py
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def real_data_root(root: Path) -> Path | None:
    """The real CMRxRecon tree if one is configured: ``$CMRXRECON_ROOT``, else
    ``<root>/data/CMRxRecon`` when it exists."""
    env = os.environ.get("CMRXRECON_ROOT")
    if env:
        return Path(env)
    default = root / "data" / "CMRxRecon"
    return default if default.is_dir() else None


@dataclass(frozen=True)
class Paths:
    """Where a profile's data, runs and figures live. Only a profile with ``real_data`` reads
    the real tree; the others always use their own synthetic phantom (and say so when a real
    tree is configured)."""

    profile: str
    root: Path
    uses_real_data: bool = False
    data_profile: str | None = None  # whose synthetic data and pairs (default: own)
    pairs_profile: str | None = None  # whose pairs, when not the data's (default: data's)
    figures_dir: Path | None = None  # default: figures/<profile> (see notebook.start)
    shared_models: bool = False  # one model per task for every factor
    model_tags: tuple[tuple[str, str], ...] = ()  # (method, tag of its run folder)

    @property
    def real_data(self) -> Path | None:
        """The real CMRxRecon tree, when this profile reads it and one is configured."""
        return real_data_root(self.root) if self.uses_real_data else None

    def describe(self) -> str:
        """One line: which data this profile reads (and a configured real tree it ignores)."""
        if self.is_synthetic:
            line = f"profile {self.profile}: synthetic phantom at {self.data}"
            ignored = real_data_root(self.root)
            if ignored is not None:
                line += (
                    f" (the real tree at {ignored} is used only by profiles with real_data, "
                    "e.g. paper)"
                )
            return line
        return f"profile {self.profile}: real CMRxRecon data at {self.data}"

    @property
    def data(self) -> Path:
        """The CMRxRecon tree used: the real one when configured, else the synthetic one."""
        return self.real_data or self.root / "data" / "synthetic" / (
            self.data_profile or self.profile
        )

    @property
    def is_synthetic(self) -> bool:
        """Whether the profile runs on its phantom."""
        return self.real_data is None

    @property
    def pairs(self) -> Path:
        """The folder of the paired slices (``pairs_<task>_accNN.h5``)."""
        return (
            self.root / "data" / "pairs" / (self.pairs_profile or self.data_profile or self.profile)
        )

    @property
    def runs(self) -> Path:
        """The folder of checkpoints, caches and executed notebooks."""
        return self.root / "runs" / self.profile

    @property
    def figures(self) -> Path:
        """The folder of the committed figures and tables."""
        return self.figures_dir or self.root / "figures" / self.profile

    @property
    def layout(self) -> RunLayout:
        """Every path under the run folder (:mod:`~diffcmr_core.study.settings.layout`)."""
        return RunLayout(self.runs, self.shared_models)

    @property
    def data_layout(self) -> RunLayout:
        """The run folder of the profile whose data this one reads (itself, or for a seed
        variant the profile it varies): what depends on the data alone is kept there once."""
        return RunLayout(self.runs.parent / (self.data_profile or self.profile), self.shared_models)

    def model_dir(self, task: str, acc: int, method: str) -> Path:
        """The checkpoint folder of the model that reconstructs ``task`` at ``acc``
        (:meth:`~diffcmr_core.study.settings.layout.RunLayout.model`), tagged with its learning
        rate in a profile that sweeps it."""
        return self.layout.model(task, acc, method, dict(self.model_tags).get(method))

    def table(self, name: str) -> Path:
        """The CSV file of the registered table ``name`` in this profile's figures."""

        return table(self.figures, name)

    def eval_dir(self, task: str, acc: int) -> Path:
        """The evaluation folder of ``task`` at ``acc`` (per-slice tables, reconstructions)."""
        return self.layout.step("evaluation", task, acc)


def paths_for(profile: Profile | str) -> Paths:
    """The folders of a profile (by name or instance)."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    sweeps = profile.evidence is not None and bool(profile.evidence.lr_factors)
    steps = sweeps and profile.evidence.sweep_iterations is not None
    tags = tuple(
        (name, f"lr{s.train.lr:g}" + (f"_{s.train.iterations}steps" if steps else ""))
        for name, s in sorted(profile.settings.items())
        if sweeps and isinstance(s, NetworkSettings)
    )
    return Paths(
        profile.name,
        repo_root(),
        profile.real_data,
        profile.data_name,
        pairs_profile=profile.pairs_name,
        shared_models=profile.shared_models,
        model_tags=tags,
    )
