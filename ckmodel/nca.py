"""Non-compartmental analysis (NCA) of cellular-kinetic profiles, PKNCA/WinNonlin conventions.

One row per profile (subject x analyte); any analyte and any time unit. The numerical core is a
vectorised NumPy kernel on padded ``(n_profiles, n_samples)`` arrays (:func:`nca_arrays`);
:func:`nca` is the pandas wrapper and :func:`nca_summary` makes group summaries.

Conventions
-----------
Time unit
    TIME is in the data's ``time_unit`` (``CKData.time_unit``; ``"minute"``, ``"hour"``,
    ``"day"``, ``"week"``, ``"month"`` or ``"year"``) and is never converted: TMAX, TLST,
    LAMZHL, LAMZLL and LAMZUL are in that unit, LAMZ in 1/unit and AUCs in unit x DV unit.
    Every row carries ``TIME_UNIT`` and ``DV_UNIT`` (the analyte's unit) and
    ``table.attrs["units"][analyte][column]`` gives each column's unit.
Partial AUC names
    A window ``(a, b)`` is given in the data's time unit and named ``AUC{a}_{b}`` followed by
    the unit's suffix: none for days, ``MIN`` minute, ``H`` hour, ``W`` week, ``MO`` month,
    ``Y`` year (``AUC0_28`` is 0-28 days, ``AUC0_24H`` 0-24 hours, ``AUC0_4W`` 0-4 weeks). With
    an infinite end the suffix follows a non-zero start: ``AUC5H_inf``, ``AUC0_inf``.
Default windows
    The CAR-T exposure windows 0-28 days and 0-84 days, written in the data's unit: ``AUC0_28``
    and ``AUC0_84`` for days, ``AUC0_672H`` and ``AUC0_2016H`` for hours, ``AUC0_4W`` and
    ``AUC0_12W`` for weeks, ``AUC0_40320MIN`` and ``AUC0_120960MIN`` for minutes. A month or
    a year has no exact length in days, so month and year data get no default windows (pass
    ``windows=``).
Records
    ``MDV == 1`` records are excluded; so are records with ``AFTER_HSCT`` true unless
    ``exclude_after_hsct=False`` (an allo-HSCT ends the CAR-T record); with an ``EVID`` column only
    ``EVID == 0`` rows are observations. A record with a missing TIME, or a missing DV that is
    not flagged BLQ, is dropped. A DV of exactly 0 counts as BLQ (as in PKNCA). Negative DVs and
    duplicated times within a profile are errors (records without ID or ANALYTE belong to no
    profile). Nothing is dropped silently: each row counts its records (:data:`COUNT_COLUMNS`),
    each record once, under the first reason that applies (MDV, after HSCT, missing TIME, before
    the infusion, missing DV), so ``N_OBS = N_USED + N_BLQ_DROP + N_MDV + N_HSCT + N_PREDOSE +
    N_MISSING`` and ``N_BLQ = N_BLQ_ZERO + N_BLQ_HALF + N_BLQ_DROP``; a profile whose records
    are all left out is still a row (metrics NaN).
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
    added when no record at ``TIME == 0`` (i.e. at ``TIME <= 0``) remains after the BLQ rule
    (ZERO_ADDED = 1), unless no record remains at all. AUCs integrate from the first remaining
    time point.
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

from ckmodel._nca_kernel import (
    COUNT_COLUMNS,
    TIME_METRICS,
    check_time_unit,
    check_windows,
    column_unit,
    default_windows,
    nca_kernel,
    resolve_blq_rule,
    segment_areas,
    window_name,
)
from ckmodel._nca_summary import nca_summary
from ckmodel.errors import DatasetError, Problem

__all__ = ["nca", "nca_arrays", "nca_summary", "NCA_COLUMNS", "COUNT_COLUMNS", "BLQ_RULES",
           "TIME_METRICS", "column_unit", "default_windows", "segment_areas", "window_name"]

BLQ_RULES = ("first-zero-rest-drop", "all-zero", "drop", "lloq-half")
NCA_COLUMNS = (
    "CMAX", "TMAX", "CLST", "TLST", "AUCLST", "AUCIFO",
    "LAMZ", "LAMZHL", "LAMZNPT", "R2ADJ", "LAMZLL", "LAMZUL",
)  # fmt: skip
def nca_arrays(
    time: Any,
    conc: Any,
    blq: Any = None,
    lloq: Any = None,
    *,
    auc_method: str = "lin-up/log-down",
    windows: Sequence[tuple[float, float]] | None = None,
    time_unit: str = "day",
    blq_rule: str | Mapping[str, str] = "first-zero-rest-drop",
    add_zero: bool = True,
    min_points_lambda_z: int = 3,
    r2adj_tolerance: float = 1e-4,
) -> dict[str, np.ndarray]:
    """NCA of many profiles at once on padded 2-D arrays (the NumPy kernel of :func:`nca`).

    Parameters
    ----------
    time : array_like, shape (n_profiles, n_samples)
        Sampling times in ``time_unit`` since the infusion; NaN marks padding. Need not be
        sorted.
    conc : array_like, shape (n_profiles, n_samples)
        Concentrations (e.g. copies/ug gDNA); ignored where ``blq`` is true.
    blq : array_like of bool, optional
        True where the record is below the LLOQ. Default: none.
    lloq : array_like, optional
        Lower limit of quantification per record, used by the ``"lloq-half"`` action.

    Other Parameters
    ----------------
    time_unit : str
        Unit of ``time`` (default ``"day"``); it names the windows and sets the default ones.
    auc_method, windows, blq_rule, add_zero, min_points_lambda_z, r2adj_tolerance
        As in :func:`nca`.

    Returns
    -------
    dict of str to numpy.ndarray
        One array of length ``n_profiles`` per metric and window column of :func:`nca` (float,
        same units) and the kernel's record counts (int): N_USED, N_BLQ, N_BLQ_ZERO,
        N_BLQ_HALF, N_BLQ_DROP, N_PREDOSE, N_MISSING (DV missing and not BLQ; padding is not
        counted) and ZERO_ADDED.

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
    >>> out["N_USED"], out["ZERO_ADDED"]
    (array([4, 3]), array([1, 1]))
    >>> sorted(k for k in nca_arrays(t * 24, c, time_unit="hour") if k.startswith("AUC0_"))
    ['AUC0_2016H', 'AUC0_672H']
    """
    return nca_kernel(
        time, conc, blq, lloq,
        auc_method=auc_method, windows=windows, time_unit=time_unit, blq_rule=blq_rule,
        add_zero=add_zero,
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


def _time_unit(data: Any, time_unit: str | None) -> str:
    own = getattr(data, "time_unit", None)
    own = own if isinstance(own, str) else None
    if time_unit is not None and own is not None and time_unit != own:
        raise ValueError(f"time_unit={time_unit!r} but the data's TIME is in {own!r}; TIME is "
                         "never converted, so leave time_unit out (or give the data's unit)")
    return check_time_unit(time_unit or own or "day")


def _analyte_units(data: Any, given: Mapping[str, str] | None) -> dict[str, str]:
    own = getattr(data, "analyte_units", None)
    units = dict(own) if isinstance(own, Mapping) else {}
    for a, u in (given or {}).items():
        if a in units and units[a] != u:
            raise ValueError(f"analyte_units gives {a!r} the unit {u!r} but the data say "
                             f"{units[a]!r}; DV is never converted")
        units[a] = u
    return units


def _rule_text(actions: Sequence[str]) -> str:
    for name, acts in zip(BLQ_RULES, map(resolve_blq_rule, BLQ_RULES), strict=True):
        if tuple(actions) == acts:
            return name
    return ",".join(f"{p}={a}" for p, a in zip(("first", "middle", "last"), actions, strict=True))


def nca(
    data: Any,
    *,
    analytes: str | Sequence[str] | None = None,
    windows: Sequence[tuple[float, float]] | None = None,
    time_unit: str | None = None,
    analyte_units: Mapping[str, str] | None = None,
    auc_method: str = "lin-up/log-down",
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
        A ``CKData``-like object (its ``.observations``, ``.time_unit`` and ``.analyte_units``
        are used) or an observation table with columns ID, TIME (time since infusion) and DV,
        and optionally ANALYTE, BLQ, LLOQ, MDV, EVID and AFTER_HSCT.
    analytes : str or sequence of str, optional
        Analytes to analyse (e.g. ``"PB_QPCR"``); default all.
    windows : sequence of (float, float), optional
        Partial AUC windows ``(a, b)`` in the data's time unit (``b`` may be ``numpy.inf``),
        named ``AUC{a}_{b}`` plus the unit suffix (``AUC0_28`` days, ``AUC0_24H`` hours; see
        the module docstring). Default: 0-28 and 0-84 days in the data's unit (``AUC0_28`` and
        ``AUC0_84`` for day data, ``AUC0_672H`` and ``AUC0_2016H`` for hour data); none for
        month and year data.

    Other Parameters
    ----------------
    time_unit : str, optional
        Unit of TIME for a DataFrame input (default ``"day"``); a CKData's own ``time_unit`` is
        used, and a different value raises ValueError (TIME is never converted).
    analyte_units : mapping of str to str, optional
        DV unit per analyte for a DataFrame input, e.g. ``{"PB_QPCR": "copies/ug gDNA"}``
        (a CKData's own units are used; a conflicting entry raises ValueError).
    auc_method : {"lin-up/log-down", "linear"}
        Trapezoid rule for all AUCs.
    blq_rule : str or mapping
        Handling of BLQ records: ``"first-zero-rest-drop"`` (default), ``"all-zero"``,
        ``"drop"``, ``"lloq-half"`` or a ``{"first", "middle", "last"}`` mapping of actions.
    add_zero : bool
        Add a (0, 0) point when no record at ``TIME == 0`` remains (default True); records at
        ``TIME < 0`` (pre-infusion) are always ignored (counted in N_PREDOSE).
    exclude_after_hsct : bool
        Drop records flagged ``AFTER_HSCT`` (default True; counted in N_HSCT). ``MDV == 1``
        records are always dropped (counted in N_MDV).
    min_points_lambda_z : int
        Fewest points in the terminal fit (>= 3).
    r2adj_tolerance : float
        Fits within this adjusted R^2 of the best compete; the longest one wins.

    Returns
    -------
    pandas.DataFrame
        One row per ID x ANALYTE, columns in this order:

        - ID, ANALYTE, DV_UNIT (the analyte's unit, empty when unknown), TIME_UNIT;
        - CMAX (DV unit), TMAX (time unit), CLST (DV unit), TLST (time unit), AUCLST and
          AUCIFO (time unit x DV unit; AUCIFO = AUCLST + CLST / LAMZ), LAMZ (1 / time unit),
          LAMZHL (time unit), LAMZNPT (points, float), R2ADJ, LAMZLL and LAMZUL (first and last
          time of the terminal fit, time unit);
        - one ``AUC{a}_{b}`` column per window (time unit x DV unit);
        - the record counts of :data:`COUNT_COLUMNS` (int) and BLQ_RULE (the rule's name, or
          ``first=...,middle=...,last=...``).

        ``.attrs["units"]`` maps analyte -> column -> unit (e.g. ``"day*copies/ug gDNA"`` for
        AUC0_28), ``.attrs["time_unit"]`` is the time unit and ``.attrs["nca"]`` the options.

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
    >>> res = nca(obs, analyte_units={"PB_QPCR": "copies/ug gDNA"})
    >>> res[["ID", "ANALYTE", "CMAX", "TMAX", "TLST", "LAMZNPT"]]
      ID  ANALYTE    CMAX  TMAX  TLST  LAMZNPT
    0  1  PB_QPCR  1000.0   7.0  56.0      3.0
    >>> round(float(res["AUC0_28"].iloc[0]), 1)
    11113.4
    >>> res[["N_OBS", "N_USED", "N_BLQ", "N_BLQ_ZERO", "BLQ_RULE"]]
       N_OBS  N_USED  N_BLQ  N_BLQ_ZERO              BLQ_RULE
    0      5       5      1           1  first-zero-rest-drop
    >>> res.attrs["units"]["PB_QPCR"]["AUC0_28"], res.attrs["units"]["PB_QPCR"]["TMAX"]
    ('day*copies/ug gDNA', 'day')

    Hour data are named in hours:

    >>> hours = obs.assign(TIME=obs["TIME"] * 24)
    >>> list(nca(hours, time_unit="hour", windows=[(0, 24)]).filter(like="AUC0_"))
    ['AUC0_24H']
    """
    actions = resolve_blq_rule(blq_rule)
    unit = _time_unit(data, time_unit)
    wins = check_windows(windows, unit)
    units = _analyte_units(data, analyte_units)
    obs = _observations(data)
    keep = np.ones(len(obs), dtype=bool)
    if "EVID" in obs.columns:
        keep &= np.nan_to_num(obs["EVID"].to_numpy(dtype=float, na_value=np.nan)) == 0
    analyte = obs["ANALYTE"] if "ANALYTE" in obs.columns else pd.Series("DV", index=obs.index)
    if analytes is not None:
        wanted = [analytes] if isinstance(analytes, str) else list(analytes)
        keep &= analyte.isin(wanted).to_numpy()
    keep &= obs["ID"].notna().to_numpy() & analyte.notna().to_numpy()
    obs, analyte = obs.loc[keep], analyte.loc[keep]

    # every record of a profile gets one fate: left out (first reason that applies) or analysed
    time = obs["TIME"].to_numpy(dtype=float, na_value=np.nan)
    mdv = _flag(obs, "MDV")
    hsct = _flag(obs, "AFTER_HSCT") & ~mdv if exclude_after_hsct else np.zeros(len(obs), bool)
    no_time = ~np.isfinite(time) & ~mdv & ~hsct
    use = ~(mdv | hsct | no_time)

    frame = pd.DataFrame({"ID": obs["ID"].to_numpy(), "ANALYTE": analyte.to_numpy(), "T": time})
    dup = frame.duplicated(keep=False).to_numpy() & use
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
    negative = (dv < 0) & ~blq & use
    if negative.any():
        raise DatasetError([
            Problem(f"analyte {a}: negative DV at TIME {t:g} without BLQ=1", subject=str(i),
                    column="DV", rule="nca-negative-dv")
            for i, a, t in frame[negative].itertuples(index=False)
        ])  # fmt: skip

    id_code, id_uniq = pd.factorize(frame["ID"])
    an_code, an_uniq = pd.factorize(frame["ANALYTE"])
    n_an = max(len(an_uniq), 1)
    prof, row_all = np.unique(id_code * n_an + an_code, return_inverse=True)
    row = row_all[use]
    order = np.argsort(row, kind="stable")
    counts = np.bincount(row, minlength=len(prof))
    slot = np.arange(len(row)) - np.repeat(np.cumsum(counts) - counts, counts)
    shape = (len(prof), max(int(counts.max(initial=0)), 1))

    def pad(values: np.ndarray) -> np.ndarray:
        out = np.full(shape, np.nan)
        out[row[order], slot] = values[use][order]
        return out

    res = nca_kernel(
        pad(time), pad(dv), pad(blq.astype(float)), pad(column("LLOQ")),
        auc_method=auc_method, windows=wins, time_unit=unit, blq_rule=blq_rule,
        add_zero=add_zero, min_points_lambda_z=min_points_lambda_z,
        r2adj_tolerance=r2adj_tolerance,
    )  # fmt: skip

    def per_profile(mask: np.ndarray) -> np.ndarray:
        return np.bincount(row_all[mask], minlength=len(prof)).astype(np.int64)

    res.update(N_OBS=per_profile(np.ones(len(obs), bool)), N_MDV=per_profile(mdv),
               N_HSCT=per_profile(hsct))  # fmt: skip
    res["N_MISSING"] = res["N_MISSING"] + per_profile(no_time)
    an_col = pd.Index(an_uniq).take(prof % n_an)
    table = pd.DataFrame({"ID": pd.Index(id_uniq).take(prof // n_an), "ANALYTE": an_col})
    table["DV_UNIT"] = [units.get(a, "") for a in an_col]
    table["TIME_UNIT"] = unit
    names = [*NCA_COLUMNS, *(window_name(a, b, unit) for a, b in wins), *COUNT_COLUMNS]
    for name in names:
        table[name] = res[name]
    table["BLQ_RULE"] = _rule_text(actions)
    table.attrs["units"] = {a: {n: column_unit(n, units.get(a, ""), unit) for n in names}
                            for a in pd.unique(an_col)}  # fmt: skip
    table.attrs["time_unit"] = unit
    table.attrs["nca"] = {
        "auc_method": auc_method, "windows": wins, "time_unit": unit, "blq_rule": dict(zip(
            ("first", "middle", "last"), actions, strict=True)),
        "add_zero": add_zero, "exclude_after_hsct": exclude_after_hsct,
        "min_points_lambda_z": min_points_lambda_z, "r2adj_tolerance": r2adj_tolerance,
    }  # fmt: skip
    return table
