"""Turn a CKData object into the flat arrays the population model is built on.

Nothing is dropped silently: every record left out of the fit (MDV=1, after allo-HSCT, before
the dose, an analyte the model does not predict, BLQ under M1) is counted by analyte and reason
in ``PopulationData.records`` (totals by reason in ``PopulationData.excluded``) and logged.

Times are converted to the model's time unit here, once: record times, dose times and switch
onsets are multiplied by ``time_scale`` (e.g. 1/24 for hour data and a day model).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ckmodel.errors import DatasetError, Problem
from ckmodel.spec.model import ModelSpec

__all__ = ["PopulationData", "prepare", "switch_onsets", "dosing_history", "dose_target",
           "Dosing", "RECORD_COLUMNS"]

#: Columns of :attr:`PopulationData.records` before the reasons for leaving records out.
RECORD_COLUMNS = ("ANALYTE", "RECORDS", "USED", "USED_BLQ")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PopulationData:
    """Observation-level arrays of a fit (one entry per record used).

    Attributes
    ----------
    subjects : tuple of str
        Subject IDs in the fit, in data order.
    analytes : tuple of str
        Analytes fitted (model outputs with data).
    subject_index, analyte_index : int arrays, shape (n_obs,)
        Position of each record's subject and analyte.
    time : array, shape (n_obs,)
        Record time (data time unit).
    dv : array, shape (n_obs,)
        Observed value (NaN for BLQ records).
    lloq : array, shape (n_obs,)
        LLOQ of each record (NaN when absent).
    blq : bool array, shape (n_obs,)
        Below the LLOQ.
    row : int array, shape (n_obs,)
        Source line of each record.
    amt, dose_time : arrays, shape (n_subjects, n_doses)
        Doses (NaN padded).
    covariates : pandas.DataFrame
        Subject-level covariates indexed by subject ID.
    excluded : dict of str to int
        Records left out of the fit, by reason.
    records : pandas.DataFrame
        One row per analyte of the data: ``RECORDS`` (observation records in the data),
        ``USED`` (in the fit), ``USED_BLQ`` (of those, BLQ: censored under M3), then one
        column per reason a record was left out, with its count.
    time_scale : float
        Factor that converted data time into model time (1.0 when the units agree).
    blq_method : str
        "M3" (censored likelihood) or "M1" (BLQ records dropped).
    onsets : dict of str to array
        Per switch of the spec, its onset per subject in data time (NaN: never), from the
        subject-level column the switch names (covariates or outcomes, e.g. ``ADA_TIME``).
    """

    subjects: tuple[str, ...]
    analytes: tuple[str, ...]
    subject_index: np.ndarray
    analyte_index: np.ndarray
    time: np.ndarray
    dv: np.ndarray
    lloq: np.ndarray
    blq: np.ndarray
    row: np.ndarray
    amt: np.ndarray
    dose_time: np.ndarray
    covariates: pd.DataFrame
    excluded: dict[str, int] = field(default_factory=dict)
    blq_method: str = "M3"
    onsets: dict[str, np.ndarray] = field(default_factory=dict)
    records: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=RECORD_COLUMNS))
    time_scale: float = 1.0

    @property
    def n_obs(self) -> int:
        """Number of records in the fit."""
        return int(self.time.size)

    @property
    def n_subjects(self) -> int:
        """Number of subjects in the fit."""
        return len(self.subjects)

    def analyte_records(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The records of analyte ``index`` (into :attr:`analytes`), as the likelihood reads them.

        Returns
        -------
        sel : ndarray of int
            Their positions among the records (data order).
        value : ndarray
            The DV, or the LLOQ on BLQ records (the censoring limit).
        blq : ndarray of bool
            Records below the LLOQ.
        """
        sel = np.flatnonzero(self.analyte_index == index)
        blq = self.blq[sel]
        return sel, np.where(blq, self.lloq[sel], self.dv[sel]), blq

    def obs_table(self) -> pd.DataFrame:
        """The records used, as a table (ID, TIME, ANALYTE, DV, LLOQ, BLQ, ROW)."""
        return pd.DataFrame({
            "ID": np.asarray(self.subjects, dtype=object)[self.subject_index],
            "TIME": self.time,
            "ANALYTE": np.asarray(self.analytes, dtype=object)[self.analyte_index],
            "DV": self.dv,
            "LLOQ": self.lloq,
            "BLQ": self.blq.astype(int),
            "ROW": self.row,
        })


class Dosing(NamedTuple):
    """Every dose of each subject, as NaN-padded matrices (subjects x doses)."""

    amt: np.ndarray  #: amounts as in the data
    time: np.ndarray  #: dose times in model time
    cmt: np.ndarray  #: target state index per dose (-1: the spec's [dosing])


def dose_target(spec: ModelSpec | None, value: Any) -> int:
    """The state a dose record's CMT names: -1 for the spec's ``[dosing]``, else its index.

    CMT is a state name of the model or, as in NONMEM, a 1-based state number in the order of
    ``[states]``. Empty CMT, or CMT naming the single state the spec's ``[dosing]`` fills,
    means the spec's dosing expression (so a bioavailability in it applies); any other state
    receives the amount unchanged.

    Raises
    ------
    ValueError
        When CMT names no state of the model.
    """
    if spec is None or value is None or (isinstance(value, float) and np.isnan(value)):
        return -1
    text = str(value).strip()
    if text in ("", ".", "nan"):
        return -1
    names = spec.state_names
    if text in names:
        i = names.index(text)
    else:
        try:
            num = float(text)
        except ValueError:
            num = np.nan
        if not (num.is_integer() and 1 <= num <= len(names)):
            raise ValueError(f"CMT {text!r} is not a state of model '{spec.name}' (states: "
                             f"{', '.join(names)}, or their numbers 1-{len(names)})")
        i = int(num) - 1
    return -1 if tuple(spec.dosing) == (names[i],) else i


def dosing_history(doses: pd.DataFrame, subjects: Sequence[str], time_scale: float = 1.0,
                   spec: ModelSpec | None = None) -> Dosing:
    """Every dose of each subject as NaN-padded matrices, in time order.

    Parameters
    ----------
    doses : pandas.DataFrame
        Dose records (ID, TIME in data time, AMT, optional CMT), e.g. ``CKData.doses``.
    subjects : sequence of str
        Row order of the result.
    time_scale : float
        Factor from data time to model time.
    spec : ModelSpec, optional
        The model, to resolve CMT (see :func:`dose_target`); without it every dose follows
        the spec's ``[dosing]``.

    Returns
    -------
    Dosing
        ``amt``, ``time`` (model time) and ``cmt``, each (n_subjects, max doses per
        subject); NaN (``cmt`` -1) where a subject has fewer doses.

    Raises
    ------
    DatasetError
        Naming the subject and line of each dose whose CMT is not a state of ``spec``.
    """
    sub = doses[doses["ID"].isin(set(subjects))]
    counts = sub.groupby("ID").size()
    k = int(counts.max()) if len(counts) else 1
    amt = np.full((len(subjects), k), np.nan)
    dtime = np.full((len(subjects), k), np.nan)
    cmt = np.full((len(subjects), k), -1, dtype=np.int64)
    pos = {s: i for i, s in enumerate(subjects)}
    problems = []
    for sid, grp in sub.sort_values(["ID", "TIME"], kind="stable").groupby("ID", sort=False):
        i = pos[sid]
        amt[i, :len(grp)] = grp["AMT"].to_numpy(float)
        dtime[i, :len(grp)] = grp["TIME"].to_numpy(float) * time_scale
        if "CMT" in grp and spec is not None:
            for j, (value, row) in enumerate(zip(grp["CMT"], grp.get("ROW", grp.index),
                                                 strict=True)):
                try:
                    cmt[i, j] = dose_target(spec, value)
                except ValueError as exc:
                    problems.append(Problem(str(exc), row=int(row), column="CMT",
                                            subject=str(sid), rule="unknown_cmt"))
    if problems:
        raise DatasetError(problems)
    return Dosing(amt, dtime, cmt)


def prepare(data: Any, spec: ModelSpec, *, analytes: Sequence[str] | None = None,
            blq_method: str = "M3", extra_covariates: Sequence[str] = (),
            time_scale: float = 1.0) -> PopulationData:
    """Select and index the records of ``data`` that a fit of ``spec`` uses.

    Parameters
    ----------
    data : CKData
        Checked data (see :func:`ckmodel.data.read_ck`).
    spec : ModelSpec
        The model; its outputs name the analytes it predicts.
    analytes : sequence of str, optional
        Analytes to fit (default: every data analyte the model predicts).
    blq_method : {"M3", "M1"}
        M3 keeps BLQ records as censored; M1 drops them (counted in ``excluded``).
    extra_covariates : sequence of str
        Covariate columns needed by covariate effects (checked for presence).
    time_scale : float
        Factor from the data's time unit to the model's (see
        :func:`ckmodel.data.schema.time_factor`).

    Returns
    -------
    PopulationData
    """
    if blq_method not in ("M3", "M1"):
        raise ValueError(f"blq_method must be 'M3' or 'M1', got {blq_method!r}")
    obs = data.observations.copy()
    outputs = set(spec.output_names)
    data_analytes = list(dict.fromkeys(obs["ANALYTE"]))
    if analytes is None:
        analytes = [a for a in data_analytes if a in outputs]
    else:
        unknown = [a for a in analytes if a not in outputs]
        if unknown:
            raise DatasetError(f"model '{spec.name}' has no output for analyte(s) {unknown}; "
                               f"its outputs are {sorted(outputs)}")
        absent = [a for a in analytes if a not in data_analytes]
        if absent:
            raise DatasetError(f"analyte(s) {absent} requested but not in the data "
                               f"(data analytes: {data_analytes})")
    if not analytes:
        raise DatasetError(f"no analyte of the data ({data_analytes}) is an output of model "
                           f"'{spec.name}' ({sorted(outputs)}); choose another model or rename "
                           "the analytes")
    excluded: dict[str, int] = {}
    counts = pd.DataFrame(index=pd.Index(data_analytes, name="ANALYTE"))
    counts["RECORDS"] = obs["ANALYTE"].value_counts().reindex(counts.index).astype(int)

    def drop(mask: pd.Series, reason: str) -> None:
        nonlocal obs
        k = int(mask.sum())
        if k:
            excluded[reason] = excluded.get(reason, 0) + k
            per = obs.loc[mask, "ANALYTE"].value_counts()
            counts[reason] = per.reindex(counts.index).fillna(0).astype(int)
            obs = obs[~mask]

    drop(~obs["ANALYTE"].isin(outputs), f"not predicted by model {spec.name}")
    drop(~obs["ANALYTE"].isin(analytes), "analyte not selected")
    drop(obs["MDV"].astype(int) == 1, "MDV=1")
    if "AFTER_HSCT" in obs:
        drop(obs["AFTER_HSCT"].astype(bool), "after allo-HSCT (end of CAR-T record)")
    doses = data.doses
    first = doses.groupby("ID")["TIME"].min()
    drop(obs["TIME"].to_numpy() < obs["ID"].map(first).fillna(np.inf).to_numpy(),
         "before the first dose")
    if blq_method == "M1":
        drop(obs["BLQ"].astype(int) == 1, "BLQ (M1: dropped)")
    for reason, k in excluded.items():
        log.info("%d record(s) not used in the fit: %s", k, reason)

    subjects = tuple(s for s in data.subjects if s in set(obs["ID"]))
    no_obs = [s for s in data.subjects if s not in set(obs["ID"])]
    if no_obs:
        excluded["subjects without usable records"] = len(no_obs)
        log.info("%d subject(s) have no usable records and are not in the fit: %s",
                 len(no_obs), ", ".join(map(str, no_obs[:10])))
    if not subjects:
        raise DatasetError("no usable observation records remain for the fit")

    n_doses = doses[doses["ID"].isin(subjects)].groupby("ID").size()
    if not spec.superposition and spec.solution is not None and (n_doses > 1).any():
        bad = n_doses[n_doses > 1].index.tolist()
        raise DatasetError([Problem(f"{n_doses[s]} doses, but model '{spec.name}' supports one "
                                    "dose per subject in a fit (no superposition)", subject=s,
                                    rule="multiple_doses") for s in bad])
    dosing = dosing_history(doses, subjects, time_scale, spec)
    routed = np.argwhere(dosing.cmt >= 0)
    if routed.size:
        raise DatasetError([Problem(
            f"a dose into state {spec.state_names[dosing.cmt[i, j]]} (CMT): fits of model "
            f"'{spec.name}' give every dose by its [dosing] section "
            f"({', '.join(spec.dosing)}); leave CMT empty there, or fit a model whose "
            "[dosing] fills that state (predictions and simulations do honour CMT)",
            subject=subjects[i], column="CMT", rule="cmt_in_fit") for i, j in routed[:20]])
    amt, dtime = dosing.amt, dosing.time
    pos = {s: i for i, s in enumerate(subjects)}
    used = obs["ANALYTE"].value_counts()
    used_blq = obs.loc[obs["BLQ"].astype(int) == 1, "ANALYTE"].value_counts()
    counts.insert(1, "USED", used.reindex(counts.index).fillna(0).astype(int))
    counts.insert(2, "USED_BLQ", used_blq.reindex(counts.index).fillna(0).astype(int))

    covs = data.covariates.reindex(list(subjects))
    needed = list(spec.covariates) + list(extra_covariates)
    missing = [c for c in needed if c not in covs.columns]
    if missing:
        raise DatasetError(f"covariate column(s) {missing} needed by the model or covariate "
                           f"effects are not in the data (subject-level columns: "
                           f"{list(covs.columns)})")
    aidx = {a: i for i, a in enumerate(analytes)}
    return PopulationData(
        subjects=subjects,
        analytes=tuple(analytes),
        subject_index=obs["ID"].map(pos).to_numpy(int),
        analyte_index=obs["ANALYTE"].map(aidx).to_numpy(int),
        time=obs["TIME"].to_numpy(float) * time_scale,
        dv=np.where(obs["BLQ"].astype(int) == 1, np.nan, obs["DV"].to_numpy(float)),
        lloq=obs["LLOQ"].to_numpy(float) if "LLOQ" in obs else np.full(len(obs), np.nan),
        blq=obs["BLQ"].astype(int).to_numpy() == 1,
        row=obs["ROW"].to_numpy(int) if "ROW" in obs else np.arange(len(obs)),
        amt=amt,
        dose_time=dtime,
        covariates=covs,
        excluded=excluded,
        blq_method=blq_method,
        onsets={k: v * time_scale for k, v in switch_onsets(data, spec, subjects).items()},
        records=counts.reset_index(),
        time_scale=float(time_scale),
    )


def switch_onsets(data: Any, spec: ModelSpec, subjects: Sequence[str]) -> dict[str, np.ndarray]:
    """Onset time of each switch of ``spec`` per subject (data time; NaN: never).

    Read from the subject-level column the switch names, among the covariates or outcomes.
    """
    out: dict[str, np.ndarray] = {}
    tables = [data.covariates]
    if getattr(data, "outcomes", None) is not None:
        tables.append(data.outcomes)
    for sw in spec.switches:
        src = next((t for t in tables if sw.onset in t.columns), None)
        if src is None:
            raise DatasetError(f"switch '{sw.name}' of model '{spec.name}' takes its onset from "
                               f"column '{sw.onset}', which is neither a subject-level covariate "
                               "nor an outcome column of the data; add it (empty = never)")
        col = src[sw.onset].reindex(list(subjects))
        try:
            out[sw.name] = col.to_numpy(float)
        except (TypeError, ValueError):
            raise DatasetError(f"column '{sw.onset}' (onset of switch '{sw.name}') must be "
                               "numeric times; leave it empty for subjects who never switch"
                               ) from None
    return out
