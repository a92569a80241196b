"""T1 and T2 maps from weighted magnitude images (beyond the paper, which scores only the
weighted images; the challenge organisers' code scores maps per myocardial segment).

T1 (MOLLI): the three-parameter Look-Locker recovery ``S(TI) = A - B exp(-TI / T1*)``, observed
as a magnitude, so the points before the signal's null are restored to negative polarity: every
restoration (the first k points negated, k = 0 .. n) is scored, the two best are fitted to their
optimum and the better kept (the smallest magnitude is a poor guide to the null when the
inversion times are as unevenly spaced as MOLLI's); then the Look-Locker correction
``T1 = T1* (B / A - 1)``.

T2 (T2-prepared): the mono-exponential ``S(TE) = S0 exp(-TE / T2)``, fitted to the magnitudes
themselves (not to their logarithm, which weights the noisy late echoes up).

Both fits are least squares, vectorised over pixels. The model is linear in its amplitudes, so
for each value of the time constant on a logarithmic grid the amplitudes and the residual have a
closed form (variable projection): one matrix product over all pixels and grid values gives
each pixel's best grid point, a parabola through its neighbours refines it, and a few
Gauss-Newton steps on all parameters converge to the least-squares optimum. Pixels that cannot
be fitted come back as NaN: background (the largest weighting below ``background`` times the
image's 99th percentile), a time constant at the edge of the grid, or amplitudes the model
cannot have (``A <= 0``, ``B <= A``, ``S0 <= 0``).
"""

from __future__ import annotations

import numpy as np

T1_STAR_GRID_MS = (5.0, 20_000.0, 240)  # apparent T1* searched (log-spaced): from, to, points
T2_GRID_MS = (1.0, 5_000.0, 240)  # T2 searched (log-spaced)
BACKGROUND = 0.05  # fraction of the 99th percentile of the peak signal
GAUSS_NEWTON_STEPS = 4
_BLOCK = 4096  # pixels per block (memory: a few block x grid arrays)


def _checked(images, times, n_params: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images as float64 (n, pixels), times as float64 (n,))`` after the input checks."""
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError(f"{what}: the times must be one-dimensional, got shape {t.shape}")
    x = np.asarray(images)
    if x.ndim < 1 or x.shape[0] != len(t):
        raise ValueError(
            f"{what}: {len(t)} times but images of shape {x.shape} (the first axis "
            "must be the weightings, one per time)"
        )
    if len(t) < n_params:
        raise ValueError(
            f"{what}: {len(t)} weightings are fewer than the model's {n_params} parameters"
        )
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError(f"{what}: the times must be finite and non-negative, got {t.tolist()}")
    if np.any(np.diff(t) <= 0):
        raise ValueError(
            f"{what}: the times must be strictly increasing, got {t.tolist()} "
            "(sort the weightings and their times together)"
        )
    if np.iscomplexobj(x):
        raise ValueError(f"{what}: expects magnitude images, got complex ones (take np.abs)")
    x = x.astype(np.float64, copy=False).reshape(len(t), -1)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: the images contain NaN or infinite values")
    if np.any(x < 0):
        raise ValueError(f"{what}: magnitude images cannot be negative (min {x.min():.3g})")
    return x.T, t


def _foreground(y: np.ndarray, background: float) -> np.ndarray:
    peak = y.max(axis=1)
    level = np.percentile(peak, 99) if len(peak) else 0.0
    return peak > background * level if level > 0 else np.zeros(len(peak), bool)


def _grid(spec: tuple[float, float, int]) -> np.ndarray:
    lo, hi, n = spec
    return np.geomspace(lo, hi, int(n))


def _vertex(score3: np.ndarray, best: np.ndarray, log_grid: np.ndarray) -> np.ndarray:
    """Log time constant at the vertex of the parabola through each row's scores ``score3``
    ``(P, 3)`` at grid points ``best - 1, best, best + 1`` (rows at an edge keep their point)."""
    f0, f1, f2 = score3.T
    den = f0 - 2 * f1 + f2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(den < 0, 0.5 * (f0 - f2) / den, 0.0)
    inside = (best > 0) & (best < len(log_grid) - 1)
    step = log_grid[1] - log_grid[0]
    return log_grid[best] + np.where(inside, np.clip(shift, -1, 1), 0.0) * step


def _neighbours(best: np.ndarray, n_grid: int) -> np.ndarray:
    return np.clip(best[:, None] + np.arange(-1, 2)[None, :], 0, n_grid - 1)


def _gauss_newton(
    y: np.ndarray, t: np.ndarray, params: np.ndarray, model, steps: int
) -> np.ndarray:
    """A few Gauss-Newton steps (no damping; the start is within a grid step of the optimum)
    on every row's parameters; ``model(params, t)`` -> ``(signal (P, n), jacobian (P, n, k))``."""
    for _ in range(steps):
        s, jac = model(params, t)
        jtj = np.einsum("pnk,pnl->pkl", jac, jac)
        jtr = np.einsum("pnk,pn->pk", jac, y - s)
        ok = np.linalg.det(jtj) > 0
        delta = np.zeros_like(params)
        if ok.any():
            delta[ok] = np.linalg.solve(jtj[ok], jtr[ok][..., None])[..., 0]
        params = params + delta
    return params


def _t1_model(p: np.ndarray, t: np.ndarray):
    a, b, ts = p[:, :1], p[:, 1:2], p[:, 2:3]
    e = np.exp(-t / ts)
    jac = np.stack([np.ones_like(e), -e, -b * e * t / ts**2], axis=-1)
    return a - b * e, jac


def _t2_model(p: np.ndarray, t: np.ndarray):
    s0, t2 = p[:, :1], p[:, 1:2]
    e = np.exp(-t / t2)
    return s0 * e, np.stack([e, s0 * e * t / t2**2], axis=-1)


def _fit_t1_block(y: np.ndarray, t: np.ndarray, grid: np.ndarray) -> dict[str, np.ndarray]:
    n, rows = len(t), np.arange(len(y))
    e = np.exp(-t[:, None] / grid[None, :])  # (n, G)
    # inverse of the Gram matrix of the columns [1, -e], per grid value
    g01, g11 = -e.sum(0), (e**2).sum(0)
    det = n * g11 - g01**2
    i00, i01, i11 = g11 / det, -g01 / det, n / det

    def score(s0, s1, g):  # energy projected on [1, -e_g]
        return i00[g] * s0**2 + 2 * i01[g] * s0 * s1 + i11[g] * s1**2

    # every polarity restoration k (the first k points inverted), on the whole grid: the
    # projections of k follow from those of k - 1 by flipping point k - 1
    s0, s1 = y.sum(1, keepdims=True), -(y @ e)  # k = 0; (P, 1), (P, G)
    top, arg = np.empty((n + 1, len(y))), np.empty((n + 1, len(y)), np.int64)
    for k in range(n + 1):
        if k:
            s0 = s0 - 2 * y[:, k - 1 : k]
            s1 = s1 + 2 * y[:, k - 1 : k] * e[k - 1][None, :]
        sc = score(s0, s1, slice(None))
        arg[k] = np.argmax(sc, axis=1)
        top[k] = sc[rows, arg[k]]
    del s1, sc
    log_grid = np.log(grid)
    best: dict[str, np.ndarray] = {}
    # the two best restorations on the grid, each refined to its optimum; the better one is kept
    # (a point near the null fits with either sign, and the grid alone cannot tell them apart)
    for k in np.argsort(-top, axis=0)[:2]:
        j = arg[k, rows]
        signed = np.where(np.arange(n)[None, :] < k[:, None], -y, y)
        jj = _neighbours(j, len(grid))
        c0 = signed.sum(1)[:, None]
        c1 = -np.einsum("pn,npk->pk", signed, e[:, jj])
        ts = np.exp(_vertex(score(c0, c1, jj), j, log_grid))
        ee = np.exp(-t[None, :] / ts[:, None])  # (P, n)
        c0, c1 = c0[:, 0], -(signed * ee).sum(1)
        h01, h11 = -ee.sum(1), (ee**2).sum(1)
        d = n * h11 - h01**2
        a, b = (h11 * c0 - h01 * c1) / d, (-h01 * c0 + n * c1) / d
        p = _gauss_newton(signed, t, np.stack([a, b, ts], 1), _t1_model, GAUSS_NEWTON_STEPS)
        s, _ = _t1_model(p, t)
        cand = dict(
            a=p[:, 0],
            b=p[:, 1],
            t1_star=p[:, 2],
            edge=(j == 0) | (j == len(grid) - 1),
            residual=((signed - s) ** 2).sum(1),
        )
        if not best:
            best = cand
            continue
        better = cand["residual"] < best["residual"]
        best = {key: np.where(better, cand[key], v) for key, v in best.items()}
    return best


def _fit_t2_block(y: np.ndarray, t: np.ndarray, grid: np.ndarray) -> dict[str, np.ndarray]:
    e = np.exp(-t[:, None] / grid[None, :])  # (n, G)
    norm = (e**2).sum(0)
    score = (y @ e) ** 2 / norm  # energy projected on e_g
    j = np.argmax(score, axis=1)
    jj = _neighbours(j, len(grid))
    t2 = np.exp(_vertex(score[np.arange(len(j))[:, None], jj], j, np.log(grid)))
    ee = np.exp(-t[None, :] / t2[:, None])
    s0 = (y * ee).sum(1) / (ee**2).sum(1)
    p = _gauss_newton(y, t, np.stack([s0, t2], 1), _t2_model, GAUSS_NEWTON_STEPS)
    s, _ = _t2_model(p, t)
    return dict(
        s0=p[:, 0], t2=p[:, 1], edge=(j == 0) | (j == len(grid) - 1), residual=((y - s) ** 2).sum(1)
    )


def _blocks(
    fit, y: np.ndarray, t: np.ndarray, grid: np.ndarray, fg: np.ndarray
) -> dict[str, np.ndarray]:
    idx = np.flatnonzero(fg)
    out: dict[str, np.ndarray] = {}
    for i in range(0, len(idx), _BLOCK):
        part = idx[i : i + _BLOCK]
        with np.errstate(all="ignore"):
            res = fit(y[part], t, grid)
        for k, v in res.items():
            if k not in out:
                out[k] = np.full(len(y), np.nan if v.dtype.kind == "f" else False, v.dtype)
            out[k][part] = v
    return out


def fit_t1(images, inversion_times_ms, *, background: float = BACKGROUND, full: bool = False):
    """T1 map [ms] from MOLLI magnitude images.

    Args:
        images: ``(n_inversions, ...)`` magnitude images (any trailing shape), on one common
            intensity scale across the inversions.
        inversion_times_ms: ``(n_inversions,)`` strictly increasing inversion times.
        background: pixels whose largest weighting is below this fraction of the 99th percentile
            (over pixels) of that largest weighting are not fitted (NaN).
        full: also return the fit's parameters.

    Returns:
        The T1 map ``(...)`` in ms, NaN where the pixel cannot be fitted (see the module); with
        ``full``, a dict of maps ``t1``, ``t1_star`` [ms], ``a``, ``b`` (signal units) and
        ``residual`` (sum of squares).

    Raises:
        ValueError: fewer than 3 inversions, times not one per image, not finite, negative or
            not strictly increasing, complex, negative or non-finite images.
    """
    y, t = _checked(images, inversion_times_ms, 3, "fit_t1")
    shape = np.shape(images)[1:]
    fg = _foreground(y, background)
    res = _blocks(_fit_t1_block, y, t, _grid(T1_STAR_GRID_MS), fg)
    if not res:
        res = {k: np.full(len(y), np.nan) for k in ("a", "b", "t1_star", "residual")}
        res["edge"] = np.zeros(len(y), bool)
    with np.errstate(all="ignore"):
        t1 = res["t1_star"] * (res["b"] / res["a"] - 1.0)
        ok = (
            fg
            & ~res["edge"]
            & (res["a"] > 0)
            & (res["b"] > res["a"])
            & np.isfinite(t1)
            & (res["t1_star"] > 0)
        )
    t1 = np.where(ok, t1, np.nan)
    if not full:
        return t1.reshape(shape).astype(np.float32)
    out = {"t1": t1, **{k: np.where(ok, res[k], np.nan) for k in ("t1_star", "a", "b", "residual")}}
    return {k: v.reshape(shape).astype(np.float32) for k, v in out.items()}


def fit_t2(images, echo_times_ms, *, background: float = BACKGROUND, full: bool = False):
    """T2 map [ms] from T2-prepared magnitude images.

    Args:
        images: ``(n_echoes, ...)`` magnitude images (any trailing shape), on one common
            intensity scale across the echo times.
        echo_times_ms: ``(n_echoes,)`` strictly increasing T2-preparation times.
        background, full: as :func:`fit_t1`.

    Returns:
        The T2 map ``(...)`` in ms (NaN where it cannot be fitted); with ``full``, a dict of
        ``t2`` [ms], ``s0`` (signal units) and ``residual``.

    Raises:
        ValueError: fewer than 2 echoes, and the other input errors of :func:`fit_t1`.
    """
    y, t = _checked(images, echo_times_ms, 2, "fit_t2")
    shape = np.shape(images)[1:]
    fg = _foreground(y, background)
    res = _blocks(_fit_t2_block, y, t, _grid(T2_GRID_MS), fg)
    if not res:
        res = {k: np.full(len(y), np.nan) for k in ("s0", "t2", "residual")}
        res["edge"] = np.zeros(len(y), bool)
    with np.errstate(all="ignore"):
        ok = fg & ~res["edge"] & (res["s0"] > 0) & (res["t2"] > 0) & np.isfinite(res["t2"])
    out = {k: np.where(ok, res[k], np.nan) for k in ("t2", "s0", "residual")}
    if not full:
        return out["t2"].reshape(shape).astype(np.float32)
    return {k: v.reshape(shape).astype(np.float32) for k, v in out.items()}


def fitted_signal(fit: dict[str, np.ndarray], kind: str, pixel: tuple, times) -> np.ndarray:
    """The signal one pixel's fit predicts at ``times`` [ms], from the maps of
    :func:`fit_t1` or :func:`fit_t2` with ``full=True``: ``kind`` ``"t1"``, MOLLI's
    |A - B exp(-t / T1*)| (the magnitude, as the images hold it); ``"t2"``, S0 exp(-t / T2)."""
    t = np.asarray(times, np.float64)[None, :]
    if kind == "t1":
        p = np.array([[fit[k][pixel] for k in ("a", "b", "t1_star")]], np.float64)
        return np.abs(_t1_model(p, t)[0][0])
    if kind == "t2":
        p = np.array([[fit[k][pixel] for k in ("s0", "t2")]], np.float64)
        return _t2_model(p, t)[0][0]
    raise ValueError(f"kind must be 't1' or 't2', got {kind!r}")
