"""Visual predictive checks (VPC) and prediction-corrected VPCs (pcVPC), with BLQ fractions.

The observations of each analyte and stratum are binned in time; in every bin the 5th, 50th
and 95th percentiles of the observations are set against the same percentiles of each of
``n_sim`` simulated replicates of the trial (new virtual subjects from the posterior, each real
subject's design kept: :func:`ckmodel.diagnostics.virtual.simulate_replicates`), summarised as
95 % intervals over replicates. A model that describes the data puts the observed percentiles
inside those intervals in about 95 % of the bins.

Censoring (as PsN's ``vpc -lloq`` and the ``vpc`` R package treat it): a BLQ record counts at
its LLOQ, so it takes its censored position in the ordering; an observed percentile is blank
(NaN) when it falls among the censored records, that is when the bin's fraction of BLQ records
exceeds the percentile's level. Simulated percentiles are of the uncensored simulations. The
fraction of records below the LLOQ is reported for the observations and, as a 95 % interval,
for the replicates (a simulated record is BLQ when below its record's LLOQ).

Prediction correction (Bergstrand et al. 2011): with ``PRED_ij`` the typical-subject prediction
of record ``j`` of subject ``i`` (:func:`~ckmodel.diagnostics.virtual.record_predictions`) and
``PRED_bin`` the median ``PRED`` of its bin and stratum, observed and simulated values (and the
LLOQ of BLQ records) become ``y * PRED_bin / PRED_ij`` for the log-scale error models and
``y + PRED_bin - PRED_ij`` otherwise; BLQ status is kept.

The table (:attr:`VPC.table`, :meth:`VPC.to_csv`) has one row per analyte, stratum and bin with
the columns of :data:`VPC_COLUMNS`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["VPC", "VPC_COLUMNS", "vpc", "vpc_arrays", "bin_edges"]

#: Columns of the VPC table, in order.
VPC_COLUMNS = ("ANALYTE", "STRATUM", "BIN", "TIME", "N_OBS", "OBS_P05", "OBS_P50", "OBS_P95",
               "SIM_P05_LO", "SIM_P05_HI", "SIM_P50_LO", "SIM_P50_HI", "SIM_P95_LO",
               "SIM_P95_HI", "OBS_BLQ", "SIM_BLQ_LO", "SIM_BLQ_HI")
#: Percentiles of the table (fractions), matching its column names.
PROBS = (0.05, 0.5, 0.95)
#: Up to this many distinct record times, the default bins are one per time.
MAX_NOMINAL_TIMES = 20
#: Default number of quantile bins when there are more distinct times.
DEFAULT_N_BINS = 10


def _nominal_groups(u: np.ndarray) -> list[np.ndarray] | None:
    """Distinct times grouped around nominal times, or None when they do not cluster.

    A time joins the previous group when it lies within 10 % of the previous time (actual
    times scatter around a nominal schedule: days 13.5-14.5 are day 14); the grouping is
    refused when a group spans more than 30 % of its start (times spread evenly).
    """
    if u.size == 0:
        return None
    scale = max(float(np.max(np.abs(u))), 1.0)
    breaks = np.flatnonzero(np.diff(u) > 0.1 * np.abs(u[:-1]) + 1e-9 * scale) + 1
    groups = np.split(u, breaks)
    for g in groups:
        if g[-1] - g[0] > 0.3 * max(abs(g[0]), 1e-9 * scale):
            return None
    return groups


def bin_edges(time: np.ndarray, bins: int | Sequence[float] | None = None) -> np.ndarray:
    """Bin edges (model time unit) for record times.

    Parameters
    ----------
    time : ndarray
        Record times.
    bins : int, sequence of float or None
        None: one bin per nominal time when the record times cluster around at most
        :data:`MAX_NOMINAL_TIMES` of them (times within 10 % of each other, e.g. days
        13.5-14.5 for day 14; edges half-way between the clusters: the usual CK schedule),
        else :data:`DEFAULT_N_BINS` quantile bins. An int ``k``: ``k`` bins holding about equal
        numbers of records (quantiles of the record times; ties can merge bins). A sequence:
        the edges themselves, increasing; records outside them are left out.

    Returns
    -------
    ndarray
        Increasing edges; bin ``b`` holds ``edges[b] <= t < edges[b + 1]`` (the last bin
        includes its upper edge).
    """
    t = np.asarray(time, dtype=float)
    t = t[np.isfinite(t)]
    if t.size == 0:
        raise ValueError("no record times to bin")
    if bins is None:
        groups = _nominal_groups(np.unique(t))
        if groups is not None and len(groups) <= MAX_NOMINAL_TIMES:
            if len(groups) == 1:
                return np.array([groups[0][0], groups[0][-1]])
            mid = [(a[-1] + b[0]) / 2 for a, b in zip(groups[:-1], groups[1:], strict=True)]
            return np.array([groups[0][0], *mid, groups[-1][-1]])
        bins = DEFAULT_N_BINS
    if isinstance(bins, int | np.integer) and not isinstance(bins, bool):
        if bins < 1:
            raise ValueError(f"the number of bins must be >= 1, got {bins}")
        edges = np.unique(np.quantile(t, np.linspace(0, 1, int(bins) + 1)))
        return edges if edges.size > 1 else np.array([t.min(), t.max()])
    edges = np.asarray(bins, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)) or np.any(
            np.diff(edges) <= 0):
        raise ValueError(f"bin edges must be two or more increasing finite times, got {bins!r}")
    return edges


def _assign(time: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index (0-based) of each time; -1 outside the edges."""
    b = np.searchsorted(edges, time, side="right") - 1
    b[time == edges[-1]] = edges.size - 2
    b[(time < edges[0]) | (time > edges[-1])] = -1
    return b


def _obs_percentile(y: np.ndarray, blq: np.ndarray, p: float) -> float:
    if y.size == 0 or np.mean(blq) > p:
        return np.nan
    return float(np.quantile(y, p))


def vpc_arrays(time: np.ndarray, y: np.ndarray, sims: np.ndarray, *, blq: np.ndarray,
               lloq: np.ndarray, sim_lloq: np.ndarray | None = None,
               stratum: np.ndarray | None = None, bins: int | Sequence[float] | None = None,
               probs: Sequence[float] = PROBS, ci: float = 0.95) -> pd.DataFrame:
    """VPC statistics of one analyte (the NumPy kernel of :func:`vpc`).

    Parameters
    ----------
    time : ndarray, shape (n,)
        Record times (model time unit).
    y : ndarray, shape (n,)
        Observed values; a BLQ record's value is replaced by ``lloq`` (its censored position).
    sims : ndarray, shape (K, n)
        Simulated observations of the same records (uncensored).
    blq : bool ndarray, shape (n,)
        Observed records below the LLOQ.
    lloq : ndarray, shape (n,)
        LLOQ of each record (NaN: none) at which BLQ records are placed.

    Other Parameters
    ----------------
    sim_lloq : ndarray, shape (n,), optional
        Limit below which a simulated record counts as BLQ (default ``lloq``; differs from it
        only under prediction correction).
    stratum : ndarray, shape (n,), optional
        Stratum label of each record (default one stratum, ``"all"``).
    bins : int, sequence or None
        See :func:`bin_edges`; the same edges serve every stratum.
    probs : sequence of float
        Percentiles (fractions), low, median, high.
    ci : float
        Width of the intervals over replicates.

    Returns
    -------
    pandas.DataFrame
        One row per stratum and non-empty bin: ``STRATUM``, ``BIN`` (1-based), ``TIME``
        (median record time of the bin), ``T_LO``/``T_HI`` (edges), ``N_OBS``, ``OBS_Pxx``,
        ``SIM_Pxx_LO``/``SIM_Pxx_HI``, ``SIM_Pxx_MED`` (median over replicates), ``OBS_BLQ``,
        ``SIM_BLQ_LO``/``SIM_BLQ_HI``/``SIM_BLQ_MED``; ``xx`` is ``05``, ``50``, ``95`` for the
        default ``probs``.
    """
    time = np.asarray(time, dtype=float)
    sims = np.asarray(sims, dtype=float)
    blq = np.asarray(blq, dtype=bool)
    lloq = np.asarray(lloq, dtype=float)
    sim_lloq = lloq if sim_lloq is None else np.asarray(sim_lloq, dtype=float)
    y = np.where(blq, lloq, np.asarray(y, dtype=float))
    if sims.ndim != 2 or sims.shape[1] != time.size:
        raise ValueError(f"sims must have shape (K, {time.size}), got {sims.shape}")
    stratum = np.full(time.size, "all", dtype=object) if stratum is None else np.asarray(
        stratum, dtype=object)
    edges = bin_edges(time, bins)
    b = _assign(time, edges)
    lo_q, hi_q = (1 - ci) / 2, 1 - (1 - ci) / 2
    tags = [f"P{round(p * 100):02d}" for p in probs]
    with np.errstate(invalid="ignore"):
        sim_blq = sims < sim_lloq[None, :]
    rows = []
    for s in pd.unique(stratum):
        in_s = stratum == s
        for k in range(edges.size - 1):
            m = np.flatnonzero(in_s & (b == k))
            if m.size == 0:
                continue
            row: dict[str, Any] = {"STRATUM": s, "BIN": k + 1,
                                   "TIME": float(np.median(time[m])),
                                   "T_LO": float(edges[k]), "T_HI": float(edges[k + 1]),
                                   "N_OBS": int(m.size)}
            sim_q = np.quantile(sims[:, m], list(probs), axis=1)  # (n_probs, K)
            for tag, p, q in zip(tags, probs, sim_q, strict=True):
                row[f"OBS_{tag}"] = _obs_percentile(y[m], blq[m], p)
                row[f"SIM_{tag}_LO"], row[f"SIM_{tag}_MED"], row[f"SIM_{tag}_HI"] = (
                    np.quantile(q, [lo_q, 0.5, hi_q]))
            frac = sim_blq[:, m].mean(axis=1)
            has_lloq = np.isfinite(lloq[m]).any()
            row["OBS_BLQ"] = float(np.mean(blq[m])) if has_lloq else np.nan
            row["SIM_BLQ_LO"], row["SIM_BLQ_MED"], row["SIM_BLQ_HI"] = (
                np.quantile(frac, [lo_q, 0.5, hi_q]) if has_lloq else (np.nan,) * 3)
            rows.append(row)
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class VPC:
    """A VPC or pcVPC of a fit.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per analyte, stratum and bin, columns :data:`VPC_COLUMNS` then ``T_LO``,
        ``T_HI`` (bin edges) and ``SIM_*_MED`` (medians over replicates).
    observed : pandas.DataFrame
        The records: :func:`~ckmodel.diagnostics.virtual.fit_records` with ``STRATUM``,
        ``BIN`` (0 outside the edges) and ``Y`` (value drawn: DV, or the LLOQ of BLQ records,
        prediction-corrected under ``pc``).
    edges : dict of str to ndarray
        Bin edges per analyte (model time unit).
    pc : bool
        Prediction-corrected.
    stratify : str or None
        The column that defined the strata.
    n_sim, seed : int
        Replicates and seed.
    units : dict of str to str
        Unit of each analyte.
    time_unit : str
        Model time unit.
    labels : dict of str to str
        Panel title per stratum (dose and number of subjects).
    """

    table: pd.DataFrame
    observed: pd.DataFrame
    edges: dict[str, np.ndarray]
    pc: bool
    stratify: str | None
    n_sim: int
    seed: int
    units: dict[str, str] = field(default_factory=dict)
    time_unit: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write :attr:`table`'s :data:`VPC_COLUMNS` to ``path`` atomically (blank: NaN)."""
        from ckmodel.files import atomic_write

        table = self.table[list(VPC_COLUMNS)]
        return atomic_write(path, lambda p: table.to_csv(p, index=False, float_format="%.6g"))


def _record_strata(fit: Any, rec: pd.DataFrame, stratify: str | None
                   ) -> tuple[np.ndarray, list[str]]:
    """Stratum of each record and the strata in display order."""
    from ckmodel.diagnostics.strata import subject_strata

    if stratify is not None and stratify in fit.data.observations.columns and not any(
            t is not None and stratify in t.columns
            for t in (fit.data.covariates, getattr(fit.data, "outcomes", None))):
        col = fit.data.observations.set_index("ROW")[stratify]
        vals = col.reindex(rec["ROW"].to_numpy()).map(
            lambda v: f"{v:g}" if isinstance(v, float) else str(v)).to_numpy(object)
        return vals, sorted(pd.unique(vals))
    subj = subject_strata(fit.data, stratify, list(dict.fromkeys(rec["ID"])))
    used = set(subj.astype(str))
    order = [str(c) for c in subj.cat.categories if str(c) in used]
    return subj.astype(str).reindex(rec["ID"].to_numpy()).to_numpy(object), order


def vpc(fit: Any, *, pc: bool = False, stratify: str | None = None,
        bins: int | Sequence[float] | None = None, n_sim: int = 200, seed: int = 1,
        ci: float = 0.95, replicates: Any = None) -> VPC:
    """VPC (or pcVPC) of every fitted analyte and stratum, from new virtual subjects.

    Parameters
    ----------
    fit : Fit
        The fit, with its data.
    pc : bool
        Prediction-corrected VPC (module docstring).
    stratify : str, optional
        Subject-level column (``DOSE_LEVEL``, ``DOSE``, ``COHORT`` ...) or observation column
        whose values split the records into strata; default one stratum.
    bins : int, sequence of float or None
        Bin edges in the model's time unit, a number of quantile bins, or None for one bin
        per nominal time (:func:`bin_edges`); the same per analyte across strata.
    n_sim : int
        Replicates of the trial.
    seed : int
        Seed of the replicates (the result is deterministic given it).

    Other Parameters
    ----------------
    ci : float
        Width of the intervals over replicates (0.95).
    replicates : Replicates, optional
        Reuse simulations (:func:`~ckmodel.diagnostics.virtual.simulate_replicates`).

    Returns
    -------
    VPC
        ``table`` (one row per analyte, stratum and bin), ``observed`` (records for plots),
        labels, units; ``to_csv(path)`` writes the table.
    """
    from ckmodel.diagnostics.npde import LOG_SCALE_ERRORS
    from ckmodel.diagnostics.strata import stratum_label
    from ckmodel.diagnostics.virtual import record_predictions, simulate_replicates

    if not 0 < ci < 1:
        raise ValueError(f"ci must be between 0 and 1, got {ci!r}")
    if isinstance(bins, int | np.integer) and not isinstance(bins, bool) and bins < 1:
        raise ValueError(f"the number of bins must be >= 1, got {bins}")
    if bins is not None and not isinstance(bins, int | np.integer):
        bin_edges(np.array([0.0, 1.0]), bins)  # refuse bad edges before simulating
    rep = replicates if replicates is not None else simulate_replicates(fit, n_sim, seed=seed)
    rec = rep.records.copy()
    rec["STRATUM"], order = _record_strata(fit, rec, stratify)
    sims_all = rep.stacked("obs")
    pred = record_predictions(fit)["PRED"].to_numpy(float) if pc else None
    errors = fit.meta.get("error_models", {})
    tables, edges = [], {}
    rec["BIN"] = 0
    rec["Y"] = np.where(rec["BLQ"], rec["LLOQ"], rec["DV"]).astype(float)
    for a in pd.unique(rec["ANALYTE"]):
        m = (rec["ANALYTE"] == a).to_numpy()
        t = rec.loc[m, "TIME"].to_numpy(float)
        e = bin_edges(t, bins)
        y = rec.loc[m, "Y"].to_numpy(float)
        sims = sims_all[:, m]
        lloq = rec.loc[m, "LLOQ"].to_numpy(float)
        sim_lloq = lloq
        b = _assign(t, e)
        if pc:
            log_err = errors.get(a, fit.spec.output(a).error) in LOG_SCALE_ERRORS
            p = pred[m]
            strata = rec.loc[m, "STRATUM"].to_numpy(object)
            p_bin = pd.Series(p).groupby([strata, b]).transform("median").to_numpy(float)
            if log_err:
                with np.errstate(divide="ignore", invalid="ignore"):
                    f = np.where(p > 0, p_bin / p, 1.0)
                y, sims, lloq = y * f, sims * f[None, :], lloq * f
            else:
                d = p_bin - p
                y, sims, lloq = y + d, sims + d[None, :], lloq + d
            sim_lloq = lloq
        tab = vpc_arrays(t, y, sims, blq=rec.loc[m, "BLQ"].to_numpy(bool), lloq=lloq,
                         sim_lloq=sim_lloq, stratum=rec.loc[m, "STRATUM"].to_numpy(object),
                         bins=e, ci=ci)
        tab.insert(0, "ANALYTE", a)
        tables.append(tab)
        edges[a] = e
        rec.loc[m, "BIN"] = b + 1
        rec.loc[m, "Y"] = y
    table = pd.concat(tables, ignore_index=True)
    rank = {s: i for i, s in enumerate(order)}
    ana = {a: i for i, a in enumerate(edges)}
    table = table.sort_values(["ANALYTE", "STRATUM", "BIN"], key=lambda c: c.map(
        ana if c.name == "ANALYTE" else rank if c.name == "STRATUM" else lambda v: v),
        kind="stable", ignore_index=True)
    table = table[list(VPC_COLUMNS) + [c for c in table.columns if c not in VPC_COLUMNS]]
    amount_unit = getattr(fit.spec, "amount_unit", "")
    labels = {}
    for s in order:
        ids = list(dict.fromkeys(rec.loc[rec["STRATUM"] == s, "ID"]))
        labels[s] = stratum_label(fit.data, stratify, s, ids, amount_unit)
    table.attrs.update(pc=bool(pc), n_sim=rep.n_sim, seed=rep.seed, stratify=stratify)
    return VPC(table=table, observed=rec, edges=edges, pc=bool(pc), stratify=stratify,
               n_sim=rep.n_sim, seed=rep.seed,
               units={a: fit.spec.output(a).unit for a in edges},
               time_unit=fit.spec.time_unit, labels=labels)
