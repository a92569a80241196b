"""The study's methods, in one registry: what each is called, how it is fitted on the training
cases, how it reconstructs a batch of slices, and what it costs.

Every other part of the study asks this registry: the CLI's choices (``submit --method``,
``train``), the submission, the tables (Tables 2-3, Figure 3, Table 6), the cost model, the seeds
and the compute curve. A method is built from its own settings (:func:`settings`: the profile's
``settings`` entry, else the method's default): a network from its
:class:`~diffcmr_core.method.settings.NetworkSettings` (configuration and training) and the
system class that trains it, PI-CS from its ``CSConfig``. Adding a method is a module with its
mathematics and one :func:`register` call; ``tests/test_methods.py`` registers a trivial one and
runs it through the evaluation and the submission, ``tests/test_new_network.py`` a small trained
network through training, evaluation, seeds, the compute curve, the cost model and the
submission.

A method reconstructs a :class:`Batch`: the zero-filled, input-normalised images ``[N, S, S]``
of one task and factor (what the networks see), each input's maximum, the preprocessing, and,
for the methods that work from the data, the acquisitions behind the images
(:class:`~diffcmr_core.data.acquired.Acquired`, read only when asked for). It returns ``mean``
``[N, S, S]`` on the inputs' scale and, for a sampling method, ``std`` and ``rounds``
``[R, N, S, S]``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from diffcmr_core.data.acquired import Acquired
from diffcmr_core.data.pairs import PreprocessConfig
from diffcmr_core.errors import CheckpointError, DiffCMRError
from diffcmr_core.method.checkpoints import default_device, load_for_inference
from diffcmr_core.method.classical import CSConfig, cost_per_image
from diffcmr_core.method.inference import reconstruct as sample
from diffcmr_core.method.inference import regress
from diffcmr_core.method.settings import NetworkSettings
from diffcmr_core.method.systems import (
    DiffusionSystem,
    GANSystem,
    RegressionSystem,
    register_system,
    unregister_system,
)
from diffcmr_core.method.train import train
from diffcmr_core.study.methods import convergence
from diffcmr_core.study.methods.pics import CHOICE_FILE, choose, load_choice, pics_images
from diffcmr_core.study.settings.profiles import paths_for

Reconstruction = dict[str, np.ndarray]


@dataclass
class Batch:
    """Slices of one task and factor to reconstruct (see the module's docstring)."""

    inputs: np.ndarray  # [N, S, S] float32, input-normalised
    scale: np.ndarray  # [N] each input's maximum
    preprocess: PreprocessConfig
    read_acquired: Callable[[], list[Acquired]] | None = None
    ids: np.ndarray | None = None  # [N] slice ids (seed the noise)

    @property
    def slice_ids(self) -> np.ndarray:
        """Each slice's id (its row in the pairs file, a file's key and index ...; default
        ``0 .. N-1``): a sampling method's noise for a slice is seeded by it."""
        return np.arange(len(self.inputs)) if self.ids is None else np.asarray(self.ids)

    def subset(self, lo: int, hi: int) -> Batch:
        """Slices ``lo:hi`` with their ids, without acquisitions: an acquisition holds every
        frame of a slice, which a cut through the batch may split, so a method that reads
        them (:attr:`Method.reads_acquisition`) reconstructs the whole batch at once. The
        whole range is the batch itself, acquisitions included."""
        if (lo, hi) == (0, len(self.inputs)):
            return self
        return Batch(
            self.inputs[lo:hi], self.scale[lo:hi], self.preprocess, None, self.slice_ids[lo:hi]
        )

    @cached_property
    def acquired(self) -> list[Acquired]:
        """The slices' acquisitions (k-space, mask, coil type), read on first use."""
        if self.read_acquired is None:
            raise ValueError(
                "this batch carries no acquisitions (k-space); a method that "
                "needs them cannot reconstruct it"
            )
        return self.read_acquired()


class Method:
    """One method of the study. Subclasses set the class attributes and implement
    :meth:`reconstructor` (and :meth:`fit` when ``fitted``)."""

    name: str = ""
    label: str = ""
    fitted: bool = False  # fitted on the training cases (notebook 03)
    network: bool = False  # a network with a checkpoint (the ``train`` command)
    sampling: bool = False  # several rounds: their mean, spread and each round
    reads_acquisition: bool = False  # reconstructs from the k-space, not the images
    default_settings: Any = None  # its settings when a profile gives none

    def artefact(self, profile, task: str, acc: int) -> Path | None:
        """The file the fit leaves (a checkpoint, a choice of parameters); ``None`` if none."""
        return None

    def fit(self, profile, task: str, acc: int, *, progress: bool = True) -> Path | None:
        """Fit (or resume, or reuse) the method for ``task`` at ``acc``; returns
        :meth:`artefact`."""
        return None

    def reconstructor(
        self, profile, task: str, acc: int, *, device=None, progress: bool = False
    ) -> Callable[[Batch], Reconstruction]:
        """A function that reconstructs a :class:`Batch` with the fitted method for ``task`` at
        ``acc``."""
        raise NotImplementedError

    def timed_reconstructor(
        self, profile, task: str, acc: int
    ) -> Callable[[Batch], Reconstruction]:
        """The :meth:`reconstructor` whose time per slice the evidence study reports: the
        same, but computing what a cache would give (PI-CS)."""
        return self.reconstructor(profile, task, acc)

    def train_flops(self, profile, units) -> float:
        """Floating-point operations of fitting one model (``units``: the cost model's
        per-image counts of each network,
        :func:`~diffcmr_core.study.experiments.cost.unit_costs`)."""
        return 0.0

    def image_flops(self, profile, units) -> float:
        """Floating-point operations of reconstructing one image at the tables' settings."""
        return 0.0


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method to the study (a name seen twice is an error)."""
    if not method.name or not method.label:
        raise ValueError("a method needs a name and a label")
    if method.name in REGISTRY and REGISTRY[method.name] is not method:
        raise ValueError(f"a method named {method.name!r} is already registered")
    if method.network:  # the system that trains it, under the same name (a checkpoint's)
        if method.system.method != method.name:
            raise ValueError(
                f"{method.name}'s system {method.system.__name__} is for {method.system.method!r}"
            )
        register_system(method.system)
    REGISTRY[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove a method and its system (tests register temporary ones)."""
    method = REGISTRY.pop(name, None)
    if method is not None and method.network:
        unregister_system(name)


def get(name: str) -> Method:
    """The registered method called ``name``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; expected one of {tuple(REGISTRY)}")
    return REGISTRY[name]


def names(*, network: bool | None = None) -> tuple[str, ...]:
    """Registered method names (``network=True``: those the ``train`` command trains)."""
    return tuple(n for n, m in REGISTRY.items() if network is None or m.network == network)


def label(name: str) -> str:
    """The method's name in tables and figures (``U-Net``, ``DiffCMR`` ...)."""
    return get(name).label


def loss_label(profile, name: str) -> str:
    """What a network's logged training loss is (its ``loss.csv``), for a plot's axis."""
    if name == "diffcmr":
        weighting = getattr(profile.network(name).model, "loss_weighting", "eps")
        return "MSE on eps x 1/abar_t (= on v)" if weighting == "v" else "MSE on eps (Eq. 5)"
    return "L1 (generator; + adversarial)" if name == "cgan" else "L1"


def settings(profile, name: str) -> Any:
    """A method's settings in ``profile``: its ``settings`` entry, else the method's default."""
    return profile.settings.get(name, get(name).default_settings)


def reconstruct(
    profile, task: str, acc: int, name: str, batch: Batch, *, device=None, progress: bool = False
) -> Reconstruction:
    """``name``'s reconstruction of ``batch`` with the profile's fitted model for ``task`` at
    ``acc`` (the one function every table, figure and the submission call)."""
    return get(name).reconstructor(profile, task, acc, device=device, progress=progress)(batch)


def recipe(profile, task: str, acc: int, method: str) -> str:
    """What makes a method's reconstructions (a submission file, an evaluation's saved chunk):
    the method, the bytes of its fitted artefact (SHA-256 of the checkpoint or the chosen
    parameters), the profile's preprocessing, inference settings and the method's options. A
    result made with another recipe (an older model, say) is not reused."""
    import hashlib

    opts = settings(profile, method)
    h = hashlib.sha256(
        json.dumps(
            {
                "method": method,
                "preprocess": dataclasses.asdict(profile.preprocess),
                "evaluation": dataclasses.asdict(profile.evaluation),
                "settings": dataclasses.asdict(opts) if dataclasses.is_dataclass(opts) else None,
            },
            sort_keys=True,
            default=list,
        ).encode()
    )
    artefact = get(method).artefact(profile, task, acc)
    if artefact is not None:
        with artefact.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:32]


def figure_recons(name: str, rec: Reconstruction, rounds: int) -> dict[str, np.ndarray]:
    """The panels a method gives Figure 3 and Table 6: its mean, and for a sampling method one
    round (``<label> R=1``) beside the mean of ``rounds`` (``<label> R=<rounds>``)."""
    m = get(name)
    if not m.sampling:
        return {m.label: rec["mean"]}
    return {f"{m.label} R=1": rec["rounds"][0], f"{m.label} R={rounds}": rec["mean"]}


# ----------------------------------------------------------------------------- RAW
class ZeroFilled(Method):
    """The under-sampled input itself (the paper's RAW row)."""

    name, label = "raw", "RAW"

    def reconstructor(self, profile, task, acc, *, device=None, progress=False):
        """The inputs themselves."""
        return lambda batch: {"mean": batch.inputs}


# ----------------------------------------------------------------------------- networks
class Network(Method):
    """A network trained on the training pairs (every factor's with the profile's
    ``shared_models``) by its ``system`` (a class of :mod:`~diffcmr_core.method.systems`,
    registered with the method), built from the profile's
    :class:`~diffcmr_core.method.settings.NetworkSettings` for it; its checkpoint checked before
    use (method, configuration, finished training, task and factor)."""

    fitted = network = True
    system: type = RegressionSystem

    @property
    def sampling(self) -> bool:
        """Whether it samples (several rounds), as its system says."""
        return self.system.sampling

    def settings(self, profile) -> NetworkSettings:
        """The network's settings in ``profile``."""
        return profile.network(self.name)

    def model_config(self, profile):
        """The network's configuration in ``profile``."""
        return self.settings(profile).model

    def train_config(self, profile):
        """The training settings in ``profile``."""
        return self.settings(profile).train

    def artefact(self, profile, task, acc):
        """The final checkpoint ``last.pt`` of the model for ``task`` at ``acc``."""

        return paths_for(profile).model_dir(task, acc, self.name) / "last.pt"

    def fit(self, profile, task, acc, *, progress=True):
        """Train (or resume, or reuse) the network; in an evidence profile, on its budget with
        the selection curve (:func:`~diffcmr_core.study.methods.convergence.train_to_budget`)."""

        if profile.evidence is not None:
            path = convergence.train_to_budget(profile, task, acc, self.name, progress=progress)
            record = convergence.read_record(path.parent, profile, self.name)
            if convergence.diverged(record):
                raise DiffCMRError(
                    path.parent / convergence.RECORD,
                    f"{self.name} (lr {self.train_config(profile).lr:g}, seed "
                    f"{self.train_config(profile).seed}) diverged at step "
                    f"{record['stopped']['step']}: its selection scores were not finite, so "
                    "it cannot enter a table; lower its learning rate",
                )
            return path
        return train(
            self.name,
            convergence.training_pairs(profile, task, acc),
            self.artefact(profile, task, acc).parent,
            self.train_config(profile),
            self.model_config(profile),
            device=default_device(),
            progress=progress,
        )

    def expected(self, profile, task, acc) -> dict:
        """What the checkpoint must be
        (:func:`~diffcmr_core.method.checkpoints.check_checkpoint`); in an evidence profile,
        trained up to the last step of its record."""
        cfg = self.train_config(profile)
        if profile.evidence is not None:
            cfg = dataclasses.replace(
                cfg,
                iterations=convergence.stopped_step(profile, task, acc, self.name)
                or cfg.iterations,
            )
        return {
            "method": self.name,
            "model_config": self.model_config(profile),
            "train_config": cfg,
            "task": task,
            "acc": acc,
        }

    def load(self, profile, task, acc, device=None):
        """``(system, model)`` of the checked checkpoint, on ``device``, with the profile's
        weights."""

        ckpt = self.artefact(profile, task, acc)
        if not ckpt.is_file():
            raise CheckpointError(
                ckpt,
                f"no trained {self.name} model for {task} at {acc}x in "
                f"profile {profile.name}; train it with `python -m "
                f"diffcmr_core study --profile {profile.name} --only "
                f"03_training` (or `make study PROFILE={profile.name}`)",
            )
        return load_for_inference(
            ckpt,
            device or default_device(),
            profile.evaluation.weights,
            **self.expected(profile, task, acc),
        )

    def step_flops(self, profile, units) -> float:
        """Floating-point operations of one training step: per-sample FLOPs (the cost model's
        count of its system's ``train`` probe) x batch."""
        return units[self.name]["train"] * self.train_config(profile).batch_size

    def train_flops(self, profile, units):
        """One training step's FLOPs x iterations."""
        return self.step_flops(profile, units) * self.train_config(profile).iterations


class Regression(Network):
    """A regression network: one forward pass per image."""

    def reconstructor(self, profile, task, acc, *, device=None, progress=False):
        """One forward pass per slice, in batches of the evaluation's batch."""

        system, model = self.load(profile, task, acc, device)
        batch_size = profile.evaluation.batch
        return lambda b: {
            "mean": regress(
                system,
                model,
                np.ascontiguousarray(b.inputs, np.float32),
                batch_size,
                progress=progress,
            )
        }

    def image_flops(self, profile, units):
        """One forward pass of the network."""
        return units[self.name]["forward"]


class UNetMethod(Regression):
    """U-Net [12] with an L1 loss."""

    name, label, system = "unet", "U-Net", RegressionSystem


class CGANMethod(Regression):
    """pix2pix-style cGAN [3]."""

    name, label, system = "cgan", "cGAN", GANSystem


class DiffCMRMethod(Network):
    """DiffCMR: Alg. 2 with the profile's T, R, seed and sampling choices."""

    name, label, system = "diffcmr", "DiffCMR", DiffusionSystem

    def reconstructor(self, profile, task, acc, *, device=None, progress=False):
        """Alg. 2 (or the profile's sampler) with the evaluation's T, R and seed; each slice's
        noise seeded by its id."""
        system, model = self.load(profile, task, acc, device)
        ev = profile.evaluation
        return lambda b: sample(
            system,
            model,
            np.ascontiguousarray(b.inputs, np.float32),
            steps=ev.steps,
            rounds=ev.rounds,
            batch=ev.batch,
            seed=ev.seed,
            sampler=ev.sampler,
            progress=progress,
            ids=b.slice_ids,
            **ev.sampling(),
        )

    def image_flops(self, profile, units):
        """G(I^u) once, and T x R evaluations of E."""
        ev, u = profile.evaluation, units[self.name]
        return u["condition"] + ev.steps * ev.rounds * u["denoise_step"]


# ----------------------------------------------------------------------------- PI-CS
class PICSMethod(Method):
    """Parallel imaging + compressed sensing from the acquisition
    (:mod:`~diffcmr_core.method.classical`): ESPIRiT maps, SENSE with an L1-wavelet prior, the
    image put through the networks' preprocessing (coil images, padding, RSS, region, resize,
    the input's maximum). Fitted = its weight and iterations chosen on training slices
    (:func:`~diffcmr_core.study.methods.pics.choose`), one choice per coil type, for each task
    (pooled over the factors with ``shared_models``, as the networks)."""

    name, label, fitted, reads_acquisition = "cs", "PI-CS", True, True

    @property
    def default_settings(self):
        """The PI-CS settings of :class:`~diffcmr_core.method.classical.CSConfig`."""

        return CSConfig()

    def artefact(self, profile, task, acc):
        """The file holding the chosen weight and iterations (with the data's runs: it depends
        on the data and PI-CS's settings, not on a seed)."""

        return paths_for(profile).data_layout.model(task, acc, self.name) / CHOICE_FILE

    def fit(self, profile, task, acc, *, progress=True):
        """Choose the weight and iterations on training slices (reused when already chosen)."""

        return choose(
            profile,
            task,
            acc,
            self.artefact(profile, task, acc),
            settings(profile, self.name),
            progress=progress,
        )

    def reconstructor(self, profile, task, acc, *, device=None, progress=False):
        """PI-CS from each slice's acquisition with the chosen parameters (cached per slice, in
        the run folder of the profile whose data it reads: a seed variant, which reads the same
        data, finds the same images; the cache's keys hash everything an image depends on)."""

        return self._run(
            profile, task, acc, paths_for(profile).data_layout.method_cache(self.name), progress
        )

    def timed_reconstructor(self, profile, task, acc):
        """PI-CS without its per-slice cache (ESPIRiT calibration included)."""
        return self._run(profile, task, acc, None, False)

    def _run(self, profile, task, acc, cache, progress):
        cfg = settings(profile, self.name)
        choice = load_choice(self.artefact(profile, task, acc), cfg, task, acc, profile)

        def run(batch: Batch) -> Reconstruction:
            return {"mean": pics_images(batch, choice, cfg, progress=progress, cache=cache)}

        return run

    def image_flops(self, profile, units):
        """FFTs and wavelet transforms of the largest iteration count, on the acquired matrix."""

        pre, cfg = profile.preprocess, settings(profile, self.name)
        ky, kx = pre.pad_to // 2, pre.pad_to  # about half the padded lines are acquired
        if pre.roi is not None:
            kx = int(kx * min(1.0, pre.roi[1] + 0.1))  # the region's columns and their margin
        return cost_per_image(ky, kx, profile.phantom.n_coils, max(cfg.iteration_grid))

    def train_flops(self, profile, units):
        """Every candidate weight and iteration count on the tuning slices."""
        cfg = settings(profile, self.name)
        grid = len(cfg.weights) * sum(cfg.iteration_grid) / max(cfg.iteration_grid)
        per_task = cfg.tuning_slices * 2 * len(profile.accs)  # two coil types
        return grid * per_task * self.image_flops(profile, units)


for _method in (ZeroFilled(), UNetMethod(), CGANMethod(), DiffCMRMethod(), PICSMethod()):
    register(_method)
