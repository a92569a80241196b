"""A synthetic, physically modelled CMRxRecon data set (our embedded default data).

Anatomy (:mod:`~diffcmr_core.data.phantom.anatomy`): a 3D thorax per case (size, shape,
position, heart orientation and size, ejection fraction, systolic duration, fat, contrast and
texture drawn per case), cut by the planes a cardiac examination acquires: a short-axis stack
from above the base to the apex, the 4-, 2- and 3-chamber long-axis views, and short-axis
mapping slices.

Contrast at 3 T: cine is balanced SSFP (TR 3 ms, flip 45 degrees) from each tissue's PD, T1 and
T2, 12 frames over one cycle; T1 mapping is MOLLI (9 inversion times, a three-parameter
Look-Locker recovery with B/A = 1.9, signed), T2 mapping T2-prepared (echo times 0, 35, 55 ms).

Acquisition (:mod:`~diffcmr_core.data.phantom.coils`): 10 receive loops (an anterior 2 x 3 and a
posterior 2 x 2 array) with Biot-Savart sensitivities, a smooth off-resonance phase, 2x read-out
oversampling, complex Gaussian noise with a coil covariance, the challenge's matrix sizes
(``cine_sax`` 512 read-out samples and 162-246 lines; ``cine_lax`` 448 and 168-204; mapping like
the short axis with a smaller phase field of view) at 1.5 mm, and its masks (every ``acc``-th
line plus the central 24). Single-coil files are the same acquisition combined into one virtual
coil (sensitivity-weighted, noise included). Values are scaled to ~1e-3 like the real files.

For every file the truth is saved beside the tree, outside the challenge layout
(``<root>/Truth/<split>/Pnnn/<name>.npz``): every cine frame's tissue label; each map's PD, T1,
T2 and label, on the acquired grid.

Everything is deterministic for ``(seed, split, case number)``: a case does not depend on how
many other cases are generated.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

import diffcmr_core.data.phantom.anatomy as anatomy
import diffcmr_core.data.phantom.coils as coil_model
from diffcmr_core.data import cmrxrecon as io
from diffcmr_core.data.kspace import equispaced_mask, fft2c
from diffcmr_core.data.pairs import split_cases
from diffcmr_core.errors import DiffCMRError
from diffcmr_core.fileio import atomic_path, folder_lock, write_text_atomic

T1_INVERSION_TIMES = (120.0, 200.0, 280.0, 1120.0, 1200.0, 1280.0, 2120.0, 2200.0, 3120.0)
T2_ECHO_TIMES = (0.0, 35.0, 55.0)
MOLLI_B_OVER_A = 1.9  # Look-Locker: S = A - B exp(-TI / T1*), T1* = T1 / (B/A - 1)
BSSFP = dict(tr=3.0, flip_deg=45.0)
FAT_SHIFT_HZ = -3.4e-6 * 42.577e6 * 3.0  # fat's chemical shift at 3 T (-3.4 ppm), ~ -434 Hz
# fat's spectrum, six peaks (ppm from water, relative amplitudes): the model of the ISMRM
# fat-water toolbox and its 2012 challenge; cine sums the peaks, each with its own bSSFP
# response, so they interfere at the echo time and the fat-water shift is no longer one phase
FAT_PEAKS_PPM = (-3.80, -3.40, -2.60, -1.94, -0.39, 0.60)
FAT_PEAK_AMPLITUDES = (0.087, 0.693, 0.128, 0.004, 0.039, 0.048)
FAT_SPECTRA = ("six-peak", "single")
COIL_ARRAYS = ("loops-10", "dense-30")
DENSE_RADIUS_MM = 45.0  # the dense array's loops (our assumption: 9 cm elements)
B0 = dict(shim_hz=40.0, lung_hz=110.0, lung_blur_mm=12.0)  # off-resonance (see off_resonance)
FILE_ID = {"cine_sax": 0, "cine_lax": 1, "T1map": 2, "T2map": 3}
SPLIT_ID = {"TrainingSet": 0, "ValidationSet": 1}


@dataclass(frozen=True)
class PhantomConfig:
    """Sizes and acquisition of the synthetic data set (defaults: the real data's)."""

    n_cases: int = 120  # TrainingSet cases (fully sampled and under-sampled)
    n_val_cases: int = 0  # ValidationSet cases (under-sampled only, as the challenge's)
    seed: int = 0
    pixel_mm: float = 1.5  # in-plane resolution; the matrix sizes follow from it
    n_coils: int = 10  # the 10 loops of the array (fewer: an evenly spread subset)
    cine_frames: int = 12
    sax_slices: int = 10
    lax_slices: int = 3  # 4-, 2-, 3-chamber views
    mapping_slices: int = 5
    acs_lines: int = 24
    # receiver noise: each subject's myocardial SNR at 1.5 mm pixels, drawn uniformly from
    # this range (measured in conventional 2D cine: 29 +- 7; see subject_noise), sets its
    # noise; scaled by (1.5 mm / pixel)^2 (voxel volume)
    myocardial_snr: tuple[float, float] = (22.0, 36.0)
    noise: float | None = None  # or a fixed receiver noise std at 1.5 mm pixels, in units of
    # the signal of PD 1 at the reference sensitivity (a loop's on-axis field at 10 cm)
    coil_gap_mm: tuple[float, float] = (30.0, 40.0)  # anterior array / table to the skin
    coil_radius_mm: float = 75.0  # loop radius (posterior loops 1.2x)
    # subcutaneous fat thickness, drawn per case: its share of the torso section at the heart
    # is 10-25 %, as CT measures in adults (6.8-18.3 % men, 11.2-30.2 % women; Kadowaki,
    # J Showa Med Assoc 1985); 5-8 mm before (7-11 %, the lean end; docs/calibration.md)
    fat_mm: tuple[float, float] = (6.0, 24.0)
    fat_spectrum: str = "six-peak"  # cine: fat's six peaks (FAT_PEAKS_PPM) or "single" (-3.4
    # ppm alone)
    drift_mm: float = 1.5  # cine: std of the in-plane position per heartbeat (residual
    # breath-hold drift; segmented acquisition, see _segment_drift)
    lines_per_beat: int = 16  # cine: ky lines per heartbeat at 1.5 mm (scaled by matrix)
    scale: float = 1e-3  # overall value scale, like the real files
    coils: tuple[str, ...] = io.COIL_TYPES
    # the receive array: "loops-10" (10 loops of coil_radius_mm, the first n_coils kept) or
    # "dense-30" (30 loops of DENSE_RADIUS_MM compressed to n_coils virtual channels, as the
    # CMRxRecon files are; see coils.dense_array and coils.compression)
    coil_array: str = "loops-10"

    def __post_init__(self) -> None:
        if self.coil_array not in COIL_ARRAYS:
            raise ValueError(f"coil_array must be one of {COIL_ARRAYS}, got {self.coil_array!r}")
        if self.fat_spectrum not in FAT_SPECTRA:
            raise ValueError(
                f"fat_spectrum must be one of {FAT_SPECTRA}, got {self.fat_spectrum!r}"
            )
        if not 0 < self.fat_mm[0] <= self.fat_mm[1]:
            raise ValueError(f"fat_mm must be (low, high) with 0 < low <= high, got {self.fat_mm}")
        if not 0 < self.myocardial_snr[0] <= self.myocardial_snr[1]:
            raise ValueError(
                "myocardial_snr must be (low, high) with 0 < low <= high, "
                f"got {self.myocardial_snr}"
            )

    def to_json(self) -> str:
        """The configuration as sorted JSON (recorded with the tree it wrote)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclass(frozen=True)
class View:
    """An imaging plane: its centre and the directions of image columns (read-out, x) and rows
    (phase encoding, y) in body coordinates [mm]."""

    centre: np.ndarray
    ex: np.ndarray
    ey: np.ndarray

    def points(self, ny: int, nx: int, pixel: float) -> np.ndarray:
        """3D points ``(ny * nx, 3)`` of the pixel centres (image centre at index n // 2)."""
        v = (np.arange(ny) - ny // 2) * pixel
        u = (np.arange(nx) - nx // 2) * pixel
        return (self.centre + v[:, None, None] * self.ey + u[None, :, None] * self.ex).reshape(
            -1, 3
        )


def _rotate(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' rotation of ``v`` about the unit ``axis``."""
    return (
        v * np.cos(angle)
        + np.cross(axis, v) * np.sin(angle)
        + axis * (axis @ v) * (1 - np.cos(angle))
    )


def _orient(body: anatomy.Body, centre: np.ndarray, normal: np.ndarray, spin: float) -> View:
    """The plane through ``centre`` with ``normal``, read-out along the torso section's long
    dimension and phase encoding along its short one (the operator's choice that keeps the
    phase field of view, and the scan, short); the patient's left to the right, posterior down
    (or, in a plane along the body axis, feet down); then ``spin`` radians of in-plane rotation."""
    e1 = np.cross(normal, [0.0, 0.0, 1.0] if abs(normal[2]) < 0.9 else [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(normal, e1)
    grid = View(centre, e1, e2).points(64, 64, 10.0)
    cx, cy, a_t, b_t = body.torso
    inside = anatomy.vertical(grid, cx, cy, a_t, b_t) < 0
    uv = (grid[inside] - centre) @ np.stack([e1, e2]).T
    _, vectors = np.linalg.eigh(np.cov(uv.T))
    major = vectors[:, -1]  # eigh: ascending eigenvalues
    ex = major[0] * e1 + major[1] * e2
    ex = _rotate(ex, normal, spin)
    ey = np.cross(normal, ex)
    if ex @ np.array([1.0, 0.0, -0.3]) < 0:  # left to the right
        ex = -ex
    if ey @ np.array([0.0, 1.0, -1.0]) < 0:  # posterior / feet down
        ey = -ey
    return View(centre, ex, ey)


def _views(body: anatomy.Body, name: str, n: int, rng: np.random.Generator) -> list[View]:
    """The planes of one file: short-axis stack (base to apex), long-axis views (4-, 2- and
    3-chamber: planes through the long axis towards the RV, perpendicular to the septum, and
    through the aortic outflow), or short-axis mapping slices; centring and in-plane rotation
    vary a little, as planned by an operator."""
    a = body.axis
    spin = rng.uniform(-0.12, 0.12)
    if name == "cine_lax":
        lv_centre = body.base + a * (0.5 * body.lv_length - 12.0)
        ao = anatomy._unit(0.75 * body.rv_dir - 0.65 * body.lv_dir2)
        directions = [_rotate(body.rv_dir, a, -0.25), body.lv_dir2, ao][:n]
        views = []
        for d in directions:
            normal = _rotate(np.cross(a, d), d, rng.uniform(-0.1, 0.1))
            normal /= np.linalg.norm(normal)
            views.append(_orient(body, lv_centre + rng.uniform(-8, 8, 3), normal, spin))
        return views
    levels = (
        np.linspace(-4.0, body.lv_length + 6.0, n)
        if name == "cine_sax"
        else np.linspace(0.15, 0.8, n) * body.lv_length
    )
    first = _orient(body, body.base, a, spin)
    offset = rng.uniform(-10, 10, 2) @ np.stack([first.ex, first.ey])
    return [View(body.base + a * s + offset, first.ex, first.ey) for s in levels]


def body_extent(body: anatomy.Body, view: View) -> tuple[float, float]:
    """Extent [mm] of the torso in a plane along its rows (y) and columns (x): what the phase
    field of view must cover to avoid fold-over."""
    grid = View(view.centre, view.ex, view.ey).points(80, 80, 8.0)
    cx, cy, a_t, b_t = body.torso
    inside = anatomy.vertical(grid, cx, cy, a_t, b_t) < 0
    uv = (grid - view.centre)[inside] @ np.stack([view.ey, view.ex]).T
    return tuple(np.ptp(uv, axis=0) + 8.0) if inside.any() else (300.0, 300.0)


def matrix(
    cfg: PhantomConfig, name: str, extent: float, rng: np.random.Generator
) -> tuple[int, int]:
    """``(ky, kx)`` of a file: the read-out field of view (384 mm short axis and mapping, 336 mm
    long axis) twice oversampled; the phase field of view is drawn uniformly over the real
    data's range of line counts (at 1.5 mm: 162-246 short axis, 168-204 long axis; mapping
    144-204, our assumption) from the torso's ``extent`` along the phase direction (less 8 %,
    so a large subject folds over a little, as in the real data) up; the line count is even.
    The files' shapes spread over the real range, and so does the share of air in an image."""
    read_fov = 336.0 if name == "cine_lax" else 384.0
    low, high = {"cine_sax": (243.0, 369.0), "cine_lax": (252.0, 306.0)}.get(name, (216.0, 306.0))
    smallest = float(np.clip(extent * 0.92, low, high))
    fov = smallest + rng.uniform() * (high - smallest)
    ny = 2 * int(round(fov / cfg.pixel_mm / 2))
    return ny, 2 * int(round(read_fov / cfg.pixel_mm))


# ----------------------------------------------------------------------------- contrast
def bssfp(
    pd: np.ndarray, t1: np.ndarray, t2: np.ndarray, fresh: np.ndarray | float = 0.0
) -> np.ndarray:
    """Balanced SSFP at echo time TR / 2: the steady state, and for a ``fresh`` fraction of
    spins (blood flowing into the slice) the start of the approach to it, PD sin(alpha / 2)."""
    tr, alpha = BSSFP["tr"], np.deg2rad(BSSFP["flip_deg"])
    e1, e2 = np.exp(-tr / t1), np.exp(-tr / t2)
    s = pd * np.sin(alpha) * (1 - e1) / (1 - (e1 - e2) * np.cos(alpha) - e1 * e2)
    s = s + fresh * (pd * np.sin(alpha / 2) - s)
    return s * np.exp(-tr / 2 / t2)


def off_resonance(body: anatomy.Body, p: np.ndarray, lung: np.ndarray, pixel: float) -> np.ndarray:
    """Off-resonance [Hz] on a plane: a smooth shim residual, and the susceptibility step at the
    lungs (air) felt in the tissue next to them (the lung fraction blurred over ~1 cm)."""
    from scipy.ndimage import gaussian_filter

    near_lung = gaussian_filter(lung, B0["lung_blur_mm"] / pixel)
    return B0["shim_hz"] * body.b0(p).reshape(lung.shape) + B0["lung_hz"] * near_lung


def bssfp_response(df_hz: np.ndarray) -> np.ndarray:
    """Balanced SSFP's off-resonance response at TE = TR / 2 (alternating RF phase), relative to
    on-resonance. The echo at TR / 2 refocuses the off-resonance precession (Scheffler and
    Hennig, MRM 2003: the signal there is spin-echo-like): within a pass band the phase is
    constant, and from one band to the next it flips by pi; at the dark bands between them
    (precession per TR theta = +-pi, i.e. +-1 / (2 TR)) the signal falls (a dip of width
    ~0.35 rad). ``tests/test_phantom.py`` checks the phases against a Bloch simulation."""
    turns = np.asarray(df_hz) * BSSFP["tr"] / 1000.0  # theta / (2 pi)
    band = np.round(turns)
    to_band = np.pi - np.abs(2 * np.pi * (turns - band))  # distance to the nearest dark band
    sign = 1.0 - 2.0 * np.mod(band, 2)  # +1 in even bands, -1 in odd ones
    return ((1.0 - 0.85 * np.exp(-((to_band / 0.35) ** 2))) * sign).astype(np.complex128)


def fat_response(df_hz: np.ndarray) -> np.ndarray:
    """Fat's bSSFP response at TE = TR / 2 under the off-resonance ``df_hz`` (water's): the six
    peaks of ``FAT_PEAKS_PPM`` at 3 T, each through :func:`bssfp_response` at its own frequency,
    summed with their amplitudes. At TR 3 ms the four peaks below -1.9 ppm lie in the next pass
    band (opposite sign to water), the two near water in water's, and the -3.8 ppm peak near a
    dark band: on resonance the sum is about -0.8 (fat opposite to water)."""
    out = np.zeros(np.shape(df_hz), np.complex128)
    for ppm, amp in zip(FAT_PEAKS_PPM, FAT_PEAK_AMPLITUDES):
        out += amp * bssfp_response(df_hz + ppm * 1e-6 * 42.577e6 * 3.0)
    return out


def molli(pd: np.ndarray, t1: np.ndarray, ti: float) -> np.ndarray:
    """Signed MOLLI signal at inversion time ``ti``: A (1 - (B/A) exp(-TI / T1*))."""
    t1_star = t1 / (MOLLI_B_OVER_A - 1.0)
    return 0.5 * pd * (1.0 - MOLLI_B_OVER_A * np.exp(-ti / t1_star))


def t2prep(pd: np.ndarray, t2: np.ndarray, te: float) -> np.ndarray:
    """Signal after a T2 preparation of echo time ``te``: A exp(-TE / T2)."""
    return 0.5 * pd * np.exp(-te / t2)


# ----------------------------------------------------------------------------- one file
@dataclass
class Simulated:
    """One file of one case: k-space per coil type (h5py order), the inversion / echo times
    (``None`` for cine) and the truth on the acquired grid (cine: ``label`` ``(t, kz, ky, kx)``;
    mapping: ``pd``, ``t1``, ``t2``, ``label`` ``(kz, ky, kx)``)."""

    kspace: dict[str, np.ndarray]
    times: np.ndarray | None
    truth: dict[str, np.ndarray]


def draw_case(cfg: PhantomConfig, index: int, split: str = "TrainingSet") -> anatomy.Body:
    """The anatomy of case ``index`` of ``split``, seeded by (seed, split, index)."""
    return anatomy.draw_body(
        np.random.default_rng([cfg.seed, SPLIT_ID[split], index]), fat_mm=cfg.fat_mm
    )


def _slice_maps(
    body: anatomy.Body, view: View, shape: tuple[int, int], pixel: float, contraction: np.ndarray
):
    """Per frame ``(pd, t1, t2, label)`` maps ``(ny, nx)`` of one plane, and its points: the body
    is painted once, the heart per frame and only near the heart."""
    p = view.points(*shape, pixel)
    w = 0.5 * pixel
    static = anatomy.paint(body, anatomy.body_layers(body, p, w), len(p))
    near = np.flatnonzero(
        np.linalg.norm(p - (body.base + body.axis * 0.4 * body.lv_length), axis=1) < 115.0
    )
    fine = body.fine * min(1.0, 1.5 / pixel)  # a larger voxel averages the fine texture
    texture = np.clip(1.0 + 0.05 * body.texture(p) + fine * body.fine_texture(p), 0.2, None)
    out = []
    for c in contraction:
        maps = [a.copy() for a in static]
        patch = anatomy.paint(
            body,
            anatomy.heart_layers(body, p[near], c, w),
            len(near),
            start=tuple(a[near] for a in static),
        )
        for a, b in zip(maps, patch):
            a[near] = b
        maps[0] = maps[0] * texture
        out.append(tuple(a.reshape(shape) for a in maps))
    return out, p


def _weightings(cfg: PhantomConfig, name: str, body, rng: np.random.Generator):
    """``(contraction per frame, times)``: a cine file's frames over one cycle (``times`` None),
    or a map's one mid-diastolic frame and its inversion or echo times."""
    if name.startswith("cine"):
        phases = np.arange(cfg.cine_frames) / cfg.cine_frames
        return anatomy.volume_curve(phases, body.systole), None
    contraction = np.array([0.1])  # mid-diastole, like the real maps
    times = (
        np.round(np.asarray(T1_INVERSION_TIMES) * rng.uniform(0.97, 1.03), 1)
        if name == "T1map"
        else np.asarray(T2_ECHO_TIMES)
    )
    return contraction, times


def _objects(cfg, body, views, shape, contraction, times, name, array):
    """Per weighting and slice the magnetisation ``obj`` ``(w, z, y, x)`` (bSSFP with off-
    resonance for cine, MOLLI or T2-prep for the maps, fat's chemical-shift phase), the coil
    sensitivities ``(z, c, y, x)``, the background phase ``(z, y, x)`` and the truth (every
    cine frame's tissue label; each map's PD, T1, T2 and label)."""
    ref = coil_model.reference_field()
    n_slices = len(views)
    n_w = len(contraction) if times is None else len(times)
    obj = np.empty((n_w, n_slices) + shape, np.complex64)
    # fat and water precess apart: at the echo time (TR / 2) fat carries this phase
    fat_phase = np.exp(2j * np.pi * FAT_SHIFT_HZ * BSSFP["tr"] / 2 / 1000.0)
    sens = np.empty((n_slices, len(array)) + shape, np.complex64)
    background = np.empty((n_slices,) + shape, np.complex64)
    if times is None:  # cine: the tissue label of every frame
        truth = {"label": np.empty((n_w, n_slices) + shape, np.uint8)}
    else:
        kinds = (("pd", np.float32), ("t1", np.float32), ("t2", np.float32), ("label", np.uint8))
        truth = {k: np.empty((n_slices,) + shape, dt) for k, dt in kinds}
    bp = body.background_phase
    for z, view in enumerate(views):
        maps, p = _slice_maps(body, view, shape, cfg.pixel_mm, contraction)
        sens[z] = coil_model.sensitivities(array, p, ref).reshape((len(array),) + shape)
        phase = bp[0] + (bp[1] * p[:, 0] + bp[2] * p[:, 1] + bp[3] * p[:, 2]) / 150.0
        background[z] = np.exp(1j * phase).reshape(shape)
        if times is None:
            lung = (maps[0][3] == anatomy.LABEL["lung"]).astype(np.float64)
            df = off_resonance(body, p, lung, cfg.pixel_mm)
            water = bssfp_response(df)
            fatty = (
                fat_response(df)
                if cfg.fat_spectrum == "six-peak"
                else bssfp_response(df + FAT_SHIFT_HZ)  # one peak at -3.4 ppm
            )
            for t, (pd, t1, t2, label, flow, fat) in enumerate(maps):
                truth["label"][t, z] = label
                obj[t, z] = bssfp(pd, t1, t2, body.inflow * flow) * (
                    (1 - fat) * water + fat * fatty
                )
        else:
            pd, t1, t2, label, _, fat = maps[0]
            for k, tk in enumerate(times):
                obj[k, z] = (molli(pd, t1, tk) if name == "T1map" else t2prep(pd, t2, tk)) * (
                    1 + fat * (fat_phase - 1)
                )
            truth["pd"][z], truth["t1"][z], truth["t2"][z], truth["label"][z] = pd, t1, t2, label
    return obj, sens, background, truth


def _acquire(
    cfg, obj, sens, background, array, times, rng, noise, mix=None
) -> dict[str, np.ndarray]:
    """Fully sampled k-space per coil type: each weighting through the coils, correlated
    noise (std ``noise`` at 1.5 mm), the single coil as the sensitivity-weighted combination,
    the segments' drift. With ``mix`` (``(len(array), n)``, a coil compression) ``sens`` are
    the virtual coils' and the physical coils' noise covariance C becomes mix^H C mix."""
    n_w, n_slices, shape = obj.shape[0], obj.shape[1], obj.shape[2:]
    cov = coil_model.noise_covariance(array, rng)
    if mix is not None:
        cov = mix.conj().T @ cov @ mix
    chol = np.linalg.cholesky(cov).astype(np.complex64)
    weighted = sens * background[:, None]  # (kz, kc, y, x)
    n_c = sens.shape[1]
    out = {
        coil: np.empty(
            (n_w, n_slices) + ((n_c,) if coil == "MultiCoil" else ()) + shape, np.complex64
        )
        for coil in cfg.coils
    }
    if "SingleCoil" in cfg.coils:  # one virtual coil: sensitivity-weighted combination
        combine = np.conj(sens) / np.sqrt((np.abs(sens) ** 2).sum(1, keepdims=True) + 1e-12)
    sigma = np.float32(noise * (1.5 / cfg.pixel_mm) ** 2 / np.sqrt(2))
    drift = (
        _segment_drift(cfg, shape, rng) * np.float32(cfg.scale)
        if times is None
        else np.complex64(cfg.scale)
    )
    for t in range(n_w):
        white = rng.standard_normal((n_c, n_slices * shape[0] * shape[1] * 2), np.float32)
        white = (chol @ white.view(np.complex64)) * sigma  # coil covariance
        images = obj[t][:, None] * weighted
        images += white.reshape((n_c, n_slices) + shape).transpose(1, 0, 2, 3)
        if "MultiCoil" in out:
            out["MultiCoil"][t] = fft2c(images) * drift
        if "SingleCoil" in out:
            out["SingleCoil"][t] = fft2c((images * combine).sum(1)) * drift
    return out


def simulate(cfg: PhantomConfig, index: int, name: str, split: str = "TrainingSet") -> Simulated:
    """Fully sampled k-space of one file of case ``index`` (0-based), both coil types.

    Multi-coil ``(t, kz, kc, ky, kx)``, single-coil ``(t, kz, ky, kx)``, complex64.
    """
    body = draw_case(cfg, index, split)
    rng = np.random.default_rng([cfg.seed, SPLIT_ID[split], index, FILE_ID[name]])
    n_slices = {"cine_sax": cfg.sax_slices, "cine_lax": cfg.lax_slices}.get(
        name, cfg.mapping_slices
    )
    views = _views(body, name, n_slices, rng)
    shape = matrix(cfg, name, max(body_extent(body, v)[0] for v in views), rng)
    contraction, times = _weightings(cfg, name, body, rng)
    if cfg.coil_array == "dense-30":
        array = coil_model.dense_array(body.torso, gap=cfg.coil_gap_mm, radius=DENSE_RADIUS_MM)
    else:
        array = coil_model.cardiac_array(body.torso, gap=cfg.coil_gap_mm, radius=cfg.coil_radius_mm)
        chosen = np.unique(np.linspace(0, len(array) - 1, cfg.n_coils).round().astype(int))
        array = [array[i] for i in chosen]
    obj, sens, background, truth = _objects(
        cfg, body, views, shape, contraction, times, name, array
    )
    noise = cfg.noise if cfg.noise is not None else subject_noise(cfg, body, array, index, split)
    mix = None
    if len(array) > cfg.n_coils:  # compressed to n_coils virtual channels
        mix = coil_model.compression((o * s for o, s in zip(obj[0][:, None], sens)), cfg.n_coils)
        sens = np.einsum("cv,zcyx->zvyx", mix.conj(), sens).astype(np.complex64)
    out = _acquire(cfg, obj, sens, background, array, times, rng, noise, mix)
    return Simulated(out, times, truth)


def subject_noise(
    cfg: PhantomConfig, body: anatomy.Body, array: list, index: int, split: str = "TrainingSet"
) -> float:
    """The receiver noise std (per coil, complex, at 1.5 mm pixels, in units of the signal of
    PD 1 at the reference sensitivity) that gives case ``index`` its myocardial SNR, drawn from
    ``cfg.myocardial_snr`` per subject: the same coils see the same body, so every file of a
    subject shares its noise.

    The SNR is that of the multi-coil RSS image in the mid-ventricular septum (where a reader
    puts the ROI): the myocardium's on-resonance bSSFP signal S times the coils' combined
    sensitivity |s|, over the standard deviation of the RSS image's noise there, sqrt(u^H C u
    / 2) times the noise std, with u = s / |s| and C the coils' correlation
    (:func:`~.coils.correlation`; mean channel level 1).
    Measured in conventional breath-hold 2D bSSFP cine (1.8 x 1.8 x 8 mm): myocardial SNR 29 +- 7
    and blood-myocardium CNR 69 +- 14 (PMC8147553, Table 1; the blood-myocardium CNR at 3 T
    in Maroules et al., JMRI 2008: 48 +- 7). ``tests/test_phantom.py`` measures the SNR on a
    simulated file."""
    snr = np.random.default_rng([cfg.seed, SPLIT_ID[split], index, 100]).uniform(
        *cfg.myocardial_snr
    )
    septum = (
        body.base
        + body.axis * 0.4 * body.lv_length
        + body.rv_dir * (body.lv_radius + body.wall / 2)
    )
    s = coil_model.sensitivities(array, septum[None], coil_model.reference_field())[:, 0]
    u = s / np.linalg.norm(s)
    spread = np.sqrt(np.real(u.conj() @ coil_model.correlation(array) @ u) / 2)
    myo = float(bssfp(*body.tissues["myocardium"]))
    return myo * float(np.linalg.norm(s)) / (snr * spread)


def _segment_drift(
    cfg: PhantomConfig, shape: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Phase factors ``(ky, kx)`` of a segmented cine acquisition: each heartbeat acquires a
    block of consecutive ky lines (for every frame), and between heartbeats the patient drifts
    a little within the breath-hold; a rigid in-plane shift ``d`` multiplies k-space by
    ``exp(-2 pi i k.d)``. The inconsistency between blocks is what makes real cine k-space
    rougher than a single-shot acquisition's (ghosts along the phase direction)."""
    ny, nx = shape
    per_beat = max(2, int(round(cfg.lines_per_beat * 1.5 / cfg.pixel_mm)))
    beats = -(-ny // per_beat)
    drift = rng.normal(0.0, cfg.drift_mm, (beats, 2))
    drift -= drift.mean(0)
    block = np.minimum(np.arange(ny) // per_beat, beats - 1)
    ky = (np.arange(ny) - ny // 2) / (ny * cfg.pixel_mm)
    kx = (np.arange(nx) - nx // 2) / (nx * cfg.pixel_mm)
    return np.exp(
        -2j
        * np.pi
        * (ky[:, None] * drift[block, 0][:, None] + kx[None, :] * drift[block, 1][:, None])
    ).astype(np.complex64)


def simulate_file(
    cfg: PhantomConfig, index: int, name: str, coil: str, split: str = "TrainingSet"
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(kspace, times)`` of one file of one coil type (see :func:`simulate`)."""
    sim = simulate(dataclasses.replace(cfg, coils=(coil,)), index, name, split)
    return sim.kspace[coil], sim.times


# ----------------------------------------------------------------------------- the tree
def case_name(index: int) -> str:
    """The CMRxRecon name of case ``index`` (0-based): ``P001``, ``P002`` ..."""
    return f"P{index + 1:03d}"


def truth_path(root: str | Path, split: str, case: str, name: str) -> Path:
    """Where a file's truth is saved (outside the challenge layout)."""
    return Path(root) / "Truth" / split / case / f"{name}.npz"


def load_truth(path: str | Path) -> dict[str, np.ndarray]:
    """The truth of one file on the acquired (oversampled) grid: ``label`` (indices into
    ``label_names``), ``(t, kz, ky, kx)`` for cine; for mapping ``pd``, ``t1``, ``t2`` [ms] and
    ``label``, each ``(kz, ky, kx)``, and the ``times``."""
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def expected_pair_counts(
    cfg: PhantomConfig,
    coils: tuple[str, ...],
    val_fraction: float,
    tasks: tuple[str, ...] = io.TASKS,
    accs: tuple[int, ...] = io.ACCS,
) -> dict[str, dict[int, tuple[int, int]]]:
    """Table 1 predicted from the phantom's configuration alone, ``[task][acc] -> (train, valid)``
    (an independent check of the preprocessing): slices x frames per file, per case, per coil
    type, split by case as :func:`~diffcmr_core.data.pairs.split_cases` does."""

    n_coils = len(set(cfg.coils) & set(coils))
    per_case = {
        "cine": cfg.cine_frames * (cfg.sax_slices + cfg.lax_slices),
        "mapping": (len(T1_INVERSION_TIMES) + len(T2_ECHO_TIMES)) * cfg.mapping_slices,
    }
    train, val = split_cases([case_name(i) for i in range(cfg.n_cases)], val_fraction)
    return {
        task: {
            acc: (per_case[task] * n_coils * len(train), per_case[task] * n_coils * len(val))
            for acc in accs
        }
        for task in tasks
    }


def validation_truth_root(root: str | Path) -> Path:
    """Where the phantom keeps the fully sampled files of its ValidationSet, for scoring: a
    CMRxRecon tree of its own (``<root>/ValidationTruth/<coil>/<Task>/ValidationSet/FullSample``),
    outside the challenge layout, which has no FullSample for that set."""
    return Path(root) / "ValidationTruth"


def write_case(
    root: str | Path, cfg: PhantomConfig, index: int, split: str = "TrainingSet"
) -> None:
    """Write every file of case ``index`` (both coil types, cine and mapping, every factor of the
    challenge; fully sampled only in the TrainingSet, and for the ValidationSet in
    :func:`validation_truth_root`) and the mapping truth."""
    case = case_name(index)
    for task, names in io.TASK_FILES.items():
        for name in names:
            sim = simulate(cfg, index, name, split)
            mask_shape = next(iter(sim.kspace.values())).shape[-2:]
            masks = {acc: equispaced_mask(*mask_shape, acc, cfg.acs_lines) for acc in io.ACCS}
            for coil, kspace in sim.kspace.items():
                if split != "TrainingSet":  # kept for scoring, outside the challenge layout
                    io.save_kspace(
                        io.file_path(
                            validation_truth_root(root), coil, task, case, name, split=split
                        ),
                        io.kspace_key(coil, None),
                        kspace,
                    )
                for acc in ((None,) if split == "TrainingSet" else ()) + io.ACCS:
                    data = kspace
                    if acc is not None:
                        io.save_mask(
                            io.file_path(
                                root, coil, task, case, name, kind="mask", acc=acc, split=split
                            ),
                            io.mask_key(acc),
                            masks[acc],
                        )
                        data = kspace * masks[acc]
                    io.save_kspace(
                        io.file_path(root, coil, task, case, name, acc=acc, split=split),
                        io.kspace_key(coil, acc),
                        data,
                    )
                    if sim.times is not None:
                        io.save_times(
                            io.file_path(
                                root, coil, task, case, name, kind="times", acc=acc, split=split
                            ),
                            sim.times,
                        )
                    del data
            path = truth_path(root, split, case, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            extra = {} if sim.times is None else {"times": sim.times}
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.savez_compressed(
                        f, **sim.truth, **extra, label_names=np.array(anatomy.TISSUE_NAMES)
                    )


MANIFEST = "phantom-files.json"  # the phantom's claim on a folder: its config and its cases
_TOP = (*io.COIL_TYPES, "Truth", "ValidationTruth")


def _files(root: Path) -> list[Path]:
    """Every file under ``root`` (relative), but the phantom's markers, folder locks and the
    temporaries of atomic writes."""
    skip = {"phantom.json", MANIFEST, ".lock"}
    return sorted(
        p.relative_to(root)
        for p in root.rglob("*")
        if (p.is_file() or p.is_symlink()) and p.name not in skip and not p.name.endswith(".tmp")
    )


def _claimed(rel: Path, cases: set[tuple[str, str]]) -> bool:
    """Whether ``rel`` lies in a case folder the phantom claimed (``(split, case)`` pairs), in
    one of its own top folders."""
    parts = rel.parts
    return bool(parts) and parts[0] in _TOP and any(s in parts and c in parts for s, c in cases)


def _read_manifest(root: Path) -> dict | None:
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return {"config": str(data["config"]), "cases": {tuple(c) for c in data["cases"]}}
    except (OSError, ValueError, KeyError, TypeError):
        raise DiffCMRError(
            path,
            "unreadable phantom manifest (not written by this study?); "
            "remove the folder or choose another",
        ) from None


def _write_manifest(root: Path, cfg: PhantomConfig, cases: set[tuple[str, str]]) -> None:
    write_text_atomic(
        root / MANIFEST, json.dumps({"config": cfg.to_json(), "cases": sorted(map(list, cases))})
    )


def _own_files(root: Path) -> tuple[list[Path], list[Path], dict | None]:
    """``(ours, foreign, manifest)``: the files under ``root`` the phantom wrote, by its
    manifest (a tree of an older version, with ``phantom.json`` but no manifest: its own top
    folders), and every other file."""
    manifest = _read_manifest(root)
    files = _files(root)
    if manifest is not None:
        ours = [f for f in files if _claimed(f, manifest["cases"])]
    elif (root / "phantom.json").is_file():
        ours = [f for f in files if f.parts[0] in _TOP]
    else:
        ours = []
    mine = set(ours)
    return ours, [f for f in files if f not in mine], manifest


def _summary(files: list[Path], most: int = 3) -> str:
    shown = ", ".join(str(f) for f in files[:most])
    return shown + (f" and {len(files) - most} more" if len(files) > most else "")


def _refuse_foreign(root: Path, force: bool) -> tuple[list[Path], list[Path], dict | None]:
    """:func:`_own_files` of ``root``; an error naming the folder when it holds files the phantom
    did not write (unless ``force``)."""
    ours, foreign, manifest = _own_files(root)
    if foreign and not force:
        raise DiffCMRError(
            root,
            f"holds {len(foreign)} files the phantom did not write "
            f"({_summary(foreign)}); it writes only into an empty folder "
            "or one it made (choose another folder, or pass --force to "
            "write beside those files, replacing any of the same name)",
        )
    return ours, foreign, manifest


def make_phantom(
    root: str | Path,
    cfg: PhantomConfig = PhantomConfig(),
    *,
    progress: bool = True,
    force: bool = False,
) -> Path:
    """Write a complete synthetic CMRxRecon tree under ``root``; idempotent.

    A finished tree carries ``phantom.json`` (its config); a tree with the same config is reused.
    The phantom never writes into a folder holding files it did not write (a real CMRxRecon tree,
    say): that is an error naming the folder and some of the files, unless ``force`` (then it
    writes beside them, replacing same-named files). Before writing a case it claims it in
    ``phantom-files.json``, so an interrupted run is recognised as its own and resumed case by
    case (every file is written atomically); a tree made with another config has its own files,
    and only those, deleted first, and says so.
    """
    root = Path(root)
    stamp = root / "phantom.json"
    if root.exists() and not root.is_dir():
        raise DiffCMRError(root, "the phantom's folder is a file")
    if stamp.is_file() and stamp.read_text() == cfg.to_json():
        return root
    if root.is_dir():  # checked before anything (even a lock) is written there
        _refuse_foreign(root, force)
    root.mkdir(parents=True, exist_ok=True)
    with folder_lock(root):
        ours, foreign, manifest = _refuse_foreign(root, force)
        made_with = (
            manifest["config"] if manifest else (stamp.read_text() if stamp.is_file() else None)
        )
        if ours and made_with != cfg.to_json():
            print(
                f"phantom: {root} holds a tree made with another configuration: deleting its "
                f"{len(ours)} files ({_summary(ours)})",
                flush=True,
            )
            stamp.unlink(missing_ok=True)
            for rel in ours:
                (root / rel).unlink(missing_ok=True)
            for folder in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
                if folder.relative_to(root).parts[0] in _TOP and not any(folder.iterdir()):
                    folder.rmdir()
            manifest = None
        stamp.unlink(missing_ok=True)
        jobs = [("TrainingSet", i) for i in range(cfg.n_cases)]
        jobs += [("ValidationSet", i) for i in range(cfg.n_val_cases)]
        claimed = (
            set(manifest["cases"]) if manifest and manifest["config"] == cfg.to_json() else set()
        )
        for split, index in tqdm(jobs, desc="phantom cases", disable=not progress):
            claimed.add((split, case_name(index)))
            _write_manifest(root, cfg, claimed)  # claimed before a file is written
            write_case(root, cfg, index, split)
        write_text_atomic(stamp, cfg.to_json())
    return root
