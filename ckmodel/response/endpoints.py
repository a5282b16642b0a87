"""The trial's endpoint summaries as a protocol reports them (issue 15, item 5).

:func:`endpoint_table` turns the subject-level outcomes table (DESIGN.md section 3) into one row
per group and endpoint, with the columns of :data:`ENDPOINT_COLUMNS`:

========== ==================================================================================
GROUP      ``ALL``, or ``<column>=<value>`` for each value of the ``by`` column
ENDPOINT   endpoint name (below)
N          evaluable subjects: a non-missing value of the endpoint's column(s)
EVENTS     subjects with the outcome (rates) or observed events (time to event)
ESTIMATE   what ``STATISTIC`` says
LOWER      lower limit of the 95 % interval (``conf_level``), NaN when none applies
UPPER      upper limit
STATISTIC  ``rate`` (proportion 0-1, exact Clopper-Pearson interval as R's ``binom.test``);
           ``median`` (Kaplan-Meier median in the data's time unit, interval as R's
           ``survfit`` prints it: Greenwood variance, log scale); ``survival_at_<t>``
           (Kaplan-Meier S(t) with its log-scale interval); ``n_at_risk_at_<t>`` (subjects
           still at risk at t); ``censored_at_hsct`` (subjects whose record ends censored at
           allo-HSCT under the HSCT rule)
========== ==================================================================================

Endpoints (each only when its columns are in the table):

* ``DLT``: dose-limiting toxicity rate.
* ``CRS_GRADE_<g>`` for g = 0-4 (and 5 when present), ``CRS_ANY`` (grade >= 1),
  ``CRS_GRADE_GE3``; the same for ``ICANS``: the grade tables as rates of the grade.
* ``BOR_<category>`` for every category of :data:`~ckmodel.data.schema.BOR_CATEGORIES`;
  ``CRc`` (CR + CRh + CRi) and ``ORR`` (CR + CRi + CRh + MLFS + PR), over subjects with a BOR.
* ``MRD_NEG`` (over subjects with MRD_NEG) and ``MRD_NEG_IN_CRc`` (among CRc subjects).
* ``ADA``: anti-drug antibody incidence.
* ``EFS``, ``OS``, ``DOR``, ``MRD_DUR`` (MRD-negative duration): Kaplan-Meier.

allo-HSCT (``hsct="censor"``, the default, as the example trial's protocol states) censors EFS,
DOR and MRD-negative duration at HSCT_TIME when the transplant comes before the end of the
record (HSCT_TIME is on the infusion clock; DOR and MRD-negative duration are placed on it with
DOR_START / MRD_DUR_START, and are used as given when those columns are absent); OS is never
censored at HSCT. ``hsct="ignore"`` uses every time as given. The rule applied to each endpoint
is stated in ``attrs["notes"]`` of the result and in the ``censored_at_hsct`` rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ckmodel.data import schema as S
from ckmodel.response.estimators import clopper_pearson, kaplan_meier, km_at, km_median

if TYPE_CHECKING:  # pragma: no cover
    from ckmodel.data import CKData

__all__ = ["ENDPOINT_COLUMNS", "HSCT_RULES", "TIME_TO_EVENT", "TimeToEvent", "endpoint_table",
           "time_to_event", "km_by_group", "default_times"]

ENDPOINT_COLUMNS = ("GROUP", "ENDPOINT", "N", "EVENTS", "ESTIMATE", "LOWER", "UPPER",
                    "STATISTIC")
HSCT_RULES = ("censor", "ignore")
CRC = ("CR", "CRh", "CRi")
ORR = ("CR", "CRi", "CRh", "MLFS", "PR")
_DEFAULT_TIMES = {"day": (180.0, 365.0), "week": (26.0, 52.0), "month": (6.0, 12.0),
                  "year": (0.5, 1.0), "hour": (4320.0, 8760.0), "minute": ()}


@dataclass(frozen=True)
class TimeToEvent:
    """A time-to-event endpoint of the outcomes table.

    Parameters
    ----------
    name : str
        Endpoint name in the table (``EFS``).
    time, event : str
        Time and event-flag columns.
    start : str or None
        Column giving, on the infusion clock, the time the endpoint's clock starts (None:
        the endpoint is timed from infusion, like HSCT_TIME).
    hsct_censors : bool
        Whether allo-HSCT censors the endpoint under ``hsct="censor"``.
    label : str
        Axis label of plots.
    """

    name: str
    time: str
    event: str
    start: str | None
    hsct_censors: bool
    label: str


TIME_TO_EVENT: dict[str, TimeToEvent] = {
    "EFS": TimeToEvent("EFS", S.EFS_TIME, S.EFS_EVENT, None, True, "event-free survival"),
    "OS": TimeToEvent("OS", S.OS_TIME, S.OS_EVENT, None, False, "overall survival"),
    "DOR": TimeToEvent("DOR", S.DOR_TIME, S.DOR_EVENT, S.DOR_START, True,
                       "duration of response"),
    "MRD_DUR": TimeToEvent("MRD_DUR", S.MRD_DUR_TIME, S.MRD_DUR_EVENT, S.MRD_DUR_START, True,
                           "duration of MRD negativity"),
}


def default_times(time_unit: str) -> tuple[float, ...]:
    """Landmark times of the at-risk rows: 6 and 12 months in ``time_unit`` (180, 365 days)."""
    if time_unit not in _DEFAULT_TIMES:
        raise ValueError(f"unknown time unit {time_unit!r}; use one of {', '.join(S.TIME_UNITS)}")
    return _DEFAULT_TIMES[time_unit]


def _check_hsct(hsct: str) -> None:
    if hsct not in HSCT_RULES:
        extra = (" (a competing-event analysis is a model: see the response command)"
                 if hsct == "competing" else "")
        raise ValueError(f"hsct must be one of {', '.join(HSCT_RULES)}, got {hsct!r}{extra}")


def _frames(data: Any, covariates: pd.DataFrame | None
            ) -> tuple[pd.DataFrame, pd.DataFrame | None, str | None]:
    """Outcomes (index ID, HSCT_TIME filled from the CK file), covariates, time unit."""
    if isinstance(data, pd.DataFrame):
        out = data.copy()
        if S.ID in out.columns:
            out = out.set_index(S.ID)
        out.index = pd.Index(out.index.astype(str), name=S.ID)
        return out, covariates, None
    outcomes = getattr(data, "outcomes", None)
    if outcomes is None:
        raise ValueError("the data have no outcomes table; read them with "
                         "read_ck(..., outcomes=FILE) or pass the outcomes frame")
    hs = data.hsct_time
    if len(hs):
        have = outcomes[S.HSCT_TIME] if S.HSCT_TIME in outcomes else pd.Series(
            np.nan, index=outcomes.index)
        outcomes[S.HSCT_TIME] = have.combine_first(hs.reindex(outcomes.index))
    cov = data.covariates if covariates is None else covariates
    return outcomes, cov, data.time_unit


def _group_values(out: pd.DataFrame, cov: pd.DataFrame | None, by: str) -> pd.Series:
    if by in out.columns:
        return out[by]
    if cov is not None and by in cov.columns:
        c = cov.copy()
        c.index = pd.Index(c.index.astype(str), name=S.ID)
        return c[by].reindex(out.index)
    have = [c for c in out.columns] + ([] if cov is None else list(cov.columns))
    raise ValueError(f"by={by!r} is not a column of the outcomes table or of the subject "
                     f"covariates (columns: {', '.join(map(str, have)) or 'none'})")


def _label(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "NA"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _groups(out: pd.DataFrame, cov: pd.DataFrame | None, by: str | None
            ) -> list[tuple[str, pd.DataFrame]]:
    groups = [("ALL", out)]
    if by is None:
        return groups
    values = _group_values(out, cov, by)
    keys = values.dropna().unique().tolist()
    try:
        keys = sorted(keys)
    except TypeError:
        keys = sorted(keys, key=str)
    for k in keys:
        groups.append((f"{by}={_label(k)}", out[(values == k).to_numpy()]))
    if values.isna().any():
        groups.append((f"{by}=NA", out[values.isna().to_numpy()]))
    return groups


def time_to_event(outcomes: pd.DataFrame, endpoint: str, *, hsct: str = "censor"
                  ) -> pd.DataFrame:
    """The analysis times of a time-to-event endpoint, after the HSCT rule.

    Parameters
    ----------
    outcomes : pandas.DataFrame
        Outcomes indexed by ID (e.g. :func:`~ckmodel.data.read_outcomes`); times in the data's
        unit (days since infusion by default).
    endpoint : str
        One of :data:`TIME_TO_EVENT` (``EFS``, ``OS``, ``DOR``, ``MRD_DUR``).
    hsct : {"censor", "ignore"}
        ``censor``: a transplant before the end of the record ends it there, censored (only
        for endpoints whose ``hsct_censors`` is true, and for durations only with their start
        column). ``ignore``: times as given.

    Returns
    -------
    pandas.DataFrame
        Subjects with a time (index ID): ``TIME``, ``EVENT`` (0/1), ``HSCT_CENSORED`` (the
        record ends censored at HSCT), ``MOVED`` (the rule shortened the record).
        ``attrs["hsct_rule"]`` states what was done.

    Examples
    --------
    >>> o = pd.DataFrame({"EFS_TIME": [100.0, 50.0], "EFS_EVENT": [1.0, 1.0],
    ...                   "HSCT_TIME": [40.0, None]}, index=pd.Index(["1", "2"], name="ID"))
    >>> time_to_event(o, "EFS")[["TIME", "EVENT"]].to_numpy()
    array([[40.,  0.],
           [50.,  1.]])
    """
    _check_hsct(hsct)
    if endpoint not in TIME_TO_EVENT:
        raise ValueError(f"unknown time-to-event endpoint {endpoint!r}; use one of "
                         f"{', '.join(TIME_TO_EVENT)}")
    spec = TIME_TO_EVENT[endpoint]
    for col in (spec.time, spec.event):
        if col not in outcomes.columns:
            raise ValueError(f"{endpoint} needs columns {spec.time} and {spec.event}; "
                             f"{col} is missing")
    keep = outcomes[spec.time].notna() & outcomes[spec.event].notna()
    o = outcomes[keep.to_numpy()]
    time = o[spec.time].to_numpy(dtype=float).copy()
    event = o[spec.event].to_numpy(dtype=float).copy()
    moved = np.zeros(time.size, dtype=bool)
    at_hsct = np.zeros(time.size, dtype=bool)
    if hsct == "ignore" or not spec.hsct_censors:
        rule = (f"{endpoint}: times as given (hsct='ignore')" if spec.hsct_censors else
                f"{endpoint}: not censored at HSCT (death after HSCT counts)")
    elif S.HSCT_TIME not in o.columns:
        rule = f"{endpoint}: censored at allo-HSCT (no HSCT_TIME in the data)"
    elif spec.start is not None and spec.start not in o.columns:
        rule = (f"{endpoint}: {spec.time}/{spec.event} used as given (censoring at HSCT "
                f"needs {spec.start}, the start of the duration since infusion)")
    else:
        h = o[S.HSCT_TIME].to_numpy(dtype=float)
        if spec.start is not None:
            h = np.maximum(h - o[spec.start].to_numpy(dtype=float), 0.0)
        has = ~np.isnan(h)
        moved = has & (h < time)
        time[moved], event[moved] = h[moved], 0.0
        at_hsct = has & (h <= time) & (event == 0)
        rule = f"{endpoint}: censored at allo-HSCT ({int(at_hsct.sum())} subject(s))"
    res = pd.DataFrame({"TIME": time, "EVENT": event.astype(np.int64),
                        "HSCT_CENSORED": at_hsct, "MOVED": moved}, index=o.index)
    res.attrs["hsct_rule"] = rule
    return res


def km_by_group(data: pd.DataFrame | CKData, endpoint: str, *, by: str | None = None,
                covariates: pd.DataFrame | None = None, hsct: str = "censor",
                conf_level: float = 0.95) -> dict[str, pd.DataFrame]:
    """Kaplan-Meier tables of one endpoint, overall and by group.

    Parameters
    ----------
    data : pandas.DataFrame or CKData
        Outcomes (index ID) or CK data read with its outcomes.
    endpoint : str
        ``EFS``, ``OS``, ``DOR`` or ``MRD_DUR``.
    by : str, optional
        Grouping column (outcomes or subject covariate).
    covariates : pandas.DataFrame, optional
        Subject covariates (index ID) that ``by`` may name.
    hsct : {"censor", "ignore"}
        HSCT rule of :func:`time_to_event`.
    conf_level : float
        Level of the pointwise intervals.

    Returns
    -------
    dict of str to pandas.DataFrame
        ``{"ALL": table, "<by>=<value>": table, ...}``, each a
        :func:`~ckmodel.response.kaplan_meier` table (groups without a time are left out);
        ``attrs["hsct_rule"]`` of each table says how HSCT was handled.
    """
    out, cov, _ = _frames(data, covariates)
    res = {}
    for label, frame in _groups(out, cov, by):
        tte = time_to_event(frame, endpoint, hsct=hsct)
        if len(tte):
            km = kaplan_meier(tte["TIME"], tte["EVENT"], conf_level=conf_level)
            km.attrs["hsct_rule"] = tte.attrs["hsct_rule"]
            res[label] = km
    return res


def _rate(group: str, name: str, hits: np.ndarray, n: int, level: float) -> dict:
    x = int(np.sum(hits))
    lo, hi = clopper_pearson(x, n, conf_level=level)
    return {"GROUP": group, "ENDPOINT": name, "N": n, "EVENTS": x,
            "ESTIMATE": x / n if n else np.nan, "LOWER": lo, "UPPER": hi, "STATISTIC": "rate"}


def _binary_rows(group: str, o: pd.DataFrame, level: float) -> list[dict]:
    rows = []
    if S.DLT in o:
        v = o[S.DLT].dropna().to_numpy(dtype=float)
        rows.append(_rate(group, "DLT", v == 1, v.size, level))
    for col, short in ((S.CRS_GRADE, "CRS"), (S.ICANS_GRADE, "ICANS")):
        if col not in o:
            continue
        g = o[col].dropna().to_numpy(dtype=float)
        top = 5 if np.any(g == 5) else 4
        rows += [_rate(group, f"{col}_{k}", g == k, g.size, level) for k in range(top + 1)]
        rows.append(_rate(group, f"{short}_ANY", g >= 1, g.size, level))
        rows.append(_rate(group, f"{short}_GRADE_GE3", g >= 3, g.size, level))
    if S.BOR in o:
        b = o[S.BOR].dropna().astype(str).to_numpy()
        rows += [_rate(group, f"BOR_{c}", b == c, b.size, level) for c in S.BOR_CATEGORIES]
        rows.append(_rate(group, "CRc", np.isin(b, CRC), b.size, level))
        rows.append(_rate(group, "ORR", np.isin(b, ORR), b.size, level))
    if S.MRD_NEG in o:
        m = o[S.MRD_NEG]
        rows.append(_rate(group, "MRD_NEG", m.dropna().to_numpy() == 1, int(m.notna().sum()),
                          level))
        if S.BOR in o:
            crc = o[S.BOR].isin(CRC) & m.notna()
            rows.append(_rate(group, "MRD_NEG_IN_CRc", m[crc].to_numpy() == 1,
                              int(crc.sum()), level))
    if S.ADA in o:
        a = o[S.ADA].dropna().to_numpy(dtype=float)
        rows.append(_rate(group, "ADA", a == 1, a.size, level))
    return rows


def _tte_rows(group: str, o: pd.DataFrame, spec: TimeToEvent, hsct: str,
              times: Sequence[float], level: float) -> tuple[list[dict], str]:
    tte = time_to_event(o, spec.name, hsct=hsct)
    n, events = len(tte), int(tte["EVENT"].sum())
    base = {"GROUP": group, "ENDPOINT": spec.name, "N": n, "EVENTS": events}
    if n:
        km = kaplan_meier(tte["TIME"], tte["EVENT"], conf_level=level)
        med = km_median(km)
        at = km_at(km, times)
    else:
        med = (np.nan, np.nan, np.nan)
        at = pd.DataFrame({"time": list(times), "n_risk": 0, "n_event": 0,
                           "survival": np.nan, "lower": np.nan, "upper": np.nan})
    rows = [{**base, "ESTIMATE": med[0], "LOWER": med[1], "UPPER": med[2],
             "STATISTIC": "median"}]
    for r in at.itertuples(index=False):
        tag = f"{r.time:g}"
        rows.append({**base, "EVENTS": int(r.n_event), "ESTIMATE": r.survival,
                     "LOWER": r.lower, "UPPER": r.upper, "STATISTIC": f"survival_at_{tag}"})
        rows.append({**base, "EVENTS": int(r.n_event), "ESTIMATE": float(r.n_risk),
                     "LOWER": np.nan, "UPPER": np.nan, "STATISTIC": f"n_at_risk_at_{tag}"})
    if hsct == "censor" and spec.hsct_censors and "censored at" in tte.attrs["hsct_rule"] \
            and S.HSCT_TIME in o:
        rows.append({**base, "ESTIMATE": float(tte["HSCT_CENSORED"].sum()), "LOWER": np.nan,
                     "UPPER": np.nan, "STATISTIC": "censored_at_hsct"})
    return rows, tte.attrs["hsct_rule"]


def endpoint_table(
    data: pd.DataFrame | CKData,
    *,
    by: str | None = None,
    covariates: pd.DataFrame | None = None,
    hsct: str = "censor",
    times: Sequence[float] | None = None,
    conf_level: float = 0.95,
    time_unit: str | None = None,
) -> pd.DataFrame:
    """Endpoint summaries of a trial, one row per group and endpoint (module docstring).

    Parameters
    ----------
    data : pandas.DataFrame or CKData
        The outcomes table indexed by ID (:func:`~ckmodel.data.read_outcomes`), or CK data
        read with ``outcomes=`` (its covariates and HSCT times are then used too).
    by : str, optional
        Column to summarise by: any outcomes column or subject covariate (e.g.
        ``DOSE_LEVEL`` from the CK file). Rows for ``ALL`` come first.

    Other Parameters
    ----------------
    covariates : pandas.DataFrame, optional
        Subject covariates indexed by ID, for ``by`` (default: those of a CKData).
    hsct : {"censor", "ignore"}
        How allo-HSCT enters EFS, DOR and MRD-negative duration (OS: never censored).
    times : sequence of float, optional
        Times of the ``survival_at_<t>`` / ``n_at_risk_at_<t>`` rows, in the data's time unit
        (default: 6 and 12 months, 180 and 365 for day data). DOR and MRD-negative duration
        count from the start of the duration.
    conf_level : float
        Level of every interval (0.95).
    time_unit : str, optional
        Unit of the outcome times (default: the CKData's, else ``day``).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ENDPOINT_COLUMNS`. ``attrs`` holds ``notes`` (HSCT rule per endpoint,
        methods, denominators), ``time_unit``, ``by``, ``hsct`` and ``conf_level``.

    Raises
    ------
    ValueError
        Naming the argument: an unknown ``by`` column, ``hsct`` rule or time unit, a level
        outside (0, 1), negative times.

    Examples
    --------
    >>> from ckmodel.data import read_outcomes
    >>> from ckmodel.resources import example_data
    >>> table = endpoint_table(read_outcomes(example_data("example_trial")[1]))
    >>> table.set_index("ENDPOINT").loc["CRc", ["N", "EVENTS"]].tolist()
    [30, 13]
    """
    _check_hsct(hsct)
    if not 0.0 < float(conf_level) < 1.0:
        raise ValueError(f"conf_level must be between 0 and 1, got {conf_level!r}")
    out, cov, unit = _frames(data, covariates)
    unit = time_unit or unit or "day"
    times = default_times(unit) if times is None else tuple(float(t) for t in times)
    if any(not np.isfinite(t) or t < 0 for t in times):
        raise ValueError(f"times must be finite and >= 0, got {list(times)}")
    rows: list[dict] = []
    rules: dict[str, str] = {}
    for group, frame in _groups(out, cov, by):
        rows += _binary_rows(group, frame, conf_level)
        for spec in TIME_TO_EVENT.values():
            if spec.time in frame.columns and spec.event in frame.columns:
                r, rule = _tte_rows(group, frame, spec, hsct, times, conf_level)
                rows += r
                rules.setdefault(spec.name, rule)
    table = pd.DataFrame(rows, columns=list(ENDPOINT_COLUMNS))
    table["N"] = table["N"].astype(np.int64)
    table["EVENTS"] = table["EVENTS"].astype(np.int64)
    pct = f"{100 * conf_level:g} %"
    notes = [f"rates: proportion of evaluable subjects (N: non-missing value), exact "
             f"Clopper-Pearson {pct} interval",
             f"time to event: Kaplan-Meier, median with its {pct} interval as R survfit "
             f"(Greenwood, log scale); times in {unit}s (DOR, MRD_DUR from their start)",
             *rules.values()]
    table.attrs.update({"notes": notes, "time_unit": unit, "by": by, "hsct": hsct,
                        "conf_level": float(conf_level)})
    return table
