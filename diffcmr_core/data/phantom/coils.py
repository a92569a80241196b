"""Receive coils of the phantom: circular loops around the torso, sensitivities by Biot-Savart,
and correlated receiver noise.

A loop's field is the closed form of a circular current loop (complete elliptic integrals); the
receive sensitivity of a coil is its transverse field ``B_x - i B_y`` with the static field
along the body axis z (the reciprocity principle). The array is an anterior array of 2 x 3 loops
on the chest and a posterior array of 2 x 2 loops in the table under the back, the usual cardiac
set-up, 10 channels as the CMRxRecon files (which hold 10 compressed channels). Positions follow
the subject's torso, so a larger subject is closer to its coils.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ellipe, ellipk

CONDUCTOR_MM = 5.0  # half-width of a loop's copper strip (a 10 mm trace)


def loop_field(
    p: np.ndarray,
    centre: np.ndarray,
    normal: np.ndarray,
    radius: float,
    conductor: float = CONDUCTOR_MM,
) -> np.ndarray:
    """Magnetic field ``(n, 3)`` of a unit-current circular loop (in units of mu0 I / pi) at points
    ``p (n, 3)`` [mm]: the closed form with complete elliptic integrals K and E. The current
    flows in a conductor ``conductor`` mm in half-width, not a line: closer to the wire than
    that, the field is the one at that distance (a line current's field would diverge)."""
    normal = normal / np.linalg.norm(normal)
    q = p - centre
    z = q @ normal
    radial = q - z[:, None] * normal
    rho = np.linalg.norm(radial, axis=1)
    unit_r = radial / np.maximum(rho, 1e-9)[:, None]
    a = radius
    # inside the conductor: evaluate on its surface, the same direction from the wire
    c = max(conductor, 1e-3 * a)
    d = np.hypot(rho - a, z)
    inside = d < c
    if inside.any():
        scale = c / np.maximum(d[inside], 1e-12)
        du = np.where(d[inside] > 1e-12, (rho[inside] - a) * scale, 0.0)
        dz = np.where(d[inside] > 1e-12, z[inside] * scale, c)
        rho, z = rho.copy(), z.copy()
        rho[inside], z[inside] = a + du, dz
    alpha2 = (rho - a) ** 2 + z**2  # the squared distance to the wire (>= c^2)
    beta2 = a**2 + rho**2 + z**2 + 2 * a * rho
    beta = np.sqrt(beta2)
    m = 1.0 - alpha2 / beta2
    K, E = ellipk(m), ellipe(m)
    b_z = ((a**2 - rho**2 - z**2) * E + alpha2 * K) / (2 * alpha2 * beta)
    safe = np.maximum(rho, 1e-9)
    b_rho = z * ((a**2 + rho**2 + z**2) * E - alpha2 * K) / (2 * alpha2 * beta * safe)
    b_rho = np.where(rho > 1e-6 * a, b_rho, 0.0)
    return b_rho[:, None] * unit_r + b_z[:, None] * normal


@dataclass(frozen=True)
class Coil:
    """One receive coil: a loop of ``radius`` mm at ``centre``, facing ``normal``."""

    centre: np.ndarray
    normal: np.ndarray
    radius: float


def cardiac_array(
    torso: tuple[float, float, float, float],
    heart_z: float = 0.0,
    gap: tuple[float, float] = (30.0, 40.0),
    radius: float = 90.0,
    z_shift: float = 0.0,
) -> list[Coil]:
    """An anterior 2 x 3 array lying on the chest (following the torso's curve, ``gap[0]`` mm
    off the skin) and a posterior 2 x 2 array of 1.2 x larger loops in the table, ``gap[1]`` mm
    below the back. Neighbouring loops overlap: their centres are 1.5 radii apart, the overlap
    at which two loops' mutual inductance vanishes (Roemer et al., MRM 1990)."""
    cx, cy, a_t, b_t = torso
    coils = []
    step = 1.5 * radius
    for zz in (heart_z + step / 2 + z_shift, heart_z - step / 2 + z_shift):
        for x in (-step, 0.0, step):
            t = np.clip(x / a_t, -0.95, 0.95)  # point on the anterior surface
            surface = np.array([cx + x, cy - b_t * np.sqrt(1 - t**2), zz])
            normal = np.array([x / a_t**2, -(cy - surface[1]) / b_t**2, 0.0])
            normal = -normal / np.linalg.norm(normal)  # outward -> inward
            coils.append(Coil(surface - normal * gap[0], normal, radius))
    step = 1.5 * radius * 1.2
    for zz in (heart_z + step / 2 + z_shift, heart_z - step / 2 + z_shift):
        for x in (-step / 2, step / 2):
            coils.append(
                Coil(
                    np.array([cx + x, cy + b_t + gap[1], zz]),
                    np.array([0.0, -1.0, 0.0]),
                    radius * 1.2,
                )
            )
    return coils


def dense_array(
    torso: tuple[float, float, float, float],
    heart_z: float = 0.0,
    gap: tuple[float, float] = (30.0, 40.0),
    radius: float = 45.0,
) -> list[Coil]:
    """A 30-element cardiac array: an anterior blanket of 3 rows x 6 loops following the chest
    (``gap[0]`` mm off the skin) and 3 rows x 4 loops of the spine array in the table
    (``gap[1]`` mm below the back), all of ``radius`` mm, neighbours 1.5 radii apart (no
    mutual inductance, Roemer et al., MRM 1990), centred on the heart along the body axis.
    The layout is our assumption of a modern 3 T cardiac set-up (element count and size of
    the order of an 18-element anterior array plus the spine elements under the chest); the
    CMRxRecon files hold such data compressed to 10 channels (:func:`compression`)."""
    cx, cy, a_t, b_t = torso
    step = 1.5 * radius
    rows = [heart_z + (r - 1) * step for r in range(3)]
    coils = []
    for zz in rows:
        for j in range(6):
            x = (j - 2.5) * step
            t = np.clip(x / a_t, -0.95, 0.95)  # point on the anterior surface
            surface = np.array([cx + x, cy - b_t * np.sqrt(1 - t**2), zz])
            normal = np.array([x / a_t**2, -(cy - surface[1]) / b_t**2, 0.0])
            normal = -normal / np.linalg.norm(normal)  # outward -> inward
            coils.append(Coil(surface - normal * gap[0], normal, radius))
    for zz in rows:
        for j in range(4):
            centre = np.array([cx + (j - 1.5) * step, cy + b_t + gap[1], zz])
            coils.append(Coil(centre, np.array([0.0, -1.0, 0.0]), radius))
    return coils


def compression(images, n: int) -> np.ndarray:
    """The ``(n_coils, n)`` matrix ``A`` of a principal-component coil compression (the
    virtual coils are ``A^H`` times the physical ones): the ``n`` leading eigenvectors of the
    coil images' covariance, summed over ``images`` (an iterable of ``(n_coils, y, x)``
    arrays: the slices). The root sum of squares of the virtual coils keeps the share of the
    signal energy in those components; noise correlated as ``C`` becomes ``A^H C A``."""
    cov = None
    for image in images:
        x = np.asarray(image, np.complex128).reshape(image.shape[0], -1)
        cov = x @ x.conj().T if cov is None else cov + x @ x.conj().T
    w, v = np.linalg.eigh(cov)
    return v[:, np.argsort(w)[::-1][:n]]


def sensitivities(coils: list[Coil], p: np.ndarray, reference: float) -> np.ndarray:
    """Complex receive sensitivities ``(n_coils, n)``: ``B_x - i B_y`` of each coil at ``p``,
    divided by ``reference`` (a fixed field scale, the same for every subject, so that noise and
    signal keep their physical ratio)."""
    out = np.empty((len(coils), len(p)), np.complex128)
    for i, c in enumerate(coils):
        b = loop_field(p, c.centre, c.normal, c.radius)
        out[i] = (b[:, 0] - 1j * b[:, 1]) / reference
    return out


def reference_field(radius: float = 55.0, depth: float = 100.0) -> float:
    """The on-axis field of a loop at ``depth`` mm: the unit of the sensitivities."""
    return float(
        np.linalg.norm(
            loop_field(
                np.array([[0.0, 0.0, depth]]), np.zeros(3), np.array([0.0, 0.0, 1.0]), radius
            )
        )
    )


def noise_covariance(
    coils: list[Coil], rng: np.random.Generator, coupling: float = 0.35, length: float = 90.0
) -> np.ndarray:
    """Receiver noise covariance ``(n_coils, n_coils)``: neighbouring coils see the same body
    noise (correlation ``coupling x exp(-distance / length)``), and the channels' noise levels
    differ by a few tens of per cent (pre-amplifiers)."""
    corr = correlation(coils, coupling, length)
    level = rng.uniform(0.85, 1.2, len(coils))
    return corr * level[:, None] * level[None]


def correlation(coils: list[Coil], coupling: float = 0.35, length: float = 90.0) -> np.ndarray:
    """The coils' noise correlation ``(n_coils, n_coils)``: ``coupling x exp(-distance /
    length)`` between neighbours, 1 on the diagonal."""
    centres = np.stack([c.centre for c in coils])
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    corr = coupling * np.exp(-dist / length)
    np.fill_diagonal(corr, 1.0)
    return corr
