"""The phantom's anatomy: a thorax in 3D, cut by imaging planes (our embedded data's ground truth).

Everything is an implicit shape in body coordinates (millimetres; x to the patient's left,
y posterior, z superior; the origin at the centre of the left ventricle at end-diastole), so a
short-axis stack, the long-axis views and the mapping slices are cuts through one body and agree
with each other. A view maps its pixels to 3D points; each structure gives a soft indicator
(edges half a pixel wide) and the structures are painted in order, later over earlier.

Structures: skin, subcutaneous fat, chest-wall and paraspinal muscles, ribs (marrow in cortical
bone), sternum, vertebrae with the spinal canal, arms; lungs with vessels; below the diaphragm's
two domes the liver, stomach (fluid under a gas bubble) and spleen; the descending aorta, the
oesophagus, the inferior vena cava; the heart: left ventricle (a truncated prolate ellipsoid
with a trabeculated endocardium and two papillary muscles), septum, the thin right-ventricular
free wall, both atria, mitral leaflets, the aortic root and ascending aorta, the pulmonary trunk,
epicardial fat (thickest in the atrioventricular and interventricular grooves), the pericardium
and pericardial fat.

Cardiac motion (cine): the left-ventricular volume follows a cycle with ejection, rapid filling,
diastasis and atrial contraction (``volume_curve``); the cavity narrows and the base descends
towards the fixed apex, myocardial volume is kept so the wall thickens, the atria fill while the
ventricles empty, and the mitral leaflets close in systole.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# tissue -> (proton density, T1 [ms], T2 [ms]) at 3 T (literature values, rounded)
TISSUES: dict[str, tuple[float, float, float]] = {
    "air": (0.0, 1000.0, 50.0),
    "skin": (0.70, 1000.0, 40.0),
    "fat": (0.90, 380.0, 130.0),
    "muscle": (0.70, 1400.0, 35.0),
    "cortical_bone": (0.05, 1000.0, 10.0),
    "marrow": (0.65, 550.0, 80.0),
    "csf": (1.00, 4000.0, 1800.0),
    "lung": (0.15, 1300.0, 40.0),
    "lung_vessel": (0.85, 1950.0, 200.0),
    "liver": (0.70, 810.0, 35.0),
    "spleen": (0.80, 1330.0, 70.0),
    "stomach_fluid": (0.95, 3000.0, 800.0),
    "stomach_wall": (0.75, 1100.0, 45.0),
    "blood": (0.85, 1950.0, 220.0),
    "myocardium": (0.75, 1200.0, 45.0),
    "pericardium": (0.30, 1000.0, 20.0),
    "valve": (0.40, 1000.0, 30.0),
    "oesophagus": (0.70, 1200.0, 40.0),
}
TISSUE_NAMES = tuple(TISSUES)
LABEL = {name: i for i, name in enumerate(TISSUE_NAMES)}


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def soft(d: np.ndarray, width: float) -> np.ndarray:
    """Soft inside-indicator of a signed distance ``d`` (mm, negative inside)."""
    return 0.5 - 0.5 * np.tanh(np.clip(d / width, -30.0, 30.0))


# ----------------------------------------------------------------------------- random fields
@dataclass(frozen=True)
class Field:
    """A smooth random 3D field, a sum of ``k`` plane waves of wavelength around ``scale`` mm;
    zero mean, unit standard deviation."""

    k: np.ndarray  # (n, 3) wave vectors [rad/mm]
    phase: np.ndarray  # (n,)

    @classmethod
    def draw(cls, rng: np.random.Generator, scale: float, n: int = 24) -> Field:
        """A field of ``n`` random plane waves of wavelength around ``scale`` mm."""
        direction = rng.standard_normal((n, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        length = 2 * np.pi / (scale * rng.uniform(0.7, 1.4, n))
        return cls(direction * length[:, None], rng.uniform(0, 2 * np.pi, n))

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """The field at points ``p`` ``(n, 3)`` [mm] -> ``(n,)``."""
        return np.cos(p @ self.k.T + self.phase).sum(-1) * np.sqrt(2.0 / len(self.phase))


# ----------------------------------------------------------------------------- shapes
def ellipsoid(p: np.ndarray, centre, axes: np.ndarray, semi) -> np.ndarray:
    """Approximate signed distance (mm) to an ellipsoid with orthonormal ``axes`` (rows)."""
    q = (p - centre) @ axes.T / np.asarray(semi)
    n = np.sqrt((q**2).sum(-1)) + 1e-9
    grad = np.sqrt(((q / np.asarray(semi)) ** 2).sum(-1)) / n + 1e-9
    return (n - 1.0) / grad


def tube(p: np.ndarray, a, b, radius: float) -> np.ndarray:
    """Signed distance to a capsule of ``radius`` around the segment ``a``-``b``."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ab = b - a
    s = np.clip((p - a) @ ab / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - a - s[:, None] * ab, axis=-1) - radius


def vertical(p: np.ndarray, x: float, y: float, rx: float, ry: float) -> np.ndarray:
    """Approximate signed distance to an elliptic cylinder along z."""
    u, v = (p[:, 0] - x) / rx, (p[:, 1] - y) / ry
    n = np.sqrt(u * u + v * v) + 1e-9
    return (n - 1.0) * n / (np.sqrt((u / rx) ** 2 + (v / ry) ** 2) + 1e-9)


# ----------------------------------------------------------------------------- the body
@dataclass(frozen=True)
class Body:
    """One subject: sizes, positions and orientation of every structure, and tissue values."""

    torso: tuple[float, float, float, float]  # centre x, y; semi-axes A (left-right), B (AP)
    fat: float  # subcutaneous fat thickness [mm]
    muscle: float  # chest-wall muscle thickness [mm]
    diaphragm: float  # z of the right dome's top [mm]
    spine: tuple[float, float]  # vertebral body centre x, y
    axis: np.ndarray  # unit long axis of the LV, base -> apex
    rv_dir: np.ndarray  # unit, perpendicular to axis, towards the RV
    lv_length: float  # base-apex length of the cavity at ED [mm]
    lv_radius: float  # cavity radius at the base at ED [mm]
    wall: float  # LV wall thickness at ED [mm]
    ef: float  # LV ejection fraction
    base_descent: float  # base-to-apex shortening at ES [mm]
    systole: float  # fraction of the cycle to end-systole
    epi_fat: float  # epicardial fat in the grooves [mm]
    tissues: dict[str, tuple[float, float, float]]
    texture: Field  # tissue texture (few % of PD)
    fine_texture: Field  # fine structure (septa, fibres), a few mm
    b0: Field  # smooth B0 inhomogeneity (shim residual)
    vessels: tuple[Field, Field]  # lung vessels: where both fields are near 0
    trabeculae: np.ndarray  # (n, 3): angular number, phase, amplitude
    background_phase: tuple[float, ...]
    vessel_width: float = 0.3
    fine: float = 0.15  # std of the fine texture
    inflow: float = 0.35  # share of fresh blood in a slice (cine)
    rib_phase: float = 0.0
    arm_offset: float = 40.0
    heart_tissues: tuple[str, ...] = field(default=("myocardium", "blood"), repr=False)

    @property
    def base(self) -> np.ndarray:
        """The centre of the mitral annulus at end-diastole."""
        return -self.axis * self.lv_length * 0.5

    @property
    def lv_dir2(self) -> np.ndarray:
        """The third axis of the heart's frame, orthogonal to the long axis and the RV direction."""
        return np.cross(self.axis, self.rv_dir)


def draw_body(rng: np.random.Generator, fat_mm: tuple[float, float] = (6.0, 24.0)) -> Body:
    """A subject with per-case size, shape, position, orientation, contrast and texture; its
    subcutaneous fat is ``fat_mm`` thick (a uniform draw; 1.3 x at the sides, 0.6 x at the
    back)."""
    size = rng.uniform(0.88, 1.12)
    a_t, b_t = 165.0 * size * rng.uniform(0.95, 1.05), 112.0 * size * rng.uniform(0.93, 1.07)
    axis = _unit(
        [
            0.55 + rng.uniform(-0.1, 0.1),
            -0.45 + rng.uniform(-0.1, 0.1),
            -0.70 + rng.uniform(-0.1, 0.1),
        ]
    )
    towards_rv = np.array([-0.7, -0.7, 0.1]) + rng.uniform(-0.1, 0.1, 3)
    rv_dir = _unit(towards_rv - (towards_rv @ axis) * axis)
    tissues = {
        k: (
            pd * rng.uniform(0.94, 1.06) if pd > 0 else 0.0,
            t1 * rng.uniform(0.95, 1.05),
            t2 * rng.uniform(0.92, 1.08),
        )
        for k, (pd, t1, t2) in TISSUES.items()
    }
    heart_scale = rng.uniform(0.9, 1.1)
    n_trab = 5
    return Body(
        torso=(rng.uniform(-35, -15), rng.uniform(20, 40), a_t, b_t),
        fat=rng.uniform(*fat_mm),
        muscle=rng.uniform(8.0, 14.0),
        diaphragm=rng.uniform(-62.0, -45.0),
        spine=(rng.uniform(-30, -15), b_t - 38.0 + rng.uniform(10, 30)),
        axis=axis,
        rv_dir=rv_dir,
        lv_length=78.0 * heart_scale,
        lv_radius=25.0 * heart_scale * rng.uniform(0.93, 1.07),
        wall=rng.uniform(8.0, 11.0),
        ef=rng.uniform(0.55, 0.65),
        base_descent=rng.uniform(10.0, 15.0),
        systole=rng.uniform(0.32, 0.4),
        epi_fat=rng.uniform(3.0, 9.0),
        tissues=tissues,
        texture=Field.draw(rng, 25.0),
        fine_texture=Field.draw(rng, 4.0, 48),
        b0=Field.draw(rng, 120.0),
        vessels=(Field.draw(rng, 45.0), Field.draw(rng, 45.0)),
        trabeculae=np.stack(
            [
                rng.integers(7, 16, n_trab),
                rng.uniform(0, 2 * np.pi, n_trab),
                rng.uniform(0.5, 1.0, n_trab),
            ],
            1,
        ),
        background_phase=tuple(rng.uniform(-1.0, 1.0, 4)),
        inflow=rng.uniform(0.4, 0.7),
        rib_phase=rng.uniform(0, 25.0),
        arm_offset=rng.uniform(30.0, 60.0),
    )


def volume_curve(phase: np.ndarray | float, systole: float = 0.36) -> np.ndarray:
    """Contraction ``c`` over the cycle (0 end-diastole, 1 end-systole): ejection until
    ``systole``, rapid filling, diastasis, atrial contraction; periodic and smooth."""
    from scipy.interpolate import CubicSpline

    knots = np.array([0.0, systole * 0.5, systole, systole + 0.18, 0.75, 0.88, 1.0])
    values = np.array([0.0, 0.62, 1.0, 0.32, 0.2, 0.08, 0.0])
    return np.clip(CubicSpline(knots, values, bc_type="periodic")(np.mod(phase, 1.0)), 0.0, 1.0)


# ----------------------------------------------------------------------------- the heart
@dataclass(frozen=True)
class HeartState:
    """The heart's geometry at one contraction (end-diastole 0, end-systole 1)."""

    base_shift: float  # base position along the axis from the ED base [mm]
    radius: float  # LV cavity radius at the base
    length: float  # LV cavity base-apex length
    epi_radius: float
    epi_length: float
    rv_scale: float
    atrial_scale: float
    mitral_open: float  # 0 closed .. 1 open


def heart_state(body: Body, c: float) -> HeartState:
    """The heart at contraction ``c``: LV volume (2/3) pi r^2 L falls by EF x c, the base moves
    ``base_descent x c`` towards the fixed apex, the myocardial volume is kept."""
    shift = body.base_descent * c
    length = body.lv_length - shift
    radius = body.lv_radius * np.sqrt((1.0 - body.ef * c) * body.lv_length / length)
    r0, l0, w = body.lv_radius, body.lv_length, body.wall
    myo = (r0 + w) ** 2 * (l0 + w) - r0**2 * l0  # ~ myocardial volume / (2/3 pi)
    epi_length = length + w * np.sqrt(l0 / length)
    epi_radius = np.sqrt((myo + radius**2 * length) / epi_length)
    return HeartState(
        shift,
        radius,
        length,
        epi_radius,
        epi_length,
        rv_scale=np.sqrt(1.0 - 0.55 * c),
        atrial_scale=1.0 + 0.25 * c,
        mitral_open=float(np.clip(1.0 - 2.0 * c, 0.0, 1.0)),
    )


def _heart_frame(body: Body, p: np.ndarray, st: HeartState):
    """(s, r, phi, radial unit vectors): s along the axis from the current base, r radial,
    phi = 0 towards the RV."""
    q = p - (body.base + st.base_shift * body.axis)
    s = q @ body.axis
    radial = q - s[:, None] * body.axis
    x, y = radial @ body.rv_dir, radial @ body.lv_dir2
    return s, np.hypot(x, y), np.arctan2(y, x)


def _ventricles(body: Body, p: np.ndarray, st: HeartState, s, r, base, frame):
    """Signed distances to the LV cavity, the LV epicardium (half prolate ellipsoids apical of
    the base plane) and the RV (a wider, shorter ellipsoid on the RV side wrapping the septum)."""
    ax, rv = body.axis, body.rv_dir
    d_cav = np.maximum(
        np.sqrt(r**2 / st.radius**2 + s**2 / st.length**2) * st.radius - st.radius, -s
    )
    d_epi = np.maximum(
        np.sqrt(r**2 / st.epi_radius**2 + s**2 / st.epi_length**2) * st.epi_radius - st.epi_radius,
        -s - 3.0,
    )
    rs = st.rv_scale
    rv_centre = base + ax * (0.32 * st.length) + rv * (0.55 * st.epi_radius)
    d_rv = ellipsoid(
        p,
        rv_centre,
        frame,
        (0.62 * st.length, 1.05 * st.radius * rs + 6, 1.75 * st.radius * (0.5 + 0.5 * rs) + 6),
    )
    return d_cav, d_epi, np.maximum(d_rv, -s - 6.0)


def _atria_and_vessels(body: Body, p: np.ndarray, st: HeartState, base, frame):
    """Signed distances to the atria (above the base plane), the aorta and the pulmonary trunk."""
    ax, rv, lv2 = body.axis, body.rv_dir, body.lv_dir2
    sa = st.atrial_scale ** (1 / 3)
    la_c = base - ax * 24 * sa - rv * 0.5 * st.radius - lv2 * 4
    ra_c = base - ax * 20 * sa + rv * 1.6 * st.radius + lv2 * 6
    d_la = ellipsoid(p, la_c, frame, (24 * sa, 22 * sa, 28 * sa))
    d_ra = ellipsoid(p, ra_c, frame, (24 * sa, 24 * sa, 22 * sa))
    ao_dir = _unit(0.75 * rv - 0.65 * lv2)  # anterior-septal outflow
    ao_valve = base + ao_dir * 0.55 * st.radius - ax * 2
    ao_top = ao_valve + _unit(-ax + np.array([0.0, 0.1, 0.9])) * 65
    d_ao = tube(p, ao_valve, ao_top, 13.5)
    pa_start = base + rv * (1.5 * st.radius) - lv2 * (0.8 * st.radius) + ax * 4
    pa_top = pa_start + _unit(-ax + np.array([0.4, 0.5, 0.7])) * 50
    return d_la, d_ra, d_ao, tube(p, pa_start, pa_top, 12.5)


def _inside_lv(body: Body, p: np.ndarray, st: HeartState, s, r, phi, base, w, d_cav):
    """Layers inside the LV cavity: trabeculation, papillary muscles, mitral leaflets."""
    ax, rv, lv2 = body.axis, body.rv_dir, body.lv_dir2
    # trabeculation: myocardial strands in the outer fifth of the cavity, away from the base
    rel = r / (st.radius * np.sqrt(np.clip(1 - (s / st.length) ** 2, 1e-3, 1)))
    pattern = sum(a * np.cos(n * phi + ph + 0.05 * s) for n, ph, a in body.trabeculae)
    pattern /= np.abs(body.trabeculae[:, 2]).sum()
    trab = soft(0.82 - rel, 0.03) * soft(-(pattern - 0.25), 0.08) * soft(8 - s, 3) * soft(d_cav, w)
    layers = [("myocardium", trab)]
    # papillary muscles: anterolateral and posteromedial columns from the mid wall
    for angle in (2.3, -2.2):
        direction = np.cos(angle) * rv + np.sin(angle) * lv2
        a = base + ax * 0.28 * st.length + direction * 0.62 * st.radius
        b = base + ax * 0.68 * st.length + direction * 0.7 * st.radius
        layers.append(("myocardium", soft(tube(p, a, b, 0.2 * st.radius + 1.0), w)))
    # mitral leaflets: a cone into the LV when open, a disc in the annulus when closed
    leaf_len = 16.0
    open_ = st.mitral_open
    leaf_r = st.radius * (0.95 - 0.25 * open_ * np.clip(s / leaf_len, 0, 1))
    on_cone = np.abs(r - leaf_r) * open_ + np.abs(s) * (1 - open_)
    extent = np.where(
        open_ > 0.5, soft(s - leaf_len, 1.0) * soft(-s, 1.0), soft(r - st.radius, 1.0)
    )
    layers.append(("valve", soft(on_cone - 1.0, w) * extent * soft(np.abs(phi - 2.2) - 1.6, 0.2)))
    return layers


def heart_layers(body: Body, p: np.ndarray, c: float, w: float) -> list[tuple[str, np.ndarray]]:
    """The heart and its surroundings at contraction ``c`` at points ``p`` (painting order)."""
    st = heart_state(body, c)
    s, r, phi = _heart_frame(body, p, st)
    base = body.base + st.base_shift * body.axis
    frame = np.stack([body.axis, body.rv_dir, body.lv_dir2])
    d_cav, d_epi, d_rv = _ventricles(body, p, st, s, r, base, frame)
    d_la, d_ra, d_ao, d_pa = _atria_and_vessels(body, p, st, base, frame)
    d_rv_epi = d_rv - 3.5
    d_la_wall, d_ra_wall = d_la - 2.5, d_ra - 2.5
    d_heart = np.minimum.reduce([d_epi, d_rv_epi, d_la_wall, d_ra_wall, d_ao - 2, d_pa - 2])
    # epicardial fat: grooves (atrioventricular at the base, interventricular at the RV insertions)
    groove = np.exp(-((s / 10.0) ** 2)) + np.exp(-(((np.abs(phi) - 1.25) / 0.3) ** 2))
    fat = 1.5 + body.epi_fat * np.clip(groove, 0, 1)
    anterior = np.clip(-(p @ np.array([0.0, 1.0, 0.0])) / 60.0, 0, 1)
    layers = [
        ("fat", soft(d_heart - fat - 1.5 - 5.0 * anterior, w)),  # pericardial fat
        ("pericardium", soft(d_heart - fat - 1.2, w)),
        ("fat", soft(d_heart - fat, w)),
        ("myocardium", soft(d_la_wall, w)),
        ("myocardium", soft(d_ra_wall, w)),
        ("blood", soft(d_la, w)),
        ("blood", soft(d_ra, w)),
        ("muscle", soft(d_ao - 2, w)),
        ("blood", soft(d_ao, w)),
        ("muscle", soft(d_pa - 2, w)),
        ("blood", soft(d_pa, w)),
        ("myocardium", soft(d_rv_epi, w)),
        ("blood", soft(d_rv, w)),
        ("myocardium", soft(d_epi, w)),
        ("blood", soft(d_cav, w)),
    ]
    return layers + _inside_lv(body, p, st, s, r, phi, base, w, d_cav)


# ----------------------------------------------------------------------------- the thorax
def _diaphragm(body: Body, p: np.ndarray, w: float) -> tuple[np.ndarray, np.ndarray]:
    """Soft masks above and below the diaphragm's domes (the right one higher)."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    cx, cy, _, _ = body.torso
    dome = (
        body.diaphragm
        - 0.0012 * (x - cx + 60) ** 2
        - 0.0015 * (y - cy) ** 2
        - 14.0 * (1 + np.tanh((x - cx - 10) / 30)) / 2
    )
    d_abdomen = z - dome
    return soft(d_abdomen, w), 1.0 - soft(d_abdomen, w)


def _cavity_layers(body: Body, p: np.ndarray, w: float, d_cavity, inside, above, below):
    """Lungs (with vessels) above the diaphragm; the abdomen below: liver on the right, stomach
    (fluid, a gas bubble on top) and spleen on the left."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    cx, cy, _, _ = body.torso
    layers = [("lung", inside * above)]
    v1, v2 = body.vessels
    lung = np.flatnonzero(inside * above > 1e-3)
    vessel = np.zeros(len(p))
    vessel[lung] = soft(np.hypot(v1(p[lung]), v2(p[lung])) - body.vessel_width, 0.03)
    layers.append(("lung_vessel", vessel * soft(d_cavity + 6, w) * above))
    top = body.diaphragm - 14.0
    d_stomach = ellipsoid(p, (cx + 70, cy - 15, top - 45), np.eye(3), (42, 34, 50))
    d_spleen = ellipsoid(p, (cx + 88, cy + 48, top - 35), np.eye(3), (26, 42, 55))
    return layers + [
        ("stomach_wall", inside * below),  # bowel on the left
        ("liver", inside * below * soft(x - cx - 55 + 0.4 * (y - cy), 4.0)),
        ("stomach_wall", soft(d_stomach, w) * below),
        ("stomach_fluid", soft(d_stomach + 4.0, w) * below),
        ("air", soft(d_stomach + 4.0, w) * soft(top - 30 - z, 1.5) * below),
        ("spleen", soft(d_spleen, w) * below),
    ]


def _midline_layers(body: Body, p: np.ndarray, w: float, below) -> list[tuple[str, np.ndarray]]:
    """Spine, sternum, aorta, oesophagus, inferior vena cava."""
    z = p[:, 2]
    cx, cy, _, b_t = body.torso
    sx, sy = body.spine
    sternum_y = cy - b_t + 2.0 + body.fat * 1.0 + body.muscle + 6.0
    return [
        ("muscle", soft(vertical(p, sx - 28, sy + 30, 20, 28), w)),
        ("muscle", soft(vertical(p, sx + 28, sy + 30, 20, 28), w)),
        ("cortical_bone", soft(vertical(p, sx, sy, 19, 17), w)),
        (
            "marrow",
            soft(vertical(p, sx, sy, 17, 15), w) * (0.75 + 0.25 * np.cos(2 * np.pi * z / 28.0)),
        ),
        ("cortical_bone", soft(vertical(p, sx, sy + 27, 10, 9), w)),
        ("csf", soft(vertical(p, sx, sy + 27, 7, 6.5), w)),
        ("cortical_bone", soft(tube(p * [1, 1, 0], [sx, sy + 37, 0], [sx, sy + 60, 0], 4.5), w)),
        ("cortical_bone", soft(vertical(p, cx + 3, sternum_y, 14, 7), w)),
        ("marrow", soft(vertical(p, cx + 3, sternum_y, 11, 5), w)),
        ("muscle", soft(vertical(p, sx + 26, sy - 28, 14.5, 14.5), w)),
        ("blood", soft(vertical(p, sx + 26, sy - 28, 12, 12), w)),
        ("oesophagus", soft(vertical(p, sx - 8, sy - 34, 9, 7), w)),
        ("air", soft(vertical(p, sx - 8, sy - 34, 2.5, 2), w)),
        ("blood", soft(vertical(p, sx - 40, sy - 38, 13, 12), w) * below),
    ]


def body_layers(body: Body, p: np.ndarray, w: float) -> list[tuple[str, np.ndarray]]:
    """Everything but the heart at points ``p`` (painting order)."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    cx, cy, a_t, b_t = body.torso
    d_torso = vertical(p, cx, cy, a_t, b_t)
    theta = np.arctan2(y - cy, x - cx)  # -pi/2 anterior, +pi/2 posterior
    post = np.clip(np.sin(theta), 0, 1)
    fat = body.fat * (1.0 + 0.3 * np.cos(theta) ** 2) * (1.0 - 0.4 * post)
    muscle = body.muscle * (1.0 + 1.4 * post**4)
    wall_in = 2.0 + fat + muscle  # depth of the rib cage
    d_cavity = d_torso + wall_in + 12.0
    arm_x = a_t + body.arm_offset
    arms = [vertical(p, cx + side * arm_x, cy, 42.0, 48.0) for side in (-1, 1)]
    layers = [
        ("skin", soft(d_torso, w)),
        ("fat", soft(d_torso + 2.0, w)),
        ("muscle", soft(d_torso + 2.0 + fat, w)),
    ]
    for d_arm, side in zip(arms, (-1, 1)):
        layers += [
            ("skin", soft(d_arm, w)),
            ("fat", soft(d_arm + 2, w)),
            ("muscle", soft(d_arm + 8, w)),
            ("cortical_bone", soft(vertical(p, cx + side * arm_x, cy + 5, 11, 11), w)),
            ("marrow", soft(vertical(p, cx + side * arm_x, cy + 5, 7, 7), w)),
        ]
    # ribs: bands sloping down towards the front, in the layer inside the chest-wall muscle;
    # none at the sternum or the spine (cartilage and joints)
    in_cage = soft(d_torso + wall_in, w) * soft(-(d_torso + wall_in + 11.0), w)
    rib_z = np.abs(np.mod(z + 30.0 * np.sin(-theta) + body.rib_phase, 26.0) - 13.0)
    rib = soft(rib_z - 5.5, 1.0) * in_cage * (1.0 - soft(np.abs(x - cx) - 30.0, 2.0))
    layers += [("cortical_bone", rib), ("marrow", rib * soft(rib_z - 3.5, 1.0))]
    # thoracic cavity: lungs above the diaphragm's domes, the abdomen below
    inside = soft(d_cavity, w)
    above, below = _diaphragm(body, p, w)
    layers += _cavity_layers(body, p, w, d_cavity, inside, above, below)
    # mediastinum behind the sternum and in front of the spine
    d_med = np.maximum(np.abs(x - cx - 5) - 22.0, vertical(p, cx, cy - 10, 45.0, b_t))
    layers.append(("fat", soft(d_med, 3.0) * inside * above * 0.6))
    layers += _midline_layers(body, p, w, below)
    return layers


FLOWING = ("blood", "lung_vessel")
FATTY = ("fat", "marrow")


def paint(
    body: Body,
    layers: list[tuple[str, np.ndarray]],
    n: int,
    start: tuple[np.ndarray, ...] | None = None,
) -> tuple[np.ndarray, ...]:
    """(PD, T1, T2, label, flowing fraction, fat fraction) at ``n`` points from painted layers
    (later over earlier), on air or on the maps ``start``."""
    if start is None:
        pd, t1, t2 = np.zeros(n), np.full(n, 1000.0), np.full(n, 50.0)
        flow, fat = np.zeros(n), np.zeros(n)
        label = np.zeros(n, np.uint8)
    else:
        pd, t1, t2, label, flow, fat = (a.copy() for a in start)
    for name, m in layers:
        tpd, tt1, tt2 = body.tissues[name]
        pd += m * (tpd - pd)
        t1 += m * (tt1 - t1)
        t2 += m * (tt2 - t2)
        flow += m * (float(name in FLOWING) - flow)
        fat += m * (float(name in FATTY) - fat)
        label[m > 0.5] = LABEL[name]
    return pd, t1, t2, label, flow, fat
