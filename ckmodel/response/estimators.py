"""Textbook estimators behind the endpoint tables: Clopper-Pearson and Kaplan-Meier.

NumPy/SciPy kernels on plain arrays, with the conventions of R so that the numbers match what a
statistician checks them against:

* :func:`clopper_pearson` is R's ``binom.test(x, n)$conf.int``: the exact interval from beta
  quantiles, with the lower limit 0 when ``x = 0`` and the upper limit 1 when ``x = n``.
* :func:`kaplan_meier` is R's ``survival::survfit(Surv(time, event) ~ 1)`` with its defaults:
  one row per distinct time (events and censorings), censorings at an event time still at
  risk at that time, Greenwood's variance, ``conf.type = "log"`` (interval
  ``S exp(+-z se(log S))`` with ``se(log S)^2 = sum d / (n (n - d))``, upper limit cut at 1;
  no limits where S = 0), and times closer than ``sqrt(machine eps)`` merged as ``aeqSurv``
  does.
* :func:`km_median` is what ``print(survfit(...))`` reports: the first time the curve is below
  0.5; when the curve sits exactly at 0.5 (within ``sqrt(eps)``) over an interval, the midpoint
  of the time it got there and the time of the next drop; the same rule on the lower and upper
  confidence curves gives the interval (NaN, R's NA, where a curve never goes below 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

__all__ = ["clopper_pearson", "kaplan_meier", "km_median", "km_at", "KM_COLUMNS"]

#: Columns of the table :func:`kaplan_meier` returns.
KM_COLUMNS = ("time", "n_risk", "n_event", "n_censor", "survival", "std_err", "lower", "upper")
_TOL = float(np.sqrt(np.finfo(float).eps))  # R: sqrt(.Machine$double.eps)


def _check_level(conf_level: float) -> float:
    level = float(conf_level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"conf_level must be between 0 and 1 (e.g. 0.95), got {conf_level!r}")
    return level


def clopper_pearson(
    x: ArrayLike, n: ArrayLike, *, conf_level: float = 0.95,
) -> tuple[np.ndarray, np.ndarray] | tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval of a binomial proportion.

    Parameters
    ----------
    x : int or array_like of int
        Number of subjects with the outcome (responders, DLTs...).
    n : int or array_like of int
        Number of evaluable subjects; broadcast against ``x``.
    conf_level : float
        Two-sided confidence level (0.95 for a 95 % interval).

    Returns
    -------
    lower, upper : float or numpy.ndarray
        Limits of the proportion (0-1 scale): ``Beta(a/2; x, n - x + 1)`` and
        ``Beta(1 - a/2; x + 1, n - x)`` quantiles, with 0 when ``x = 0`` and 1 when ``x = n``
        (as R's ``binom.test``); NaN where ``n = 0``. Floats for scalar input.

    Raises
    ------
    ValueError
        When a count is negative, not a whole number, or ``x > n``.

    Examples
    --------
    >>> lo, hi = clopper_pearson(3, 10)
    >>> round(lo, 4), round(hi, 4)
    (0.0667, 0.6525)
    >>> [round(v, 4) for v in clopper_pearson(0, 10)]
    [0.0, 0.3085]
    """
    level = _check_level(conf_level)
    xa, na = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(n, dtype=float))
    if np.any(~np.isfinite(xa)) or np.any(~np.isfinite(na)):
        raise ValueError("clopper_pearson: counts must be finite")
    if np.any(xa < 0) or np.any(xa > na) or np.any(xa != np.round(xa)) \
            or np.any(na != np.round(na)):
        raise ValueError("clopper_pearson: x and n must be whole numbers with 0 <= x <= n")
    a = (1.0 - level) / 2.0
    none, zero, full = na == 0, xa == 0, xa == na
    lower = stats.beta.ppf(a, np.where(zero, 1.0, xa), na - xa + 1.0)
    upper = stats.beta.ppf(1.0 - a, xa + 1.0, np.where(full, 1.0, na - xa))
    lower = np.where(zero, 0.0, lower)
    upper = np.where(full, 1.0, upper)
    lower, upper = np.where(none, np.nan, lower), np.where(none, np.nan, upper)
    if np.ndim(x) == 0 and np.ndim(n) == 0:
        return float(lower), float(upper)
    return lower, upper


def _merge_close(t: np.ndarray) -> np.ndarray:
    """Map times within ``sqrt(eps)`` (absolute, or relative to the mean) onto one value."""
    y = np.unique(t)
    if y.size < 2:
        return t
    dy = np.diff(y)
    scale = np.mean(np.abs(y))
    tied = (dy <= _TOL) | ((dy / scale <= _TOL) if scale > 0 else False)
    if not np.any(tied):
        return t
    cuts = y[np.concatenate([[True], ~tied])]
    return cuts[np.searchsorted(cuts, t, side="right") - 1]


def kaplan_meier(
    time: ArrayLike, event: ArrayLike, *, conf_level: float = 0.95,
) -> pd.DataFrame:
    """Kaplan-Meier estimate with Greenwood standard errors and log-scale intervals.

    Parameters
    ----------
    time : array_like of float
        Event or censoring time of each subject (any unit, e.g. days since infusion).
    event : array_like of {0, 1} or bool
        1 when the event was observed at ``time``, 0 when the subject was censored there.
    conf_level : float
        Two-sided level of the pointwise confidence interval.

    Returns
    -------
    pandas.DataFrame
        One row per distinct time, sorted (the columns of :data:`KM_COLUMNS`):
        ``time``; ``n_risk`` (subjects with time >= this time); ``n_event``; ``n_censor``;
        ``survival`` S(t) just after the time; ``std_err`` Greenwood standard error of S(t)
        (``S sqrt(sum d / (n (n - d)))``, as ``summary.survfit`` prints it; NaN where S = 0);
        ``lower``, ``upper`` the ``conf.type = "log"`` limits (NaN where S = 0). The same
        numbers as R's ``survfit(Surv(time, event) ~ 1)``. ``attrs["conf_level"]`` and
        ``attrs["n"]`` hold the level and the number of subjects.

    Raises
    ------
    ValueError
        When the inputs differ in length, a time is missing or not finite, or an event flag is
        not 0/1.

    Examples
    --------
    Freireich's 6-MP arm (weeks of remission; survfit's numbers):

    >>> t = [6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35]
    >>> e = [1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
    >>> km = kaplan_meier(t, e)
    >>> km.loc[km.n_event > 0, ["time", "n_risk", "survival"]].round(3).head(3).to_numpy()
    array([[ 6.   , 21.   ,  0.857],
           [ 7.   , 17.   ,  0.807],
           [10.   , 15.   ,  0.753]])
    """
    level = _check_level(conf_level)
    t = np.asarray(time, dtype=float).ravel()
    d = np.asarray(event, dtype=float).ravel()
    if t.shape != d.shape:
        raise ValueError(f"time and event differ in length ({t.size} and {d.size})")
    if np.any(~np.isfinite(t)):
        raise ValueError("kaplan_meier: every time must be a finite number (drop missing "
                         "times first)")
    if np.any(~np.isin(d, (0.0, 1.0))):
        raise ValueError("kaplan_meier: event must be 0 (censored) or 1 (event)")
    t = _merge_close(t)
    ut, inv = np.unique(t, return_inverse=True)
    n_event = np.bincount(inv, weights=d, minlength=ut.size)
    n_all = np.bincount(inv, minlength=ut.size).astype(float)
    n_censor = n_all - n_event
    n_risk = np.cumsum(n_all[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(n_event > 0, (n_risk - n_event) / n_risk, 1.0)
        surv = np.cumprod(factor)
        term = np.where(n_event > 0, n_event / (n_risk * (n_risk - n_event)), 0.0)
        se_log = np.sqrt(np.cumsum(term))  # Inf once S reaches 0 (n = d)
        z = stats.norm.ppf(1.0 - (1.0 - level) / 2.0)
        pos = surv > 0
        ls = np.log(np.where(pos, surv, np.nan))
        lower = np.where(se_log == 0, surv, np.exp(ls - z * se_log))
        upper = np.where(se_log == 0, surv, np.minimum(np.exp(ls + z * se_log), 1.0))
        std_err = np.where(pos, surv * se_log, np.nan)
    lower, upper = np.where(pos, lower, np.nan), np.where(pos, upper, np.nan)
    table = pd.DataFrame({"time": ut, "n_risk": n_risk.astype(np.int64),
                          "n_event": n_event.astype(np.int64),
                          "n_censor": n_censor.astype(np.int64), "survival": surv,
                          "std_err": std_err, "lower": lower, "upper": upper},
                         columns=list(KM_COLUMNS))
    table.attrs.update({"conf_level": level, "n": int(t.size)})
    return table


def _first_below_half(y: np.ndarray, x: np.ndarray) -> float:
    """Median rule of R's survfit print (``minmin`` in ``survmean``) on one curve."""
    keep = ~np.isnan(y) & (y < 0.5 + _TOL)
    if not np.any(keep):
        return float("nan")
    xk, yk = x[keep], y[keep]
    if abs(yk[0] - 0.5) < _TOL:
        lower = np.flatnonzero(yk < yk[0])
        if lower.size:
            return float((xk[0] + xk[lower[0]]) / 2.0)
    return float(xk[0])


def km_median(table: pd.DataFrame) -> tuple[float, float, float]:
    """Median of a Kaplan-Meier curve and its confidence interval, as survfit prints them.

    Parameters
    ----------
    table : pandas.DataFrame
        A :func:`kaplan_meier` table.

    Returns
    -------
    median, lower, upper : float
        In the unit of the table's times; NaN (R's NA) where the curve (or its lower / upper
        confidence curve) never goes below 0.5. Where a curve is flat exactly at 0.5, the
        midpoint between the time it reached 0.5 and the time of its next drop.

    Examples
    --------
    >>> km = kaplan_meier([1, 2, 3, 4], [1, 1, 1, 1])
    >>> km_median(km)[0]  # S = 0.5 on [2, 3): the midpoint
    2.5
    """
    x = table["time"].to_numpy(dtype=float)
    return (_first_below_half(table["survival"].to_numpy(dtype=float), x),
            _first_below_half(table["lower"].to_numpy(dtype=float), x),
            _first_below_half(table["upper"].to_numpy(dtype=float), x))


def km_at(table: pd.DataFrame, times: Sequence[float] | ArrayLike) -> pd.DataFrame:
    """Survival, its interval and the number at risk at stated times.

    Parameters
    ----------
    table : pandas.DataFrame
        A :func:`kaplan_meier` table.
    times : sequence of float
        Times in the unit of the table (e.g. 180 and 365 days).

    Returns
    -------
    pandas.DataFrame
        One row per time: ``time``; ``n_risk`` (subjects still followed and event-free at
        the time, i.e. time >= t, as ``summary(fit, times = t)`` counts them); ``n_event``
        (events up to and including t); ``survival``, ``std_err``, ``lower``, ``upper`` of
        the step function at t (1 and no spread before the first event). After the last
        observed time the estimate is NaN unless the curve has reached 0.

    Examples
    --------
    >>> km = kaplan_meier([2, 4, 4, 7, 9], [1, 0, 1, 1, 0])
    >>> km_at(km, [0, 4, 8])[["time", "n_risk", "n_event", "survival"]].to_numpy()
    array([[0. , 5. , 0. , 1. ],
           [4. , 4. , 2. , 0.6],
           [8. , 1. , 3. , 0.3]])
    """
    tq = np.asarray(times, dtype=float).ravel()
    t = table["time"].to_numpy(dtype=float)
    n_risk = table["n_risk"].to_numpy()
    idx_ge = np.searchsorted(t, tq, side="left")  # first row with time >= tq
    risk = np.where(idx_ge < t.size, n_risk[np.minimum(idx_ge, t.size - 1)] if t.size else 0,
                    0)
    idx_le = np.searchsorted(t, tq, side="right") - 1  # last row with time <= tq
    cum_events = np.concatenate([[0], np.cumsum(table["n_event"].to_numpy())])
    out = {"time": tq, "n_risk": risk.astype(np.int64),
           "n_event": cum_events[idx_le + 1].astype(np.int64)}
    last_surv = float(table["survival"].iat[-1]) if t.size else 1.0
    beyond = (tq > t[-1]) if t.size else np.ones(tq.shape, dtype=bool)  # no data: unknown
    for col, before in (("survival", 1.0), ("std_err", 0.0), ("lower", 1.0), ("upper", 1.0)):
        v = table[col].to_numpy(dtype=float)
        vals = np.where(idx_le >= 0, v[np.maximum(idx_le, 0)] if t.size else before, before)
        out[col] = np.where(beyond & (last_surv > 0), np.nan, vals)
    return pd.DataFrame(out)
