"""CKData: the checked, immutable CK data set every later step of ckmodel works from."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ckmodel.data import _export as E
from ckmodel.data import _pipeline as P
from ckmodel.data import schema as S
from ckmodel.data._records import to_text
from ckmodel.errors import Problem

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["CKData"]

_FRAME_LABELS = ("<observations>", "<doses>")


@dataclass(frozen=True, eq=False, repr=False)
class CKData:
    """Checked CAR-T cellular-kinetics data: observations, doses, covariates, outcomes.

    Build it with :func:`ckmodel.data.read_ck` or :meth:`CKData.from_frames`, never directly:
    both run every check. The frames are private; each property returns a fresh copy, so
    callers cannot change the data (bind the result to a local name when used in a loop).
    Equality and :meth:`hash` compare content only (not ``source``, ``ROW`` or ``problems``).

    Attributes
    ----------
    observations : pandas.DataFrame
        ID (str), TIME (float, ``time_unit`` since infusion), ANALYTE (str), DV (float, analyte
        unit; NaN when BLQ=1), LLOQ (float, NaN when absent), BLQ (int 0/1), MDV (int 0/1),
        MDV_REASON (str or NaN), AFTER_HSCT (bool), ROW (int source line). Sorted by subject
        (order of :attr:`subjects`), TIME, ANALYTE. MDV=1 records are kept.
    doses : pandas.DataFrame
        ID, TIME, AMT (as in the file, e.g. 1e6 CAR+ T cells/kg), CMT (str or NaN), ROW.
    covariates : pandas.DataFrame
        One row per subject (index ID, str): covariates constant within each subject.
    time_varying : pandas.DataFrame
        One row per record (ID, TIME, EVID, ANALYTE; ANALYTE NaN on doses) with the covariates
        that change within a subject. No rows and only the key columns when there are none.
    outcomes : pandas.DataFrame or None
        Subject-level outcomes indexed by ID (numbers as float, BOR as str).
    source : str or None
        File the data came from.
    time_unit : str
        Unit of TIME and outcome times (recorded, never converted).
    problems : tuple of Problem
        Warnings found by the checks (errors prevent construction).

    Examples
    --------
    >>> import pandas as pd
    >>> obs = pd.DataFrame({"ID": ["A", "A", "B"], "TIME": [7.0, 28.0, 10.0],
    ...                     "ANALYTE": "PB_QPCR", "DV": [9000.0, None, 4000.0],
    ...                     "LLOQ": 50.0, "BLQ": [0, 1, 0]})
    >>> doses = pd.DataFrame({"ID": ["A", "B"], "TIME": 0.0, "AMT": [1.0, 3.0]})
    >>> ck = CKData.from_frames(obs, doses)
    >>> ck
    CKData(2 subjects, analytes=['PB_QPCR'], 3 observations, 2 doses, time_unit='day')
    >>> ck.to_xarray()["DV"].shape
    (2, 3, 1)
    >>> ck.subset(["B"]).subjects
    ('B',)
    >>> ck.hash() == CKData.from_frames(obs, doses).hash()
    True
    """

    _observations: pd.DataFrame
    _doses: pd.DataFrame
    _covariates: pd.DataFrame
    _time_varying: pd.DataFrame
    _outcomes: pd.DataFrame | None
    _subjects: tuple[str, ...]
    _analyte_units: tuple[tuple[str, str], ...]
    _hsct: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    source: str | None = None
    time_unit: str = "day"
    problems: tuple[Problem, ...] = ()

    # --- construction ----------------------------------------------------------------------
    @classmethod
    def _from_parts(cls, parts: P.Parts, *, source: str | None, time_unit: str,
                    problems: tuple[Problem, ...]) -> CKData:
        return cls(parts.observations, parts.doses, parts.covariates, parts.time_varying,
                   parts.outcomes, parts.subjects, parts.analyte_units, parts.hsct, source,
                   time_unit, problems)

    @classmethod
    def from_frames(
        cls,
        observations: pd.DataFrame,
        doses: pd.DataFrame,
        covariates: pd.DataFrame | None = None,
        outcomes: pd.DataFrame | None = None,
        time_unit: str = "day",
        *,
        analytes: Mapping[str, str] | Iterable[str] | None = None,
        baseline_covariates: Iterable[str] = (),
        source: str | None = None,
    ) -> CKData:
        """Build CKData from frames (simulators, notebooks), running the same checks as files.

        Parameters
        ----------
        observations : pandas.DataFrame
            Columns ID, TIME (``time_unit`` since infusion), ANALYTE, DV (analyte unit), and
            optionally LLOQ, BLQ, MDV, MDV_REASON and ROW. Header names are matched
            case-insensitively; AFTER_HSCT is recomputed; any other column is a covariate
            (baseline when constant within subjects, else time-varying).
        doses : pandas.DataFrame
            Columns ID, TIME, AMT (e.g. 1e6 CAR+ T cells/kg), optionally CMT.
        covariates : pandas.DataFrame, optional
            Baseline covariates, one row per subject, ID as index or column.
        outcomes : pandas.DataFrame, optional
            Outcomes table, ID as index or column.
        time_unit : str
            Unit of TIME.

        Other Parameters
        ----------------
        analytes : dict or list of str, optional
            Extra analytes (see :func:`~ckmodel.data.read_ck`).
        baseline_covariates : iterable of str
            Record-level columns that must be constant within subjects.
        source : str, optional
            Free label kept as :attr:`source`.

        Returns
        -------
        CKData

        Raises
        ------
        DatasetError
            Listing every error; problems point at ``<observations>``, ``<doses>`` or
            ``<outcomes>`` with 1-based row positions (or the frames' ROW column).

        Examples
        --------
        >>> import pandas as pd
        >>> obs = pd.DataFrame({"ID": [1, 1], "TIME": [7.0, 14.0], "ANALYTE": "PB_QPCR",
        ...                     "DV": [5000.0, 800.0]})
        >>> doses = pd.DataFrame({"ID": [1], "TIME": [0.0], "AMT": [1.0]})
        >>> CKData.from_frames(obs, doses).subjects
        ('1',)
        """
        if time_unit not in S.TIME_UNITS:
            raise ValueError(f"time_unit must be one of {S.TIME_UNITS}, got {time_unit!r}")
        frames, rows, labels, pre = [], [], [], []
        for df, evid, label in ((observations, 0, _FRAME_LABELS[0]), (doses, 1, _FRAME_LABELS[1])):
            if not isinstance(df, pd.DataFrame):
                raise TypeError(f"{label[1:-1]} must be a pandas DataFrame")
            if S.ID not in [str(c).upper() for c in df.columns] and df.index.name is not None:
                df = df.reset_index()
            names, hp = S.standardize_header([str(c) for c in df.columns], file=label, line=None)
            pre += hp
            df = df.set_axis(names, axis=1).reset_index(drop=True)
            r = pd.to_numeric(df.pop("ROW"), errors="coerce") if "ROW" in df else None
            df = df.drop(columns=[c for c in ("AFTER_HSCT",) if c in df])
            if S.EVID in df and not (pd.to_numeric(df[S.EVID], errors="coerce") == evid).all():
                pre.append(Problem(f"EVID in the {label} frame must be {evid} on every row "
                                   "(or be left out)", file=label, column=S.EVID,
                                   rule="evid_value"))
            df[S.EVID] = evid
            frames.append(df)
            pos = np.arange(1, len(df) + 1)
            rows.append(pos if r is None else np.where(r.notna(), r.fillna(0), pos))
            labels.append(np.full(len(df), label, dtype=object))
        raw = pd.concat(frames, ignore_index=True)
        declared = list(baseline_covariates)
        if covariates is not None:
            cov = covariates
            if S.ID in [str(c).upper() for c in cov.columns]:
                cov = cov.set_index([c for c in cov.columns if str(c).upper() == S.ID][0])
            cov = cov.copy()
            cov.index = [str(int(i)) if isinstance(i, float) and i.is_integer() else str(i)
                         for i in cov.index]
            ids = to_text(raw[S.ID]) if S.ID in raw else pd.Series(dtype=object)
            for c in cov.columns:
                if c in raw.columns:
                    pre.append(Problem(f"covariate {c} is given both in covariates and in the "
                                       "record frames; keep one", file="<covariates>", column=c,
                                       rule="duplicate_column"))
                    continue
                raw[c] = ids.map(cov[c]).to_numpy()
                declared.append(str(c))
            for sid in sorted(set(cov.index) - set(ids.dropna())):
                pre.append(Problem("covariates given for a subject with no records; they are "
                                   "not kept", file="<covariates>", subject=sid,
                                   rule="unknown_subject", severity="warning"))
        table, p2 = P.coerce_ck(raw, np.concatenate(rows), None, np.concatenate(labels))
        out_t, p3 = (None, [])
        if outcomes is not None:
            out_t, p3 = P.outcomes_from_frame(outcomes)
        problems, parts = P.process(table, outcomes=out_t, analytes=analytes,
                                    baseline=tuple(declared), header=tuple(raw.columns),
                                    header_line=None, outcome_header_line=None,
                                    time_unit=time_unit, pre_ck=pre + p2, pre_outcomes=p3)
        parts, warns = P.finish(problems, parts, source, stacklevel=3)
        return cls._from_parts(parts, source=source, time_unit=time_unit, problems=warns)

    # --- views -----------------------------------------------------------------------------
    @property
    def observations(self) -> pd.DataFrame:
        """Observation records (a copy); columns in the class docstring."""
        return self._observations.copy()

    @property
    def doses(self) -> pd.DataFrame:
        """Dose records (a copy): ID, TIME, AMT, CMT, ROW."""
        return self._doses.copy()

    @property
    def covariates(self) -> pd.DataFrame:
        """Baseline covariates, one row per subject, index ID (a copy)."""
        return self._covariates.copy()

    @property
    def time_varying(self) -> pd.DataFrame:
        """Time-varying covariates, one row per record (a copy; may have no rows)."""
        return self._time_varying.copy()

    @property
    def outcomes(self) -> pd.DataFrame | None:
        """Outcomes indexed by ID (a copy), or None."""
        return None if self._outcomes is None else self._outcomes.copy()

    @property
    def subjects(self) -> tuple[str, ...]:
        """Subject IDs (str) in order of first appearance."""
        return self._subjects

    @property
    def analytes(self) -> tuple[str, ...]:
        """Analytes with observations, in registry order (defaults first)."""
        return tuple(a for a, _ in self._analyte_units)

    @property
    def analyte_units(self) -> dict[str, str]:
        """Unit of DV and LLOQ for each analyte present."""
        return dict(self._analyte_units)

    @property
    def hsct_time(self) -> pd.Series:
        """Time of allo-HSCT by subject (float, only subjects that had one)."""
        return self._hsct.dropna().copy()

    # --- content ---------------------------------------------------------------------------
    @cached_property
    def _digest(self) -> str:
        return E.canonical_hash(self)

    def hash(self) -> str:
        """SHA-256 hex digest of the content, stable across runs and machines.

        Returns
        -------
        str
            64 hex characters; independent of file path, line numbers and problems.
        """
        return self._digest

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CKData):
            return NotImplemented
        return self.hash() == other.hash()

    def __hash__(self) -> int:
        return int(self.hash()[:16], 16)

    def __repr__(self) -> str:
        src = f", source={self.source!r}" if self.source else ""
        return (f"CKData({len(self._subjects)} subjects, analytes={list(self.analytes)}, "
                f"{len(self._observations)} observations, {len(self._doses)} doses, "
                f"time_unit={self.time_unit!r}{src})")

    def summary(self) -> str:
        """Readable overview: subjects, records and %BLQ per analyte, ranges, flags, outcomes.

        Returns
        -------
        str
        """
        return E.summary_text(self)

    def to_xarray(self) -> xr.Dataset:
        """Observations on a ``(subject, time, analyte)`` grid.

        Returns
        -------
        xarray.Dataset
            Data variables DV, LLOQ, BLQ, MDV, AFTER_HSCT (float; NaN where there is no record),
            coords ``subject``, ``time`` (union of observation times, ``time_unit``),
            ``analyte``, ``unit`` (per analyte) and every baseline covariate on ``subject``
            (renamed ``cov_<name>`` on a clash). Attrs ``time_unit`` and ``source``. Where an
            excluded (MDV=1) replicate shares a cell with a kept record, the kept one is shown;
            the replicate stays in :attr:`observations`.
        """
        return E.to_xarray(self)

    def to_csv(self, path: str | os.PathLike[str], *,
               outcomes_path: str | os.PathLike[str] | None = None) -> None:
        """Write a NONMEM-style long CSV that :func:`read_ck` reads back to an equal CKData.

        Parameters
        ----------
        path : str or os.PathLike
            CK file to write (atomically: temp file then ``os.replace``).
        outcomes_path : str or os.PathLike, optional
            Where to write the outcomes table, if any.

        Notes
        -----
        Missing values are written as ``.``; dose rows get MDV=1 (NONMEM convention; MDV is
        not used on doses); baseline covariates are repeated on every record. ``time_unit`` is
        not stored in the file: pass it again to :func:`read_ck`.
        """
        E.write_csv_atomic(E.long_records(self), path)
        if outcomes_path is not None and self._outcomes is not None:
            E.write_csv_atomic(self._outcomes.reset_index(), outcomes_path)

    # --- new objects -----------------------------------------------------------------------
    def _replace(self, keep: tuple[str, ...], obs_mask: np.ndarray | None = None,
                 problems: tuple[Problem, ...] | None = None) -> CKData:
        ks = set(keep)
        obs = self._observations[self._observations[S.ID].isin(ks)]
        if obs_mask is not None:
            obs = self._observations[self._observations[S.ID].isin(ks) & obs_mask]
        present = set(obs[S.ANALYTE])
        h = self._hsct.reindex(list(keep)) if len(self._hsct) else self._hsct
        doses = self._doses[self._doses[S.ID].isin(ks)]
        tv = self._time_varying[self._time_varying[S.ID].isin(ks)]
        if obs_mask is not None and len(h):
            doses = doses[~(doses[S.TIME].to_numpy() > doses[S.ID].map(h).to_numpy(float))]
            tv = tv[~(tv[S.TIME].to_numpy() > tv[S.ID].map(h).to_numpy(float))]
        out = None if self._outcomes is None else \
            self._outcomes[self._outcomes.index.isin(ks)].copy()
        probs = problems if problems is not None else self.problems
        probs = tuple(p for p in probs if p.subject is None or p.subject in ks)
        return CKData(obs.reset_index(drop=True), doses.reset_index(drop=True),
                      self._covariates.loc[list(keep)].copy(), tv.reset_index(drop=True),
                      out, keep, tuple(x for x in self._analyte_units if x[0] in present),
                      h, self.source, self.time_unit, probs)

    def subset(self, ids: Iterable[str | int]) -> CKData:
        """A new CKData with only the given subjects (kept in their original order).

        Parameters
        ----------
        ids : iterable of str or int
            Subject IDs (compared as text).

        Returns
        -------
        CKData

        Raises
        ------
        KeyError
            If an ID is not a subject of this data set.
        """
        want = {str(i) for i in ids}
        unknown = sorted(want - set(self._subjects))
        if unknown:
            raise KeyError(f"not subjects of this data set: {unknown}")
        return self._replace(tuple(s for s in self._subjects if s in want))

    def without_flagged(self) -> CKData:
        """A new CKData without the records after allo-HSCT (observations, doses, covariates).

        Returns
        -------
        CKData
            Same subjects; the ``after_hsct`` warnings are dropped with the records.
        """
        keep_obs = ~self._observations["AFTER_HSCT"].to_numpy(dtype=bool)
        probs = tuple(p for p in self.problems if p.rule != "after_hsct")
        return self._replace(self._subjects, keep_obs, probs)
