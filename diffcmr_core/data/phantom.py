"""A synthetic cardiac MR phantom written as a CMRxRecon tree (our embedded default data).

Each case is a torso in cross-section (body outline with a subcutaneous fat layer, lungs, liver,
spine, left ventricle blood pool inside a myocardial ring, right ventricle) whose size, position,
rotation, tissue properties and smooth texture are drawn per case. Short-axis slices go from base
to apex; long-axis views show an elongated ventricle and atria. Cine frames follow a cardiac cycle
(the ventricles contract and the wall thickens, keeping myocardial area); mapping files are MOLLI
T1 (inversion recovery) and T2-prepared (mono-exponential) weightings from the tissues' T1 and T2.

Acquisition: smooth complex coil sensitivities, a smooth background phase, 2x read-out
oversampling, complex Gaussian noise in k-space, values scaled to ~1e-3 like the real files.
Single-coil files hold a coil-combined acquisition. Masks: equispaced ky lines plus the central
``acs_lines`` (24) lines; under-sampled k-space = full k-space x mask, exactly.

Everything is deterministic for ``(seed, case number)``: a case does not depend on how many other
cases are generated.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from tqdm.auto import tqdm

from diffcmr_core.data import cmrxrecon as io
from diffcmr_core.data.kspace import fft2c
from diffcmr_core.fileio import write_text_atomic

# tissue: (proton density, T1 [ms], T2 [ms]); 1.5 T-like values
TISSUES: dict[str, tuple[float, float, float]] = {
    "muscle": (0.75, 1000.0, 40.0),
    "fat": (0.90, 300.0, 60.0),
    "lung": (0.10, 1200.0, 40.0),
    "liver": (0.75, 800.0, 40.0),
    "spine": (0.70, 400.0, 50.0),
    "myocardium": (0.80, 1200.0, 45.0),
    "blood": (0.95, 1900.0, 250.0),
}
T1_INVERSION_TIMES = (120.0, 200.0, 280.0, 1120.0, 1200.0, 1280.0, 2120.0, 2200.0, 3120.0)
T2_ECHO_TIMES = (0.0, 35.0, 55.0)


@dataclass(frozen=True)
class PhantomConfig:
    """Sizes of the synthetic data set. Defaults keep the quick study inside its CPU budget."""

    n_cases: int = 6
    seed: int = 0
    ny: int = 96               # phase-encoding lines (ky), before per-case jitter
    nx: int = 96               # read-out samples of the object FOV; stored kx = 2 * nx
    ny_jitter: int = 4         # per-case ky size varies by +- this (even), like the real data
    n_coils: int = 10
    cine_frames: int = 6       # real data: 12
    sax_slices: int = 4        # real data: ~10
    lax_slices: int = 2        # real data: 3 (2, 3, 4-chamber views)
    mapping_slices: int = 3
    acs_lines: int = 24
    noise: float = 0.01        # k-space noise std relative to the image peak
    scale: float = 1e-3        # overall value scale, like the real files
    coils: tuple[str, ...] = io.COIL_TYPES

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


# ----------------------------------------------------------------------------- masks
def equispaced_mask(ny: int, nx: int, acc: int, acs_lines: int = 24) -> np.ndarray:
    """Challenge-like ``(ky, kx)`` bool mask: every ``acc``-th ky line through the centre line,
    plus the central ``acs_lines`` lines; each kept line is fully sampled along kx."""
    centre = ny // 2
    ky = np.arange(ny)
    keep = (ky - centre) % acc == 0
    keep[max(centre - acs_lines // 2, 0):centre + acs_lines - acs_lines // 2] = True
    return np.repeat(keep[:, None], nx, axis=1)


# ----------------------------------------------------------------------------- anatomy
def _soft(d: np.ndarray, width: float) -> np.ndarray:
    """Soft inside-indicator of a signed distance-like field (d < 0 inside)."""
    return 1.0 / (1.0 + np.exp(np.clip(d / width, -50, 50)))


def _ellipse(u, v, cu, cv, au, av):
    return np.sqrt(((u - cu) / au) ** 2 + ((v - cv) / av) ** 2) - 1.0


@dataclass(frozen=True)
class _Case:
    """Per-case anatomy and contrast parameters."""

    scale: float
    angle: float
    shift: tuple[float, float]
    heart: tuple[float, float]
    lv_radius: float
    wall: float
    ejection: float
    tissues: dict[str, tuple[float, float, float]]
    texture: np.ndarray  # (ny, 2 nx) smooth multiplicative field
    phase: tuple[float, ...]
    coil_phase: np.ndarray
    ny: int


def _draw_case(cfg: PhantomConfig, index: int) -> tuple[_Case, np.random.Generator]:
    rng = np.random.default_rng([cfg.seed, index])
    ny = cfg.ny + 2 * int(rng.integers(-(cfg.ny_jitter // 2), cfg.ny_jitter // 2 + 1))
    tissues = {k: (pd * rng.uniform(0.93, 1.07), t1 * rng.uniform(0.95, 1.05),
                   t2 * rng.uniform(0.93, 1.07)) for k, (pd, t1, t2) in TISSUES.items()}
    texture = gaussian_filter(rng.standard_normal((ny, 2 * cfg.nx)), sigma=cfg.nx / 24)
    texture = 1.0 + 0.08 * texture / (texture.std() + 1e-12)
    case = _Case(
        scale=rng.uniform(0.88, 1.08), angle=rng.uniform(-0.3, 0.3),
        shift=(rng.uniform(-0.06, 0.06), rng.uniform(-0.05, 0.05)),
        heart=(rng.uniform(0.05, 0.16), rng.uniform(-0.06, 0.04)),
        lv_radius=rng.uniform(0.15, 0.19), wall=rng.uniform(0.045, 0.06),
        ejection=rng.uniform(0.3, 0.42), tissues=tissues, texture=texture,
        phase=tuple(rng.uniform(-1.0, 1.0, 4)), coil_phase=rng.uniform(-np.pi, np.pi, cfg.n_coils),
        ny=ny)
    return case, rng


def _grid(case: _Case, nx: int) -> tuple[np.ndarray, np.ndarray]:
    """Object coordinates (u, v) on the oversampled (ny, 2 nx) grid; the object FOV is |x| < 1."""
    y = (np.arange(case.ny) - case.ny / 2 + 0.5) / (case.ny / 2)
    x = (np.arange(2 * nx) - nx + 0.5) / (nx / 2)
    xx, yy = np.meshgrid(x, y)
    xx, yy = xx / case.scale - case.shift[0], yy / case.scale - case.shift[1]
    c, s = np.cos(case.angle), np.sin(case.angle)
    return c * xx + s * yy, -s * xx + c * yy


def _torso(u, v, w) -> list[tuple[str, np.ndarray]]:
    body = _soft(_ellipse(u, v, 0, 0.05, 0.86, 0.66), w)
    inner = _soft(_ellipse(u, v, 0, 0.05, 0.79, 0.59), w)
    lungs = np.maximum(_soft(_ellipse(u, v, -0.42, -0.08, 0.27, 0.36), w),
                       _soft(_ellipse(u, v, 0.45, -0.08, 0.25, 0.36), w))
    return [("fat", body), ("muscle", inner), ("lung", lungs * inner),
            ("spine", _soft(_ellipse(u, v, 0.0, 0.52, 0.07, 0.06), w))]


def _sax_layers(case: _Case, u, v, level: float, contraction: float, w: float):
    """Short-axis slice at ``level`` (0 base .. 1 apex) and ``contraction`` (0 diastole .. 1)."""
    layers = _torso(u, v, w)
    layers.append(("liver", _soft(_ellipse(u, v, -0.36, 0.3, 0.3 + 0.1 * level, 0.18), w)))
    hu, hv = case.heart
    taper = np.sqrt(max(1.0 - 0.85 * level ** 2, 0.05))
    r_in = case.lv_radius * taper * (1.0 - case.ejection * contraction)
    area = ((case.lv_radius * taper + case.wall) ** 2 - (case.lv_radius * taper) ** 2)
    r_out = np.sqrt(r_in ** 2 + area)                       # myocardial area is conserved
    r = np.hypot(u - hu, v - hv)
    layers.append(("myocardium", _soft(r - r_out, w)))
    if level < 0.85:                                          # the RV ends before the apex
        rv = _soft(_ellipse(u, v, hu - 0.2 * taper, hv - 0.03, 0.2 * taper * (1 - 0.25 * contraction),
                            0.15 * taper), w) * (1.0 - _soft(r - r_out - 0.015, w))
        layers.append(("blood", rv))
    layers.append(("blood", _soft(r - r_in, w)))
    return layers


def _lax_layers(case: _Case, u, v, view: int, contraction: float, w: float):
    """Long-axis view number ``view``: an elongated ventricle with an atrium above."""
    layers = _torso(u, v, w)
    a = 0.7 + 0.45 * view                                      # each view cuts at another angle
    c, s = np.cos(a), np.sin(a)
    hu, hv = case.heart
    p, q = c * (u - hu) + s * (v - hv), -s * (u - hu) + c * (v - hv)
    length, width = 0.36 * (1 - 0.15 * contraction), case.lv_radius * (1 - case.ejection * contraction)
    myo = _soft(_ellipse(p, q, 0.05, 0, length + case.wall, width + case.wall), w)
    layers.append(("myocardium", myo))
    layers.append(("blood", _soft(_ellipse(p, q, 0.05, 0, length, width), w)))
    layers.append(("blood", _soft(_ellipse(p, q, -0.38, 0.02, 0.15 * (1 + 0.3 * contraction), 0.13), w)))
    if view % 2 == 0:
        layers.append(("blood", _soft(_ellipse(p, q, 0.02, -0.22, 0.3, 0.08), w)))
    return layers


def _property_maps(case: _Case, layers) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shape = layers[0][1].shape
    pd, t1, t2 = np.zeros(shape), np.full(shape, 1000.0), np.full(shape, 50.0)
    for name, m in layers:                                    # later layers paint over earlier
        tpd, tt1, tt2 = case.tissues[name]
        pd, t1, t2 = pd + m * (tpd - pd), t1 + m * (tt1 - t1), t2 + m * (tt2 - t2)
    return pd * case.texture, t1, t2


def _contraction(frame: int, n_frames: int) -> float:
    """0 at end-diastole (frame 0), 1 at end-systole (about 40 % of the cycle)."""
    phase = frame / n_frames
    return float(np.sin(np.pi * min(phase / 0.8, 1.0)) ** 2)


def _images(case: _Case, cfg: PhantomConfig, name: str, times: np.ndarray) -> np.ndarray:
    """Real object images ``(t, kz, ny, 2 nx)`` for one file (before coils and phase)."""
    u, v = _grid(case, cfg.nx)
    w = 1.2 / cfg.nx                                            # edge width ~ half a pixel
    if name in ("cine_sax", "cine_lax"):
        n_slices = cfg.sax_slices if name == "cine_sax" else cfg.lax_slices
        out = np.empty((cfg.cine_frames, n_slices) + u.shape)
        for t in range(cfg.cine_frames):
            for z in range(n_slices):
                c = _contraction(t, cfg.cine_frames)
                layers = (_sax_layers(case, u, v, z / max(n_slices - 1, 1), c, w)
                          if name == "cine_sax" else _lax_layers(case, u, v, z, c, w))
                pd, t1, t2 = _property_maps(case, layers)
                out[t, z] = pd * np.sqrt(t2 / t1) * 2.0     # bSSFP-like contrast (bright blood)
        return out
    out = np.empty((len(times), cfg.mapping_slices) + u.shape)
    for z in range(cfg.mapping_slices):
        level = 0.2 + 0.6 * z / max(cfg.mapping_slices - 1, 1)
        pd, t1, t2 = _property_maps(case, _sax_layers(case, u, v, level, 0.0, w))
        for k, tk in enumerate(times):
            if name == "T1map":   # MOLLI inversion recovery, signed signal
                out[k, z] = pd * (1.0 - 2.0 * np.exp(-tk / t1))
            else:                 # T2 preparation
                out[k, z] = pd * np.exp(-tk / t2)
    return out


def _sensitivities(case: _Case, cfg: PhantomConfig) -> np.ndarray:
    """Smooth complex coil sensitivities ``(kc, ny, 2 nx)`` placed around the torso."""
    u, v = _grid(case, cfg.nx)
    ang = 2 * np.pi * np.arange(cfg.n_coils) / cfg.n_coils
    cu, cv = 1.0 * np.cos(ang), 0.8 * np.sin(ang)
    d2 = (u[None] - cu[:, None, None]) ** 2 + (v[None] - cv[:, None, None]) ** 2
    phase = case.coil_phase[:, None, None] + 0.6 * (u[None] * np.cos(ang)[:, None, None]
                                                  + v[None] * np.sin(ang)[:, None, None])
    return np.exp(-d2 / (2 * 0.7 ** 2)) * np.exp(1j * phase)


def simulate_file(cfg: PhantomConfig, index: int, name: str, coil: str
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """Fully sampled k-space of one file of case ``index`` (0-based).

    Returns ``(kspace, times)``: complex64 in h5py order (``(t, kz, kc, ky, kx)`` multi-coil,
    ``(t, kz, ky, kx)`` single-coil) and the inversion/echo times in ms (``None`` for cine).
    """
    case, _ = _draw_case(cfg, index)
    rng = np.random.default_rng([cfg.seed, index, ("cine_sax", "cine_lax", "T1map", "T2map")
                                 .index(name), coil == "SingleCoil"])
    times = None
    if name == "T1map":
        times = np.round(np.asarray(T1_INVERSION_TIMES) * rng.uniform(0.97, 1.03), 1)
    elif name == "T2map":
        times = np.asarray(T2_ECHO_TIMES)
    obj = _images(case, cfg, name, times if times is not None else np.empty(0))
    u, v = _grid(case, cfg.nx)
    p = case.phase
    background = np.exp(1j * (p[0] + 0.6 * p[1] * u + 0.6 * p[2] * v + 0.4 * p[3] * u * v))
    sens = _sensitivities(case, cfg)
    if coil == "MultiCoil":
        images = obj[:, :, None] * (background * sens)[None, None]
    else:  # coil-combined acquisition (sensitivity-weighted combination of noiseless coils)
        images = obj * background * np.sqrt((np.abs(sens) ** 2).sum(0))
    kspace = fft2c(images)
    sigma = cfg.noise * np.abs(images).max()
    kspace = kspace + sigma * (rng.standard_normal(kspace.shape)
                               + 1j * rng.standard_normal(kspace.shape)) / np.sqrt(2)
    return (kspace * cfg.scale).astype(np.complex64), times


def case_name(index: int) -> str:
    return f"P{index + 1:03d}"


def expected_pair_counts(cfg: PhantomConfig, coils: tuple[str, ...], val_fraction: float,
                         tasks: tuple[str, ...] = io.TASKS, accs: tuple[int, ...] = io.ACCS
                         ) -> dict[str, dict[int, tuple[int, int]]]:
    """Table 1 predicted from the phantom's configuration alone, ``[task][acc] -> (train, valid)``
    (an independent check of the preprocessing): slices x frames per file, per case, per coil
    type, split by case as :func:`~diffcmr_core.data.pairs.split_cases` does."""
    from diffcmr_core.data.pairs import split_cases

    n_coils = len(set(cfg.coils) & set(coils))
    per_case = {"cine": cfg.cine_frames * (cfg.sax_slices + cfg.lax_slices),
                "mapping": (len(T1_INVERSION_TIMES) + len(T2_ECHO_TIMES)) * cfg.mapping_slices}
    train, val = split_cases([case_name(i) for i in range(cfg.n_cases)], val_fraction)
    return {task: {acc: (per_case[task] * n_coils * len(train), per_case[task] * n_coils * len(val))
                   for acc in accs} for task in tasks}


def write_case(root: str | Path, cfg: PhantomConfig, index: int) -> None:
    """Write every file of case ``index`` (both coil types, cine and mapping, every factor of the
    challenge) into the TrainingSet of the tree at ``root``."""
    case = case_name(index)
    for coil in cfg.coils:
        for task, names in io.TASK_FILES.items():
            for name in names:
                kspace, times = simulate_file(cfg, index, name, coil)
                for acc in (None, *io.ACCS):
                    data = kspace
                    if acc is not None:
                        mask = equispaced_mask(kspace.shape[-2], kspace.shape[-1], acc, cfg.acs_lines)
                        io.save_mask(io.file_path(root, coil, task, case, name, kind="mask", acc=acc),
                                     io.mask_key(acc), mask)
                        data = kspace * mask
                    io.save_kspace(io.file_path(root, coil, task, case, name, acc=acc),
                                   io.kspace_key(coil, acc), data)
                    if times is not None:
                        io.save_times(io.file_path(root, coil, task, case, name, kind="times", acc=acc),
                                      times)


def make_phantom(root: str | Path, cfg: PhantomConfig = PhantomConfig(), *,
                 progress: bool = True) -> Path:
    """Write a complete synthetic CMRxRecon tree under ``root``; idempotent.

    A finished tree carries ``phantom.json`` (its config); a tree with the same config is reused,
    a different or unfinished one is rewritten case by case (every file is written atomically).
    """
    root = Path(root)
    stamp = root / "phantom.json"
    if stamp.is_file() and stamp.read_text() == cfg.to_json():
        return root
    if stamp.exists():  # a tree made with another config: start clean, it is ours to replace
        stamp.unlink()
        for coil in io.COIL_TYPES:
            shutil.rmtree(root / coil, ignore_errors=True)
    for index in tqdm(range(cfg.n_cases), desc="phantom cases", disable=not progress):
        write_case(root, cfg, index)
    write_text_atomic(stamp, cfg.to_json())
    return root
