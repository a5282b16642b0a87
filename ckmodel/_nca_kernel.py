"""Vectorised NumPy kernel of the non-compartmental analysis (private).

Every function here works on padded 2-D arrays of shape ``(n_profiles, n_samples)``: one row per
concentration-time profile (subject x analyte), padding marked by a NaN time. There is no Python
loop over profiles; the only loops run over the handful of AUC windows and BLQ position classes.

The public entry points are :func:`ckmodel.nca.nca_arrays` (thin re-export of :func:`nca_kernel`)
and :func:`ckmodel.nca.nca`. Conventions follow PKNCA; they are documented in :mod:`ckmodel.nca`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction

import numpy as np

AUC_METHODS = ("lin-up/log-down", "linear")
BLQ_ACTIONS = ("zero", "drop", "lloq-half")
BLQ_RULES: dict[str, tuple[str, str, str]] = {
    # name: (action before the first quantifiable value, between, after the last one)
    "first-zero-rest-drop": ("zero", "drop", "drop"),
    "all-zero": ("zero", "zero", "zero"),
    "drop": ("drop", "drop", "drop"),
    "lloq-half": ("lloq-half", "lloq-half", "lloq-half"),
}
_POSITIONS = ("first", "middle", "last")

#: Suffix of a partial-AUC column name per time unit; days (the CAR-T convention) have none.
UNIT_SUFFIX = {"minute": "MIN", "hour": "H", "day": "", "week": "W", "month": "MO", "year": "Y"}
#: Units per day for the units of fixed length (a month or a year has no exact length in days).
UNITS_PER_DAY = {"minute": Fraction(1440), "hour": Fraction(24), "day": Fraction(1),
                 "week": Fraction(1, 7)}
#: The CAR-T default partial-AUC windows, in days: AUC0-28d and AUC0-84d.
DEFAULT_WINDOWS_DAYS = ((0, 28), (0, 84))
#: Record counts of each profile: all observation records, those used, BLQ records and how the
#: BLQ rule treated them (set to 0, set to LLOQ/2, dropped), records left out by reason (MDV=1,
#: after allo-HSCT, before the infusion, missing TIME or DV) and 1 when a (0, 0) point was added.
#: The kernel returns all but N_OBS, N_MDV and N_HSCT, which the wrapper counts.
COUNT_COLUMNS = (
    "N_OBS", "N_USED", "N_BLQ", "N_BLQ_ZERO", "N_BLQ_HALF", "N_BLQ_DROP",
    "N_MDV", "N_HSCT", "N_PREDOSE", "N_MISSING", "ZERO_ADDED",
)  # fmt: skip
#: Sampling-time metrics, summarised by median and range (no geometric statistics).
TIME_METRICS = ("TMAX", "TLST", "LAMZLL", "LAMZUL")


def column_unit(column: str, dv_unit: str, time_unit: str) -> str:
    """Unit of an NCA output column; an unknown (empty) DV unit is written ``DV unit``."""
    dv = dv_unit or "DV unit"
    if column in ("CMAX", "CLST"):
        return dv
    if column in (*TIME_METRICS, "LAMZHL"):
        return time_unit
    if column == "LAMZ":
        return f"1/{time_unit}"
    if column.startswith("AUC"):
        return f"{time_unit}*{dv}"
    if column in (*COUNT_COLUMNS[:-1], "LAMZNPT"):
        return "count"
    return "-" if column in ("R2ADJ", "ZERO_ADDED") else ""


def check_time_unit(time_unit: str) -> str:
    """Return ``time_unit`` if it is one of :data:`UNIT_SUFFIX`, else raise ValueError."""
    if time_unit not in UNIT_SUFFIX:
        raise ValueError(f"unknown time_unit {time_unit!r}; choose one of {tuple(UNIT_SUFFIX)}")
    return time_unit


def default_windows(time_unit: str) -> list[tuple[float, float]]:
    """The day windows of :data:`DEFAULT_WINDOWS_DAYS` in ``time_unit`` (none for month, year)."""
    per_day = UNITS_PER_DAY.get(check_time_unit(time_unit))
    if per_day is None:
        return []
    return [(float(a * per_day), float(b * per_day)) for a, b in DEFAULT_WINDOWS_DAYS]


def resolve_blq_rule(rule: str | Mapping[str, str]) -> tuple[str, str, str]:
    """Return the ``(first, middle, last)`` actions of a BLQ rule name or mapping."""
    if isinstance(rule, str):
        if rule not in BLQ_RULES:
            raise ValueError(f"unknown blq_rule {rule!r}; choose one of {sorted(BLQ_RULES)}")
        return BLQ_RULES[rule]
    if not isinstance(rule, Mapping) or set(rule) != set(_POSITIONS):
        raise ValueError(
            "blq_rule must be a rule name or a mapping with exactly the keys "
            f"{_POSITIONS}, got {rule!r}"
        )
    actions = tuple(rule[p] for p in _POSITIONS)
    bad = [a for a in actions if a not in BLQ_ACTIONS]
    if bad:
        raise ValueError(f"unknown BLQ action(s) {bad}; choose from {BLQ_ACTIONS}")
    return actions  # type: ignore[return-value]


def window_name(start: float, end: float, time_unit: str = "day") -> str:
    """Column name of the partial AUC over ``[start, end]`` in ``time_unit``.

    The bounds are written in ``time_unit``, and the unit's suffix (:data:`UNIT_SUFFIX`, none for
    days) follows the last non-zero finite bound: ``AUC0_28`` (days), ``AUC0_24H``,
    ``AUC2_4W``, ``AUC5H_inf``, ``AUC0_inf``.
    """
    suffix = UNIT_SUFFIX[check_time_unit(time_unit)]

    def fmt(v: float, unit: bool) -> str:
        return "inf" if math.isinf(v) else f"{v:g}" + (suffix if unit else "")

    unit_on_end = math.isfinite(end)
    return f"AUC{fmt(start, not unit_on_end and start != 0)}_{fmt(end, unit_on_end)}"


def check_windows(windows: Sequence[Sequence[float]] | None,
                  time_unit: str = "day") -> list[tuple[float, float]]:
    """Validate AUC windows: finite start, ``start < end`` (end may be ``inf``).

    ``None`` gives :func:`default_windows` of ``time_unit``.
    """
    if windows is None:
        return default_windows(time_unit)
    out = []
    for w in windows:
        if len(w) != 2:
            raise ValueError(f"AUC window must be a (start, end) pair, got {w!r}")
        a, b = float(w[0]), float(w[1])
        if not math.isfinite(a) or math.isnan(b) or not a < b:
            raise ValueError(f"AUC window needs a finite start < end, got {w!r}")
        out.append((a, b))
    names = [window_name(a, b, time_unit) for a, b in out]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate AUC windows: {names}")
    return out


def _take(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``a[i, idx[i]]`` for every row ``i``."""
    return np.take_along_axis(a, idx[:, None], axis=1)[:, 0]


def clean_profiles(time, conc, blq, lloq, actions, add_zero):
    """Sort, apply the BLQ rule, add the implicit (0, 0) point and left-align kept records.

    Returns ``(t, c, k, counts)``: sorted kept times and concentrations (NaN padding on the
    right), the number of kept points per profile (the added zero included) and the record
    counts of :data:`COUNT_COLUMNS` (int arrays).
    """
    predose = np.isfinite(time) & (time < 0)
    present = np.isfinite(time) & (time >= 0)  # the NCA interval is [0, inf)
    negative = present & ~blq & (conc < 0)
    if negative.any():
        rows = np.unique(np.nonzero(negative)[0])
        raise ValueError(f"negative concentrations in profile rows {rows[:10].tolist()}")
    is_blq = present & (blq | (conc == 0))
    quant = present & ~is_blq & np.isfinite(conc)
    missing = present & ~is_blq & ~quant  # a missing concentration that is not BLQ is dropped
    present = is_blq | quant

    order = np.argsort(np.where(present, time, np.inf), axis=1, kind="stable")
    time, conc, lloq = (np.take_along_axis(a, order, axis=1) for a in (time, conc, lloq))
    present, is_blq, quant = (
        np.take_along_axis(a, order, axis=1) for a in (present, is_blq, quant)
    )
    dup = present[:, 1:] & present[:, :-1] & (time[:, 1:] == time[:, :-1])
    if dup.any():
        rows = np.unique(np.nonzero(dup)[0])
        raise ValueError(f"duplicate sampling times in profile rows {rows[:10].tolist()}")

    n, m = time.shape
    col = np.arange(m)
    any_q = quant.any(axis=1)
    first_q = np.argmax(quant, axis=1)
    last_q = m - 1 - np.argmax(quant[:, ::-1], axis=1)
    before = ~any_q[:, None] | (col < first_q[:, None])
    after = any_q[:, None] & (col > last_q[:, None])
    classes = (before, ~before & ~after, after)

    c = np.where(quant, conc, np.nan)
    keep = quant.copy()
    zero, half = np.zeros_like(keep), np.zeros_like(keep)
    for where, action in zip(classes, actions, strict=True):
        sel = is_blq & where
        if action == "zero":
            c[sel] = 0.0
            zero |= sel
        elif action == "lloq-half":
            sel &= np.isfinite(lloq) & (lloq > 0)  # no LLOQ: the record is dropped
            c[sel] = 0.5 * lloq[sel]
            half |= sel
    keep |= zero | half
    counts = {
        "N_USED": keep.sum(axis=1), "N_BLQ": is_blq.sum(axis=1), "N_BLQ_ZERO": zero.sum(axis=1),
        "N_BLQ_HALF": half.sum(axis=1), "N_BLQ_DROP": (is_blq & ~keep).sum(axis=1),
        "N_PREDOSE": predose.sum(axis=1), "N_MISSING": missing.sum(axis=1),
    }  # fmt: skip

    need_zero = np.zeros(n, dtype=bool)
    if add_zero:  # a profile without any kept record stays empty (NaN), not a lone (0, 0)
        need_zero = ~(keep & (time == 0)).any(axis=1) & keep.any(axis=1)
    time = np.concatenate([time, np.zeros((n, 1))], axis=1)
    c = np.concatenate([c, np.zeros((n, 1))], axis=1)
    keep = np.concatenate([keep, need_zero[:, None]], axis=1)
    counts["ZERO_ADDED"] = need_zero.astype(np.int64)

    order = np.argsort(np.where(keep, time, np.inf), axis=1, kind="stable")
    keep = np.take_along_axis(keep, order, axis=1)
    t = np.where(keep, np.take_along_axis(time, order, axis=1), np.nan)
    c = np.where(keep, np.take_along_axis(c, order, axis=1), np.nan)
    k = keep.sum(axis=1)
    width = max(int(k.max(initial=0)), 2)
    if width > t.shape[1]:
        pad = np.full((n, width - t.shape[1]), np.nan)
        t, c = np.concatenate([t, pad], axis=1), np.concatenate([c, pad], axis=1)
    return t[:, :width], c[:, :width], k, counts


def segment_areas(t0: np.ndarray, t1: np.ndarray, c0: np.ndarray, c1: np.ndarray, *,
                  log_down: bool = True, mask: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Areas of the segments (t0, c0)-(t1, c1) by the linear or the log trapezoid.

    The log trapezoid is used where the value falls between two positive values
    ("lin-up/log-down"; exact for an exponential decline).

    Parameters
    ----------
    t0, t1, c0, c1 : numpy.ndarray
        Segment ends (broadcast together).
    log_down : bool
        Use the log trapezoid on falling segments (False: linear everywhere).
    mask : numpy.ndarray of bool, optional
        Segments eligible for the log trapezoid (default all).

    Returns
    -------
    area, is_log, logk : numpy.ndarray
        Segment areas, where the log trapezoid was used, and ``log(c0 / c1)`` there (2.0
        elsewhere, a placeholder that keeps later divisions finite).
    """
    fall = (c1 < c0) & (c1 > 0)
    if mask is not None:
        fall = fall & mask
    is_log = fall if log_down else np.zeros_like(fall)
    with np.errstate(divide="ignore", invalid="ignore"):
        lin = (t1 - t0) * (c0 + c1) / 2.0
        logk = np.log(np.where(is_log, c0 / np.where(is_log, c1, 1.0), 2.0))  # > 0 on log segments
        area = np.where(is_log, (t1 - t0) * (c0 - c1) / logk, lin)
    return area, is_log, logk


def lambda_z(t, c, pos, tmax, tlast, clast, min_points, tolerance):
    """Terminal log-linear fit on the last n points after Tmax, best adjusted R^2 (PKNCA rule).

    All candidate fits are computed at once from reversed cumulative sums; times and log
    concentrations are centred on (Tlast, log Clast) to limit cancellation.
    """
    r = np.arange(t.shape[0])
    elig = pos & (t > tmax[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        x = np.where(elig, t - tlast[:, None], 0.0)
        y = np.where(elig, np.log(np.where(elig, c, 1.0)) - np.log(clast)[:, None], 0.0)
        w = elig.astype(float)

        def rsum(a):
            return np.cumsum(a[:, ::-1], axis=1)[:, ::-1]

        n, sx, sy = rsum(w), rsum(x), rsum(y)
        sxx = rsum(x * x) - sx * sx / n
        syy = rsum(y * y) - sy * sy / n
        sxy = rsum(x * y) - sx * sy / n
        slope = sxy / sxx
        r2 = sxy * sxy / (sxx * syy)
        adj = 1.0 - (1.0 - r2) * (n - 1.0) / (n - 2.0)
    cand = elig & (n >= min_points) & np.isfinite(adj)
    best = np.where(cand, adj, -np.inf).max(axis=1)
    ok = cand & (slope < 0) & (adj >= best[:, None] - tolerance)
    sel = np.argmax(np.where(ok, n, -1.0), axis=1)
    found = ok.any(axis=1)
    nan = np.full(t.shape[0], np.nan)
    lamz = np.where(found, -slope[r, sel], nan)
    return {
        "LAMZ": lamz,
        "LAMZHL": np.where(found, np.log(2.0) / np.where(found, lamz, 1.0), nan),
        "LAMZNPT": np.where(found, n[r, sel], nan),
        "R2ADJ": np.where(found, adj[r, sel], nan),
        "LAMZLL": np.where(found, t[r, sel], nan),
        "LAMZUL": np.where(found, tlast, nan),
    }


def nca_kernel(
    time,
    conc,
    blq=None,
    lloq=None,
    *,
    auc_method="lin-up/log-down",
    windows=None,
    time_unit="day",
    blq_rule="first-zero-rest-drop",
    add_zero=True,
    min_points_lambda_z=3,
    r2adj_tolerance=1e-4,
):
    """Vectorised NCA on padded arrays; see :func:`ckmodel.nca.nca_arrays` for the contract."""
    if auc_method not in AUC_METHODS:
        raise ValueError(f"unknown auc_method {auc_method!r}; choose one of {AUC_METHODS}")
    if int(min_points_lambda_z) < 3:
        raise ValueError("min_points_lambda_z must be >= 3 (adjusted R^2 needs n > 2)")
    actions = resolve_blq_rule(blq_rule)
    wins = check_windows(windows, time_unit)
    time = np.atleast_2d(np.asarray(time, dtype=float))
    conc = np.atleast_2d(np.asarray(conc, dtype=float))
    shape = time.shape
    if conc.shape != shape or time.ndim != 2:
        raise ValueError(f"time {time.shape} and conc {conc.shape} must be equal 2-D shapes")
    blq = np.zeros(shape, bool) if blq is None else np.nan_to_num(np.asarray(blq, float)) > 0
    lloq = np.full(shape, np.nan) if lloq is None else np.asarray(lloq, dtype=float)
    if blq.shape != shape or lloq.shape != shape:
        raise ValueError("blq and lloq must have the shape of time")

    t, c, k, counts = clean_profiles(time, conc, blq, lloq, actions, bool(add_zero))
    n_prof, m = t.shape
    r = np.arange(n_prof)
    col = np.arange(m)
    valid = col < k[:, None]
    nan = np.full(n_prof, np.nan)

    cz = np.where(valid, c, -np.inf)
    imax = np.argmax(cz, axis=1)  # first occurrence on ties
    cmax = np.where(k > 0, cz[r, imax], nan)
    pos = valid & (c > 0)
    has_pos = pos.any(axis=1)
    all_zero = (k > 0) & ~has_pos
    last = np.where(has_pos, m - 1 - np.argmax(pos[:, ::-1], axis=1), 0)
    tlast = np.where(has_pos, t[r, last], nan)
    clast = np.where(has_pos, c[r, last], np.where(all_zero, 0.0, nan))
    tmax = np.where(cmax > 0, t[r, imax], nan)

    # Segment areas up to Tlast; cum[:, j] is the AUC from the first time to t_j (j <= last).
    t0, t1, c0, c1 = t[:, :-1], t[:, 1:], c[:, :-1], c[:, 1:]
    seg = has_pos[:, None] & (col[1:] <= last[:, None])
    area, is_log, logk = segment_areas(t0, t1, c0, c1,
                                       log_down=auc_method == "lin-up/log-down", mask=seg)
    cum = np.concatenate([np.zeros((n_prof, 1)), np.cumsum(np.where(seg, area, 0.0), 1)], 1)
    auclast = np.where(k >= 2, np.where(has_pos, cum[r, last], 0.0), nan)

    out = {"CMAX": cmax, "TMAX": tmax, "CLST": clast, "TLST": tlast, "AUCLST": auclast}
    lz = lambda_z(t, c, pos, tmax, tlast, clast, int(min_points_lambda_z), float(r2adj_tolerance))
    lam = lz["LAMZ"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["AUCIFO"] = np.where(all_zero & (k >= 2), 0.0, auclast + clast / lam)

    def cum_auc(x: float) -> np.ndarray:
        """AUC from the first time to ``x``: interpolation to Tlast, lambda_z after it."""
        j = ((col <= last[:, None]) & valid & (t <= x)).sum(axis=1) - 1
        js = np.clip(j, 0, m - 2)
        ta, tb, ca, cb = _take(t, js), _take(t, js + 1), _take(c, js), _take(c, js + 1)
        seg_log, seg_k = _take(is_log, js), _take(logk, js)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            dx = x - ta
            frac = dx / (tb - ta)
            cx_lin = ca + frac * (cb - ca)
            cx_log = ca * np.exp(-frac * seg_k)
            part = np.where(seg_log, (ca - cx_log) * (tb - ta) / seg_k, dx * (ca + cx_lin) / 2.0)
            inside = np.where(j >= last, _take(cum, last), _take(cum, js) + part)
            tail = clast / lam * -np.expm1(-lam * (x - tlast)) if math.isfinite(x) else clast / lam
            f = np.where(x > tlast, _take(cum, last) + tail, inside)
        return np.where(j < 0, np.nan, f)

    for a, b in wins:
        with np.errstate(invalid="ignore"):
            val = cum_auc(b) - cum_auc(a)
        out[window_name(a, b, time_unit)] = np.where(k < 2, np.nan, np.where(all_zero, 0.0, val))
    out.update(lz)
    out.update(counts)
    return out
