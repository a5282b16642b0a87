"""Non-compartmental analysis (NCA) of cellular-kinetic profiles, PKNCA/WinNonlin conventions.

One row per profile (subject x analyte); any analyte and any time unit. The numerical core is a
vectorised NumPy kernel on padded ``(n_profiles, n_samples)`` arrays (:func:`nca_arrays`);
:func:`nca` is the pandas wrapper and :func:`nca_summary` makes group summaries.

Conventions
-----------
Records
    ``MDV == 1`` records are excluded; so are records with ``AFTER_HSCT`` true unless
    ``exclude_after_hsct=False`` (an allo-HSCT ends the CAR-T record); with an ``EVID`` column only
    ``EVID == 0`` rows are used. A missing DV that is not flagged BLQ is dropped. A DV of exactly 0
    counts as BLQ (as in PKNCA). Negative DVs and duplicated times within a profile are errors.
BLQ (``blq_rule``, like PKNCA's ``conc.blq``)
    Each BLQ record is classed by position: *first* (before the first quantifiable value; every
    BLQ of a profile with no quantifiable value is *first*), *middle* (between quantifiable
    values) or *last* (after the last one). Each class gets an action: ``"zero"``, ``"drop"`` or
    ``"lloq-half"`` (LLOQ/2; dropped when LLOQ is missing). Named rules:

    - ``"first-zero-rest-drop"`` (default): first -> 0, middle and last dropped.
    - ``"all-zero"``: every BLQ -> 0.
    - ``"drop"``: every BLQ dropped.
    - ``"lloq-half"``: every BLQ -> LLOQ/2 (such values then count as quantifiable).
    - a mapping ``{"first": ..., "middle": ..., "last": ...}``; PKNCA's own default is
      ``{"first": "zero", "middle": "drop", "last": "zero"}``.
Time zero
    TIME is time since infusion (dose) and the NCA interval is [0, inf), as PKNCA's default
    single-dose interval: pre-infusion records (``TIME < 0``) are ignored. CAR-T profiles start
    at the infusion with no cells in the sample, so with ``add_zero=True`` a point (0, 0) is
    added when no record at ``TIME == 0`` (i.e. at ``TIME <= 0``) remains after the BLQ rule. AUCs
    integrate from the first remaining time point.
AUC
    ``"lin-up/log-down"``: log trapezoid ``dt (C1 - C2) / ln(C1 / C2)`` when ``C1 > C2 > 0``,
    linear trapezoid otherwise (also when equal). ``"linear"``: linear trapezoid throughout.
    AUCLST runs from the first time to TLST; fewer than two points gives NaN.
Lambda_z
    Log-linear least squares on the last n positive concentrations strictly after TMAX, n >= 3.
    The largest adjusted R^2 over all candidates is found; among fits with a negative slope and
    adjusted R^2 >= best - ``r2adj_tolerance`` the one with the most points is chosen (PKNCA's
    ``adj.r.squared.factor`` rule; PKNCA's strict ``>`` differs only at exact ties). No such fit
    gives NaN (e.g. a plateau, a rising tail, fewer than three points).
Partial AUCs ``AUC{a}_{b}``
    As PKNCA's ``aucint.inf.obs``: concentrations at window ends are interpolated with the AUC
    method (log-linear on a log-down segment, linear otherwise); beyond TLST the curve is
    extrapolated as ``CLST exp(-LAMZ (t - TLST))`` (records after TLST are not used), so a window
    ending after TLST is NaN when LAMZ is NaN. A window starting before the first time is NaN.
No quantifiable value (all BLQ)
    As PKNCA: CMAX 0, TMAX NaN, CLST 0, TLST NaN, AUCLST, AUCIFO and partial AUCs 0 (with at least
    two points), lambda_z columns NaN. A profile with no usable record is NaN throughout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ckmodel._nca_kernel import check_windows, nca_kernel, resolve_blq_rule, window_name
from ckmodel.errors import DatasetError, Problem

__all__ = ["nca", "nca_arrays", "nca_summary", "NCA_COLUMNS", "BLQ_RULES"]

BLQ_RULES = ("first-zero-rest-drop", "all-zero", "drop", "lloq-half")
NCA_COLUMNS = (
    "CMAX", "TMAX", "CLST", "TLST", "AUCLST", "AUCIFO",
    "LAMZ", "LAMZHL", "LAMZNPT", "R2ADJ", "LAMZLL", "LAMZUL",
)  # fmt: skip
_SUMMARY_STATS = ("N", "N_GEO", "GEOMEAN", "GEOCV", "MEAN", "SD", "MEDIAN", "MIN", "MAX")


def nca_arrays(
    time: Any,
    conc: Any,
    blq: Any = None,
    lloq: Any = None,
    *,
    auc_method: str = "lin-up/log-down",
    windows: Sequence[tuple[float, float]] = ((0, 28), (0, 84)),
    blq_rule: str | Mapping[str, str] = "first-zero-rest-drop",
    add_zero: bool = True,
    min_points_lambda_z: int = 3,
    r2adj_tolerance: float = 1e-4,
) -> dict[str, np.ndarray]:
    """NCA of many profiles at once on padded 2-D arrays (the NumPy kernel of :func:`nca`).

    Parameters
    ----------
    time : array_like, shape (n_profiles, n_samples)
        Sampling times in any unit (days for CAR-T); NaN marks padding. Need not be sorted.
    conc : array_like, shape (n_profiles, n_samples)
        Concentrations (e.g. copies/ug gDNA); ignored where ``blq`` is true.
    blq : array_like of bool, optional
        True where the record is below the LLOQ. Default: none.
    lloq : array_like, optional
        Lower limit of quantification per record, used by the ``"lloq-half"`` action.

    Other Parameters
    ----------------
    auc_method, windows, blq_rule, add_zero, min_points_lambda_z, r2adj_tolerance
        As in :func:`nca`.

    Returns
    -------
    dict of str to numpy.ndarray
        One float array of length ``n_profiles`` per output column of :func:`nca` (without ID
        and ANALYTE), in the same units.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.array([[1.0, 2.0, 4.0, 8.0], [1.0, 2.0, 3.0, np.nan]])
    >>> c = np.array([[10.0, 8.0, 4.0, 1.0], [1.0, 2.0, 1.0, np.nan]])
    >>> out = nca_arrays(t, c, windows=[(0, 2)])
    >>> out["CMAX"], out["TMAX"]
    (array([10.,  2.]), array([1., 2.]))
    >>> round(float(out["LAMZ"][0]), 4), int(out["LAMZNPT"][0])
    (0.3466, 3)
    >>> out["AUC0_2"].round(4)  # 0-1 linear, 1-2 log-down: 5 + 2 / ln(1.25)
    array([13.9628,  2.    ])
    """
    return nca_kernel(
        time, conc, blq, lloq,
        auc_method=auc_method, windows=windows, blq_rule=blq_rule, add_zero=add_zero,
        min_points_lambda_z=min_points_lambda_z, r2adj_tolerance=r2adj_tolerance,
    )  # fmt: skip


def _observations(data: Any) -> pd.DataFrame:
    obs = getattr(data, "observations", data)
    if not isinstance(obs, pd.DataFrame):
        raise TypeError("data must be a CKData-like object (.observations) or a pandas DataFrame")
    missing = [c for c in ("ID", "TIME", "DV") if c not in obs.columns]
    if missing:
        raise DatasetError([Problem(f"missing column {c}", column=c, rule="nca-columns")
                            for c in missing])  # fmt: skip
    return obs


def _flag(obs: pd.DataFrame, name: str) -> np.ndarray:
    """Column as a bool array (missing column or value -> False)."""
    if name not in obs.columns:
        return np.zeros(len(obs), dtype=bool)
    return np.nan_to_num(obs[name].to_numpy(dtype=float, na_value=np.nan)) > 0


def nca(
    data: Any,
    *,
    analytes: str | Sequence[str] | None = None,
    auc_method: str = "lin-up/log-down",
    windows: Sequence[tuple[float, float]] = ((0, 28), (0, 84)),
    blq_rule: str | Mapping[str, str] = "first-zero-rest-drop",
    add_zero: bool = True,
    exclude_after_hsct: bool = True,
    min_points_lambda_z: int = 3,
    r2adj_tolerance: float = 1e-4,
) -> pd.DataFrame:
    """Non-compartmental metrics per subject and analyte (PKNCA conventions, see module doc).

    Parameters
    ----------
    data : CKData or pandas.DataFrame
        A ``CKData``-like object (its ``.observations`` is used) or an observation table with
        columns ID, TIME (any unit; days since infusion for CAR-T) and DV, and optionally
        ANALYTE, BLQ, LLOQ, MDV, EVID and AFTER_HSCT.
    analytes : str or sequence of str, optional
        Analytes to analyse (e.g. ``"PB_QPCR"``); default all.

    Other Parameters
    ----------------
    auc_method : {"lin-up/log-down", "linear"}
        Trapezoid rule for all AUCs.
    windows : sequence of (float, float)
        Partial AUC windows ``(a, b)`` in TIME units, reported as ``AUC{a}_{b}``; ``b`` may be
        ``numpy.inf``.
    blq_rule : str or mapping
        Handling of BLQ records: ``"first-zero-rest-drop"`` (default), ``"all-zero"``,
        ``"drop"``, ``"lloq-half"`` or a ``{"first", "middle", "last"}`` mapping of actions.
    add_zero : bool
        Add a (0, 0) point when no record at ``TIME == 0`` remains (default True); records at
        ``TIME < 0`` (pre-infusion) are always ignored.
    exclude_after_hsct : bool
        Drop records flagged ``AFTER_HSCT`` (default True). ``MDV == 1`` records are always
        dropped.
    min_points_lambda_z : int
        Fewest points in the terminal fit (>= 3).
    r2adj_tolerance : float
        Fits within this adjusted R^2 of the best compete; the longest one wins.

    Returns
    -------
    pandas.DataFrame
        One row per ID x ANALYTE with columns ID, ANALYTE, CMAX (DV unit), TMAX (TIME unit),
        CLST (DV unit), TLST (TIME unit), AUCLST and AUCIFO (DV unit x TIME unit; AUCIFO =
        AUCLST + CLST / LAMZ), LAMZ (1 / TIME unit), LAMZHL (TIME unit), LAMZNPT (points, float),
        R2ADJ, LAMZLL and LAMZUL (first and last time of the terminal fit), then one
        ``AUC{a}_{b}`` column per window (DV unit x TIME unit). Options are in ``.attrs["nca"]``.

    Notes
    -----
    The full rules are in the :mod:`ckmodel.nca` module docstring. In short: MDV=1 and (by
    default) after-HSCT records are excluded; leading BLQ -> 0, later BLQ dropped; lambda_z from
    the best adjusted R^2 (ties within ``r2adj_tolerance`` -> most points) on points after TMAX;
    a partial AUC past TLST is extrapolated with LAMZ (NaN when LAMZ is NaN), as PKNCA's
    ``aucint.inf.obs``; a profile without any quantifiable value has CMAX = CLST = 0, AUCs 0,
    TMAX and TLST NaN (as PKNCA).

    Examples
    --------
    >>> import pandas as pd
    >>> obs = pd.DataFrame({
    ...     "ID": ["1"] * 5, "ANALYTE": "PB_QPCR", "TIME": [0.0, 7, 14, 28, 56],
    ...     "DV": [float("nan"), 1000.0, 400.0, 100.0, 20.0], "BLQ": [1, 0, 0, 0, 0],
    ... })
    >>> res = nca(obs, windows=[(0, 28)])
    >>> res[["ID", "ANALYTE", "CMAX", "TMAX", "TLST", "LAMZNPT"]]
      ID  ANALYTE    CMAX  TMAX  TLST  LAMZNPT
    0  1  PB_QPCR  1000.0   7.0  56.0      3.0
    >>> round(float(res["AUC0_28"].iloc[0]), 1)
    11113.4
    """
    actions = resolve_blq_rule(blq_rule)
    wins = check_windows(windows)
    obs = _observations(data)
    keep = ~_flag(obs, "MDV")
    if "EVID" in obs.columns:
        keep &= np.nan_to_num(obs["EVID"].to_numpy(dtype=float, na_value=np.nan)) == 0
    if exclude_after_hsct:
        keep &= ~_flag(obs, "AFTER_HSCT")
    analyte = obs["ANALYTE"] if "ANALYTE" in obs.columns else pd.Series("DV", index=obs.index)
    if analytes is not None:
        wanted = [analytes] if isinstance(analytes, str) else list(analytes)
        keep &= analyte.isin(wanted).to_numpy()
    keep &= obs["ID"].notna().to_numpy() & analyte.notna().to_numpy()
    obs, analyte = obs.loc[keep], analyte.loc[keep]

    time = obs["TIME"].to_numpy(dtype=float, na_value=np.nan)
    frame = pd.DataFrame({"ID": obs["ID"].to_numpy(), "ANALYTE": analyte.to_numpy(), "T": time})
    dup = frame.duplicated(keep=False).to_numpy() & np.isfinite(time)
    if dup.any():
        first = frame[dup].drop_duplicates()
        raise DatasetError([
            Problem(f"analyte {a}: more than one record at TIME {t:g}", subject=str(i),
                    column="TIME", rule="nca-duplicate-time")
            for i, a, t in first.itertuples(index=False)
        ])  # fmt: skip

    def column(name: str) -> np.ndarray:
        if name not in obs.columns:
            return np.full(len(obs), np.nan)
        return obs[name].to_numpy(dtype=float, na_value=np.nan)

    dv, blq = column("DV"), _flag(obs, "BLQ")
    negative = (dv < 0) & ~blq
    if negative.any():
        raise DatasetError([
            Problem(f"analyte {a}: negative DV at TIME {t:g} without BLQ=1", subject=str(i),
                    column="DV", rule="nca-negative-dv")
            for i, a, t in frame[negative].itertuples(index=False)
        ])  # fmt: skip

    id_code, id_uniq = pd.factorize(frame["ID"])
    an_code, an_uniq = pd.factorize(frame["ANALYTE"])
    prof, row = np.unique(id_code * max(len(an_uniq), 1) + an_code, return_inverse=True)
    order = np.argsort(row, kind="stable")
    counts = np.bincount(row, minlength=len(prof))
    slot = np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts)
    shape = (len(prof), max(int(counts.max(initial=0)), 1))

    def pad(values: np.ndarray) -> np.ndarray:
        out = np.full(shape, np.nan)
        out[row[order], slot] = values[order]
        return out

    res = nca_kernel(
        pad(time), pad(dv), pad(blq.astype(float)), pad(column("LLOQ")),
        auc_method=auc_method, windows=wins, blq_rule=blq_rule, add_zero=add_zero,
        min_points_lambda_z=min_points_lambda_z, r2adj_tolerance=r2adj_tolerance,
    )  # fmt: skip
    n_an = max(len(an_uniq), 1)
    table = pd.DataFrame({
        "ID": pd.Index(id_uniq).take(prof // n_an), "ANALYTE": pd.Index(an_uniq).take(prof % n_an)
    })  # fmt: skip
    for name in (*NCA_COLUMNS, *(window_name(a, b) for a, b in wins)):
        table[name] = res[name]
    table.attrs["nca"] = {
        "auc_method": auc_method, "windows": wins, "blq_rule": dict(zip(
            ("first", "middle", "last"), actions, strict=True)),
        "add_zero": add_zero, "exclude_after_hsct": exclude_after_hsct,
        "min_points_lambda_z": min_points_lambda_z, "r2adj_tolerance": r2adj_tolerance,
    }  # fmt: skip
    return table


def _covariates(data: Any) -> pd.DataFrame:
    cov = getattr(data, "covariates", data)
    if not isinstance(cov, pd.DataFrame):
        raise TypeError("data must be CKData-like (.covariates) or a covariate DataFrame")
    if "ID" in cov.columns:
        cov = cov.drop_duplicates("ID").set_index("ID")
    cov = cov.copy()
    cov.index = cov.index.astype(str)
    return cov


def nca_summary(
    table: pd.DataFrame,
    data: Any = None,
    *,
    by: str | Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Summarise an :func:`nca` table per analyte (and group), one row per metric.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`nca` (columns ID, ANALYTE and metrics).
    data : CKData or pandas.DataFrame, optional
        Source of subject-level ``by`` columns missing from ``table``: a ``CKData``-like object
        (its ``.covariates``, indexed by ID) or a covariate table (ID index or column).
    by : str or sequence of str, optional
        Grouping columns, e.g. ``"DOSE_LEVEL"``. Default: per analyte only.
    metrics : sequence of str, optional
        Metric columns to summarise; default every numeric column except LAMZNPT.

    Returns
    -------
    pandas.DataFrame
        Columns: the ``by`` columns, ANALYTE, METRIC, N (non-missing values), N_GEO (positive
        values, used for the geometric statistics), GEOMEAN, GEOCV (%, ``100 sqrt(exp(s^2) - 1)``
        with ``s`` the SD of the log values), MEAN, SD (n - 1), MEDIAN, MIN, MAX, in the units
        of each metric.

    Examples
    --------
    >>> import pandas as pd
    >>> tab = pd.DataFrame({"ID": ["1", "2", "3"], "ANALYTE": "PB_QPCR",
    ...                     "CMAX": [10.0, 100.0, 1000.0]})
    >>> s = nca_summary(tab, pd.DataFrame({"DOSE_LEVEL": [1, 1, 2]}, index=["1", "2", "3"]),
    ...                 by="DOSE_LEVEL")
    >>> s[["DOSE_LEVEL", "METRIC", "N", "GEOMEAN", "MEAN"]].round(3)
       DOSE_LEVEL METRIC  N   GEOMEAN    MEAN
    0           1   CMAX  2    31.623    55.0
    1           2   CMAX  1  1000.000  1000.0
    """
    by = [] if by is None else [by] if isinstance(by, str) else list(by)
    tab = table.copy()
    missing = [b for b in by if b not in tab.columns]
    if missing:
        if data is None:
            raise KeyError(f"by columns {missing} are not in the table; pass data= to look them up")
        cov = _covariates(data)
        absent = [b for b in missing if b not in cov.columns]
        if absent:
            raise KeyError(f"by columns {absent} are in neither the table nor the covariates")
        for b in missing:
            tab[b] = tab["ID"].astype(str).map(cov[b]).to_numpy()
    if metrics is None:
        skip = {"ID", "ANALYTE", "LAMZNPT", *by}
        metrics = [c for c in tab.columns
                   if c not in skip and pd.api.types.is_numeric_dtype(tab[c])]  # fmt: skip
    keys = [*by, "ANALYTE"]
    long = tab.melt(id_vars=keys, value_vars=list(metrics), var_name="METRIC", value_name="V")
    v = long["V"].to_numpy(dtype=float, na_value=np.nan)
    positive = v > 0
    long["LOGV"] = np.log(np.where(positive, v, 1.0))
    long.loc[~positive, "LOGV"] = np.nan
    long["V"] = v
    g = long.groupby([*keys, "METRIC"], sort=False, dropna=False)
    out = g.agg(
        N=("V", "count"), N_GEO=("LOGV", "count"), LMEAN=("LOGV", "mean"), LSD=("LOGV", "std"),
        MEAN=("V", "mean"), SD=("V", "std"), MEDIAN=("V", "median"), MIN=("V", "min"),
        MAX=("V", "max"),
    ).reset_index()  # fmt: skip
    lsd = out["LSD"].to_numpy(dtype=float, na_value=np.nan)
    out["GEOMEAN"] = np.exp(out["LMEAN"].to_numpy(dtype=float, na_value=np.nan))
    out["GEOCV"] = 100.0 * np.sqrt(np.expm1(lsd * lsd))
    out = out.sort_values([*keys], kind="stable").reset_index(drop=True)
    return out[[*keys, "METRIC", *_SUMMARY_STATS]]
