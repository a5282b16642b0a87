"""Model-based exposure: each subject's Cmax, Tmax, AUC0-28d, AUC0-84d and time above LLOQ.

NCA measures exposure on the samples a patient happened to give; the model measures it on the
patient's whole trajectory. :func:`exposure_draws` solves every subject's individual model
over the whole dosing history on a dense grid, once per posterior draw, and reduces each
trajectory with :func:`trajectory_metrics`, so the exposures carry their posterior
uncertainty (dims ``chain``, ``draw``, ``subject``) into exposure-response models.

Conventions (those of :mod:`ckmodel.nca`, so the two compare): AUC by the linear-up/log-down
trapezoid (:func:`ckmodel.nca.segment_areas`) from time 0 on the data's clock (time since
infusion), window ends placed on the grid by the same interpolation; windows named as NCA
names them (``AUC0_28`` for days, ``AUC0_672H`` for a model in hours); Tmax at the grid
maximum. Time above LLOQ is the time within the grid the trajectory spends at or above the
analyte's LLOQ (the median LLOQ of its records), crossings placed by log-linear
interpolation; it is bounded by the grid's end, which :func:`exposure_grid` states.

Nothing here is random: thinning is deterministic, so the same fit gives the same draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ckmodel.nca import column_unit, default_windows, segment_areas, window_name

__all__ = ["trajectory_metrics", "exposure_grid", "exposure_draws", "exposure_table",
           "analyte_lloqs", "expansion_points",
           "resolve_metric", "metric_names", "compare_with_nca"]


def metric_names(time_unit: str = "day") -> list[str]:
    """The exposure metrics, named for ``time_unit``: CMAX, TMAX, the AUC windows, T_ABOVE_LLOQ."""
    wins = [window_name(a, b, time_unit) for a, b in default_windows(time_unit)]
    return ["CMAX", "TMAX", *wins, "T_ABOVE_LLOQ"]


def _at(time: np.ndarray, values: np.ndarray, x: float) -> np.ndarray:
    """Values at ``x`` by the AUC rule's interpolation (log-linear where falling, else linear)."""
    j = int(np.clip(np.searchsorted(time, x, side="right") - 1, 0, time.size - 2))
    t0, t1 = time[j], time[j + 1]
    c0, c1 = values[..., j], values[..., j + 1]
    f = (x - t0) / (t1 - t0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log = c0 * (c1 / c0) ** f
    return np.where((c1 < c0) & (c1 > 0), log, c0 + f * (c1 - c0))


def _with_points(time: np.ndarray, values: np.ndarray, points: Sequence[float]
                 ) -> tuple[np.ndarray, np.ndarray]:
    for x in points:
        if time[0] < x < time[-1] and not np.any(time == x):
            k = int(np.searchsorted(time, x))
            values = np.insert(values, k, _at(time, values, x), axis=-1)
            time = np.insert(time, k, x)
    return time, values


def _time_above(time: np.ndarray, values: np.ndarray, lloq: float) -> np.ndarray:
    """Time at or above ``lloq`` (time unit), over the last axis of ``values``.

    Whole segments above, plus the part of each segment that crosses the LLOQ (log-linear
    between positive values, else linear). Only the few crossing segments are interpolated,
    so no grid-sized temporaries of logarithms are made.
    """
    dt = np.diff(time)
    above = values >= lloq
    total = (above[..., :-1] & above[..., 1:]) @ dt
    lead, k = np.nonzero(above[..., :-1].reshape(-1, dt.size)
                         != above[..., 1:].reshape(-1, dt.size))
    if k.size:
        flat = values.reshape(-1, time.size)
        c0, c1 = flat[lead, k], flat[lead, k + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where((c0 > 0) & (c1 > 0), np.log(lloq / c0) / np.log(c1 / c0),
                            (lloq - c0) / (c1 - c0))
        frac = np.clip(np.nan_to_num(frac), 0.0, 1.0)
        part = np.where(c0 >= lloq, frac, 1.0 - frac) * dt[k]
        total = total.reshape(-1).copy()
        np.add.at(total, lead, part)
        total = total.reshape(values.shape[:-1])
    return total[()]   # a scalar for one trajectory, as without crossings


def trajectory_metrics(time: Any, values: Any, *, lloq: float | None = None,
                       time_unit: str = "day",
                       windows: Sequence[tuple[float, float]] | None = None
                       ) -> dict[str, np.ndarray]:
    """Exposure metrics of model trajectories on a common time grid (the one definition).

    Parameters
    ----------
    time : array_like, shape (n_time,)
        Increasing times in ``time_unit`` on the data's clock (time since infusion).
    values : array_like, shape (..., n_time)
        Trajectories (any leading dims), in the analyte's unit.
    lloq : float, optional
        Lower limit of quantification (analyte unit) for ``T_ABOVE_LLOQ``; NaN without it.
    time_unit : str
        Unit of ``time``; sets the default windows (0-28 and 0-84 days) and their names.
    windows : sequence of (start, end), optional
        AUC windows in ``time_unit``; a window reaching outside the grid gives NaN (the
        trajectory is not extrapolated).

    Returns
    -------
    dict of str to numpy.ndarray
        ``CMAX`` (analyte unit), ``TMAX`` (time unit), one ``AUC<start>_<end>`` per window
        (time unit x analyte unit, lin-up/log-down) and ``T_ABOVE_LLOQ`` (time unit), each of
        shape ``values.shape[:-1]``.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.linspace(0.0, 100.0, 2001)
    >>> m = trajectory_metrics(t, 100 * np.exp(-0.1 * t), lloq=1.0)
    >>> # exact: 1000 (1 - exp(-2.8)) and ln(100) / 0.1
    >>> round(float(m["AUC0_28"]), 4), round(float(m["T_ABOVE_LLOQ"]), 4)
    (939.1899, 46.0517)
    """
    t = np.asarray(time, dtype=float)
    v = np.asarray(values, dtype=float)
    if t.ndim != 1 or t.size < 2 or np.any(np.diff(t) <= 0):
        raise ValueError("time must be a 1-D increasing grid of at least two times")
    if v.shape[-1] != t.size:
        raise ValueError(f"values end in {v.shape[-1]} times, the grid has {t.size}")
    wins = list(default_windows(time_unit) if windows is None else windows)
    imax = np.argmax(v, axis=-1)
    out: dict[str, np.ndarray] = {"CMAX": np.max(v, axis=-1), "TMAX": t[imax]}
    tt, vv = _with_points(t, v, sorted({x for w in wins for x in w}))
    area, _, _ = segment_areas(tt[:-1], tt[1:], vv[..., :-1], vv[..., 1:])
    cum = np.concatenate([np.zeros(v.shape[:-1] + (1,)), np.cumsum(area, axis=-1)], axis=-1)
    for a, b in wins:
        name = window_name(a, b, time_unit)
        if a < tt[0] or b > tt[-1]:
            out[name] = np.full(v.shape[:-1], np.nan)
        else:
            out[name] = (cum[..., int(np.searchsorted(tt, b))]
                         - cum[..., int(np.searchsorted(tt, a))])
    out["T_ABOVE_LLOQ"] = (np.full(v.shape[:-1], np.nan) if lloq is None
                           else _time_above(t, v, float(lloq)))
    return out


def expansion_points(time_unit: str = "day") -> np.ndarray:
    """Times after a dose where CAR-T peak (model time unit), for exposure grids.

    40 points spaced geometrically over the first day, then 0.1-day steps to day 35 (over
    the expansion and early contraction: Cmax within 0.2 % of the peak).
    """
    from ckmodel.data.schema import time_factor

    day = time_factor("day", time_unit)  # one day in the model's unit
    return np.unique(np.concatenate([np.geomspace(day * 1e-3, day, 40),
                                     np.arange(0.0, 35.0 * day, 0.1 * day)]))


def exposure_grid(fit: Any, *, n: int = 800, end: float | None = None) -> np.ndarray:
    """The dense grid of :func:`exposure_draws` (model time unit, data clock).

    From the first dose to ``end`` (default: the later of the longest AUC window and 5 %
    past the last record), ``n`` uniform points, plus :func:`expansion_points` after each
    dose (a year-long grid of 800 points alone underestimates a sharp Cmax by up to 4 %),
    the dose times and the window ends.
    """
    unit = fit.spec.time_unit
    base = fit.time_grid()
    wins = default_windows(unit)
    t_end = max([float(base[-1])] + [b for _, b in wins if np.isfinite(b)]) if end is None \
        else float(end)
    scale = float(fit.meta.get("time_scale", 1.0))
    doses = np.unique(fit.data.doses["TIME"].to_numpy(float) * scale)
    t0 = float(doses.min()) if doses.size else 0.0
    near = [d + expansion_points(unit) for d in doses]
    grid = np.concatenate([np.linspace(t0, t_end, n), doses, *near,
                           [x for w in wins for x in w if np.isfinite(x)]])
    return np.unique(grid[(grid >= t0) & (grid <= t_end)])


def analyte_lloqs(fit: Any, analytes: Sequence[str]) -> dict[str, float]:
    """Each analyte's LLOQ: the median LLOQ of its records (NaN without any)."""
    obs = fit.data.observations
    out = {}
    for a in analytes:
        vals = pd.to_numeric(obs.loc[obs["ANALYTE"] == a, "LLOQ"], errors="coerce").dropna()
        out[a] = float(vals.median()) if len(vals) else float("nan")
    return out


def resolve_metric(name: str, analytes: Sequence[str], time_unit: str = "day"
                   ) -> tuple[str, str]:
    """``AUC0_28`` -> (first analyte, ``AUC0_28``); ``BM_QPCR_CMAX`` -> (``BM_QPCR``, ``CMAX``).

    Raises
    ------
    ValueError
        Naming the metrics and analytes there are.
    """
    metrics = metric_names(time_unit)
    text = str(name).strip()
    if text.upper() in metrics:
        return str(analytes[0]), text.upper()
    for a in sorted(analytes, key=len, reverse=True):
        if text.startswith(f"{a}_") and text[len(a) + 1:].upper() in metrics:
            return str(a), text[len(a) + 1:].upper()
    raise ValueError(f"unknown exposure metric {name!r}: use one of {', '.join(metrics)} "
                     f"(of {analytes[0]}), or ANALYTE_METRIC with an analyte of "
                     f"{', '.join(analytes)} (e.g. {analytes[-1]}_{metrics[0]})")


def exposure_draws(fit: Any, *, analytes: Sequence[str] | None = None,
                   metrics: Sequence[str] | None = None, n_draws: int = 200,
                   times: Any = None, chunk: int = 50) -> xr.Dataset:
    """Posterior draws of each subject's model-based exposure.

    Parameters
    ----------
    fit : Fit
        A fit with its data (the dosing history of each subject).
    analytes : sequence of str, optional
        Model outputs (default all, marrow ones included).
    metrics : sequence of str, optional
        Of :func:`metric_names` (default all).
    n_draws : int
        About this many posterior draws (the same draws of every chain; deterministic).
    times : array, optional
        The grid (model time unit, data clock); default :func:`exposure_grid`.
    chunk : int
        Draws solved at a time (bounds memory).

    Returns
    -------
    xarray.Dataset
        One variable ``<ANALYTE>_<METRIC>`` per pair, dims (``chain``, ``draw``,
        ``subject``); attrs ``unit``, ``analyte``, ``metric`` (and ``lloq`` for
        ``T_ABOVE_LLOQ``); dataset attrs ``model``, ``time_unit``, ``n_draws``,
        ``grid_points``, ``grid_end``, ``notes`` (one string, "; "-separated: NetCDF
        attributes are scalars).
    """
    if fit.data is None:
        raise ValueError("this fit holds no data: exposure needs each subject's dosing history")
    unit = fit.spec.time_unit
    outputs = list(fit.spec.output_names)
    chosen = outputs if analytes is None else [str(a) for a in analytes]
    bad = [a for a in chosen if a not in outputs]
    if bad:
        raise ValueError(f"analyte(s) {bad} are not outputs of {fit.spec.name}: "
                         f"{', '.join(outputs)}")
    names = metric_names(unit)
    want = names if metrics is None else [str(m).upper() for m in metrics]
    bad = [m for m in want if m not in names]
    if bad:
        raise ValueError(f"unknown exposure metric(s) {bad}: use {', '.join(names)}")
    grid = exposure_grid(fit) if times is None else np.unique(np.asarray(times, float))
    traj = fit.trajectories(grid, n_draws=n_draws).sel(analyte=chosen)
    lloq = analyte_lloqs(fit, chosen)
    units = {str(a): str(u) for a, u in zip(traj.analyte.values, traj.unit.values, strict=True)}
    parts: dict[str, list[np.ndarray]] = {f"{a}_{m}": [] for a in chosen for m in want}
    for k in range(0, traj.sizes["draw"], max(1, int(chunk))):
        block = traj.isel(draw=slice(k, k + chunk))
        for a in chosen:
            lq = lloq[a] if np.isfinite(lloq[a]) else None
            vals = trajectory_metrics(grid, block.sel(analyte=a).values, lloq=lq, time_unit=unit)
            for m in want:
                parts[f"{a}_{m}"].append(vals[m])
    coords = {"chain": traj.chain.values, "draw": traj.draw.values,
              "subject": [str(s) for s in traj.subject.values]}
    ds = xr.Dataset(coords=coords)
    for a in chosen:
        for m in want:
            col = "CMAX" if m == "CMAX" else "TMAX" if m in ("TMAX", "T_ABOVE_LLOQ") else "AUC"
            attrs = {"unit": column_unit(col, units[a], unit), "analyte": a, "metric": m}
            if m == "T_ABOVE_LLOQ":
                attrs["lloq"] = lloq[a]
            ds[f"{a}_{m}"] = (("chain", "draw", "subject"),
                              np.concatenate(parts[f"{a}_{m}"], axis=1), attrs)
    hsct = int(fit.data.hsct_time.reindex(list(traj.subject.values)).notna().sum())
    notes = [f"grid of {grid.size} times to {grid[-1]:g} {unit}s, which bounds T_ABOVE_LLOQ"]
    if hsct:
        notes.append(f"{hsct} subject(s) had allo-HSCT: their exposure after it is the "
                     "model's counterfactual CAR-T trajectory")
    ds.attrs.update({"model": fit.spec.name, "time_unit": unit, "n_draws": traj.attrs["n_draws"],
                     "grid_points": int(grid.size), "grid_end": float(grid[-1]),
                     "notes": "; ".join(notes)})
    return ds


def exposure_table(ds: xr.Dataset, *, level: float = 0.95) -> pd.DataFrame:
    """Median and equal-tailed interval of each subject's exposure metrics.

    Returns
    -------
    pandas.DataFrame
        Columns ``ID, ANALYTE, METRIC, UNIT, MEDIAN, LOWER, UPPER``, one row per subject,
        analyte and metric (in the order of the dataset's variables).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    lo, hi = (1.0 - level) / 2.0, 1.0 - (1.0 - level) / 2.0
    rows = []
    for name, var in ds.data_vars.items():
        flat = var.stack(sample=("chain", "draw")).transpose("subject", "sample").values
        q = np.quantile(flat, [0.5, lo, hi], axis=1)
        for i, sid in enumerate(var.subject.values):
            rows.append({"ID": str(sid), "ANALYTE": var.attrs.get("analyte", name),
                         "METRIC": var.attrs.get("metric", name), "UNIT": var.attrs.get("unit", ""),
                         "MEDIAN": q[0, i], "LOWER": q[1, i], "UPPER": q[2, i]})
    return pd.DataFrame(rows, columns=["ID", "ANALYTE", "METRIC", "UNIT", "MEDIAN", "LOWER",
                                       "UPPER"])


def compare_with_nca(fit: Any, exposure: xr.Dataset | None = None, *,
                     min_samples: int = 6) -> pd.DataFrame:
    """Model-based exposure (posterior median) beside each subject's NCA value.

    Parameters
    ----------
    fit : Fit
        The fit (its data give the NCA).
    exposure : xarray.Dataset, optional
        From :func:`exposure_draws` (computed when not given).
    min_samples : int
        Profiles with at least this many quantified records are flagged ``RICH``: there NCA
        and the model should agree; on sparse profiles NCA misses the peak.

    Returns
    -------
    pandas.DataFrame
        ``ID, ANALYTE, METRIC, UNIT, MODEL, NCA, RATIO`` (NCA / model), ``N_USED``, ``RICH``.
    """
    from ckmodel.nca import nca

    ds = exposure if exposure is not None else exposure_draws(fit)
    table = exposure_table(ds)
    observed = nca(fit.data, time_unit=fit.spec.time_unit)
    metrics = [m for m in table["METRIC"].unique() if m in observed.columns]
    long = observed.melt(id_vars=["ID", "ANALYTE", "N_USED"], value_vars=metrics,
                         var_name="METRIC", value_name="NCA")
    long["ID"] = long["ID"].astype(str)
    out = table.rename(columns={"MEDIAN": "MODEL"}).drop(columns=["LOWER", "UPPER"]).merge(
        long, on=["ID", "ANALYTE", "METRIC"], how="inner")
    with np.errstate(divide="ignore", invalid="ignore"):
        out["RATIO"] = out["NCA"] / out["MODEL"]
    out["RICH"] = out["N_USED"] >= int(min_samples)
    return out[["ID", "ANALYTE", "METRIC", "UNIT", "MODEL", "NCA", "RATIO", "N_USED", "RICH"]]
