"""The escalation meeting: read the patients treated so far and decide the next dose.

A trial file lists patients in enrolment order with ``DOSE_LEVEL`` (1-based) and ``DLT``
(0/1). :func:`next_dose` replays the file through a design: the design asks for a cohort, the
next patients fill it, and so on; it then returns the design's decision with a per-level table.
Patients treated at another level than the design asked for are kept (a cohort is the run of
consecutive patients at one level, at most the cohort size the design asked for) and reported
as deviations; a cohort still being filled when the file ends is reported as such.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ckmodel.design.boin import BOIN
from ckmodel.design.ck import CKGuided, ExposureModel
from ckmodel.design.crm import CRM, crm_skeleton
from ckmodel.design.records import Cohort, EscalationRule, Step, level_tallies, next_decision
from ckmodel.design.rules import AcceleratedTitration, ThreePlusThree
from ckmodel.errors import DatasetError, Problem

__all__ = ["DESIGNS", "NextDose", "design_from_name", "next_dose", "read_trial"]

DESIGNS = ("3+3", "3+3-mtd6", "atd", "boin", "crm", "ck")
"""Design names understood by :func:`design_from_name` (and the command line)."""

DECISION_COLUMNS = ("DOSE_LEVEL", "N", "N_DLT", "P_DLT", "RECOMMENDED", "CONTINUE")


def design_from_name(
    name: str,
    n_levels: int,
    *,
    target: float | None = None,
    skeleton: Sequence[float] | None = None,
    cohort_size: int = 3,
    max_n: int | None = None,
    overdose_limit: float | None = None,
    exposure: ExposureModel | None = None,
    simulation_slope: float = 1.0,
) -> EscalationRule:
    """Build a design from its short name.

    ``"3+3"`` is :class:`ThreePlusThree` (six patients at a level below a toxic one before
    declaring it the MTD; the top level declared at 0/3); ``"3+3-mtd6"`` also requires six at
    the top level, so every declared MTD has six patients; ``"atd"`` is accelerated titration
    then the 3+3; ``"boin"`` is :class:`BOIN`; ``"crm"`` is :class:`CRM` (skeleton by default
    from :func:`crm_skeleton` with the prior MTD at the middle level).

    Parameters
    ----------
    name : str
        One of :data:`DESIGNS`.
    n_levels : int
        Number of dose levels.

    Other Parameters
    ----------------
    target : float, optional
        Target DLT rate of BOIN and CRM (default 0.3 and 0.25, as their reference packages'
        examples; ignored by the rule-based designs).
    skeleton : sequence of float, optional
        CRM skeleton, one value per level.
    cohort_size : int
        BOIN and CRM cohort size (the 3+3 always treats cohorts of 3).
    max_n : int, optional
        BOIN and CRM sample size (default 30).
    overdose_limit : float, optional
        CRM and CK overdose control (CK default 0.25).
    exposure : ExposureModel, optional
        ``"ck"``: dose -> exposure of new patients (e.g.
        :meth:`ExposureModel.from_patients` on virtual patients of a CK fit); required.
    simulation_slope : float
        ``"ck"`` simulations: true log odds of DLT per log exposure within a level.

    Returns
    -------
    EscalationRule

    Examples
    --------
    >>> design_from_name("boin", 5, target=0.25).name
    'BOIN'
    """
    key = name.lower()
    if key == "3+3":
        return ThreePlusThree()
    if key == "3+3-mtd6":
        return ThreePlusThree(six_at_mtd=True, six_at_top=True)
    if key == "atd":
        return AcceleratedTitration(then=ThreePlusThree())
    if key == "boin":
        return BOIN(target=0.3 if target is None else target, cohort_size=cohort_size,
                    max_n=30 if max_n is None else max_n)
    if key == "crm":
        t = 0.25 if target is None else target
        sk = crm_skeleton(t, n_levels) if skeleton is None else skeleton
        if len(sk) != n_levels:
            raise ValueError(f"the skeleton has {len(sk)} values for {n_levels} dose levels")
        return CRM(skeleton=tuple(sk), target=t, cohort_size=cohort_size,
                   max_n=30 if max_n is None else max_n, overdose_limit=overdose_limit)
    if key == "ck":
        if exposure is None:
            raise ValueError("the CK-guided design needs an exposure model (dose -> exposure "
                             "of new patients, from a CK fit)")
        if exposure.n_levels != n_levels:
            raise ValueError(f"the exposure model has {exposure.n_levels} dose levels, not "
                             f"{n_levels}")
        return CKGuided(exposure, target=0.3 if target is None else target,
                        cohort_size=cohort_size, max_n=30 if max_n is None else max_n,
                        overdose_limit=0.25 if overdose_limit is None else overdose_limit,
                        simulation_slope=simulation_slope)
    raise ValueError(f"unknown design {name!r}; use one of {', '.join(DESIGNS)}")


def read_trial(path: str | os.PathLike[str], n_levels: int, *, exposure: bool = False
               ) -> pd.DataFrame:
    """Read and check a trial file: patients in order, ``DOSE_LEVEL`` (1-based) and ``DLT``.

    Parameters
    ----------
    path : str or os.PathLike
        CSV file with a header; other columns are kept and ignored.
    n_levels : int
        Number of dose levels (``DOSE_LEVEL`` must lie in ``1 .. n_levels``).
    exposure : bool
        Require an ``EXPOSURE`` column (each patient's exposure, > 0), as the CK-guided
        design does.

    Returns
    -------
    pandas.DataFrame
        Columns ``DOSE_LEVEL`` and ``DLT`` as integers (and ``EXPOSURE`` as float), in file
        order.

    Raises
    ------
    DatasetError
        Listing every problem with its file, line and column.
    """
    name = os.fspath(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DatasetError("the file is empty (expected a header DOSE_LEVEL,DLT)",
                           file=name) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(f"not a readable CSV file: {exc}", file=name) from None
    raw.columns = [str(c).strip() for c in raw.columns]
    need = ("DOSE_LEVEL", "DLT") + (("EXPOSURE",) if exposure else ())
    missing = [c for c in need if c not in raw.columns]
    if missing:
        raise DatasetError(Problem(f"missing column(s) {', '.join(missing)}; found "
                                   f"{', '.join(raw.columns) or 'none'}", file=name, row=1,
                                   rule="missing_column"), file=name)
    problems: list[Problem] = []
    out = {}
    for col, allowed, what in (("DOSE_LEVEL", range(1, n_levels + 1),
                                f"a dose level 1..{n_levels}"),
                               ("DLT", (0, 1), "0 or 1")):
        values = []
        for i, text in enumerate(raw[col].str.strip()):
            try:
                v = float(text)
                ok = v.is_integer() and int(v) in allowed
            except ValueError:
                ok = False
            if not ok:
                problems.append(Problem(f"{text!r} is not {what}", file=name, row=i + 2,
                                        column=col, rule="bad_value"))
                values.append(-1)
            else:
                values.append(int(v))
        out[col] = np.array(values, dtype=np.int64)
    if exposure:
        vals = []
        for i, text in enumerate(raw["EXPOSURE"].str.strip()):
            try:
                v = float(text)
            except ValueError:
                v = float("nan")
            if not (np.isfinite(v) and v > 0):
                problems.append(Problem(f"{text!r} is not a positive exposure", file=name,
                                        row=i + 2, column="EXPOSURE", rule="bad_value"))
            vals.append(v)
        out["EXPOSURE"] = np.array(vals, dtype=float)
    if problems:
        raise DatasetError(problems, file=name)
    return pd.DataFrame(out)


@dataclass(frozen=True)
class NextDose:
    """The decision of an escalation meeting.

    Attributes
    ----------
    design : str
        The design's name.
    step : Step
        The rule's step on the replayed history (0-based levels), or the step in progress
        when the last cohort is incomplete.
    table : pandas.DataFrame
        One row per dose level: ``DOSE_LEVEL`` (1-based), ``N``, ``N_DLT``, ``P_DLT``
        (observed rate for 3+3, ATD and BOIN; posterior mean for CRM and CK), ``RECOMMENDED``,
        ``CONTINUE``; plus ``P_OVERDOSE`` (``P(p > target | data)``: Beta(1, 1) for BOIN, the
        model for CRM) and ``ELIMINATED`` (BOIN).
    pending : int
        Patients still to treat to complete the current cohort (0 when complete).
    deviations : tuple of str
        Patients the design did not ask for.
    """

    design: str
    step: Step
    table: pd.DataFrame
    pending: int
    deviations: tuple[str, ...]

    @property
    def recommended(self) -> int | None:
        """1-based level for the next cohort (or the MTD at a stop); ``None`` when none."""
        hit = self.table.index[self.table["RECOMMENDED"] == 1]
        return int(self.table.loc[hit[0], "DOSE_LEVEL"]) if len(hit) else None

    @property
    def go_on(self) -> bool:
        """Whether the trial continues."""
        return bool(self.table["CONTINUE"].iloc[0])

    def text(self) -> str:
        """The decision in words, dose levels counted from 1."""
        s = self.step
        if self.pending:
            head = (f"Continue: complete the cohort at dose level {s.next_level + 1} "
                    f"(treat {self.pending} more) before the next decision.")
        elif not s.is_stop:
            verb = {"start": "start at", "escalate": "escalate to", "stay": "stay at",
                    "de_escalate": "de-escalate to", "switch": "switch rules at"
                    }[s.decision.value]
            head = (f"Continue: {verb} dose level {s.next_level + 1} with "
                    f"{s.cohort_size} patient(s).")
        elif s.mtd is not None:
            head = f"Stop: MTD = dose level {s.mtd + 1}."
        else:
            head = "Stop: no dose recommended."
        lines = [f"{self.design}: {head}", f"Reason: {one_based(s.reason)}"]
        lines += [f"Deviation: {d}" for d in self.deviations]
        return "\n".join(lines)


def one_based(text: str) -> str:
    """Rewrite a rule's ``level N`` (0-based) as ``dose level N+1``."""
    return re.sub(r"\blevel (\d+)", lambda m: f"dose level {int(m.group(1)) + 1}", text)


def _cohort(level: int, i: int, j: int, dlts: np.ndarray, phase: str,
            exposures: np.ndarray | None) -> Cohort:
    if exposures is None:
        return Cohort(level, j - i, int(dlts[i:j].sum()), phase=phase)
    return Cohort(level, j - i, int(dlts[i:j].sum()), phase=phase,
                  exposures=tuple(exposures[i:j].tolist()), dlts=tuple(dlts[i:j].tolist()))


def _replay(rule: EscalationRule, levels: np.ndarray, dlts: np.ndarray, n_levels: int,
            exposures: np.ndarray | None = None
            ) -> tuple[list[Cohort], Step, int, list[str]]:
    history: list[Cohort] = []
    deviations: list[str] = []
    cap = rule.max_sample_size(n_levels)
    step = next_decision(history, rule, n_levels=n_levels, max_patients=cap)
    i, total = 0, len(levels)
    while i < total:
        if step.is_stop:
            raise DatasetError(Problem(
                f"the {rule.name} stopped after the patient on line {i + 1} "
                f"({one_based(step.reason)}); {total - i} more patient(s) listed",
                row=i + 2, column="DOSE_LEVEL", rule="after_stop"))
        want, size = int(step.next_level), int(step.cohort_size)  # type: ignore[arg-type]
        level = int(levels[i])
        j = i
        while j < total and j - i < size and levels[j] == level:
            j += 1
        if level != want:
            deviations.append(f"line {i + 2}: dose level {level + 1} where the design asked "
                              f"for dose level {want + 1}")
        if j == total and j - i < size and level == want:
            history.append(_cohort(level, i, j, dlts, step.phase or "", exposures))
            return history, step, size - (j - i), deviations
        if j - i < size:
            deviations.append(f"line {i + 2}: a cohort of {j - i} at dose level {level + 1} "
                              f"where the design asked for {size}")
        history.append(_cohort(level, i, j, dlts, step.phase or "", exposures))
        step = next_decision(history, rule, n_levels=n_levels, max_patients=cap)
        i = j
    return history, step, 0, deviations


def next_dose(rule: EscalationRule, trial: pd.DataFrame, n_levels: int) -> NextDose:
    """The next-dose decision of a design on the patients treated so far.

    Parameters
    ----------
    rule : EscalationRule
        The design (e.g. from :func:`design_from_name`).
    trial : pandas.DataFrame
        Patients in order, ``DOSE_LEVEL`` 1-based and ``DLT`` 0/1 (see :func:`read_trial`).
    n_levels : int
        Number of dose levels.

    Returns
    -------
    NextDose

    Examples
    --------
    >>> import pandas as pd
    >>> from ckmodel.design import BOIN
    >>> trial = pd.DataFrame({"DOSE_LEVEL": [1, 1, 1, 2, 2, 2], "DLT": [0, 0, 0, 0, 1, 1]})
    >>> decision = next_dose(BOIN(target=0.3), trial, 5)
    >>> decision.recommended, decision.go_on
    (1, True)
    """
    levels = trial["DOSE_LEVEL"].to_numpy(dtype=np.int64) - 1
    dlts = trial["DLT"].to_numpy(dtype=np.int64)
    exposures = None
    if isinstance(rule, CKGuided):
        if "EXPOSURE" not in trial.columns:
            raise ValueError("the CK-guided design needs each patient's EXPOSURE in the trial "
                             "file")
        exposures = trial["EXPOSURE"].to_numpy(dtype=float)
    history, step, pending, deviations = _replay(rule, levels, dlts, n_levels, exposures)
    n, y = level_tallies(history, n_levels)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, y / np.maximum(n, 1), np.nan)
    table = pd.DataFrame({"DOSE_LEVEL": np.arange(1, n_levels + 1), "N": n, "N_DLT": y,
                          "P_DLT": rate})
    if isinstance(rule, CRM):
        post = rule.posterior(n, y, overdose=True)
        table["P_DLT"] = rule.estimates(post)
        table["P_OVERDOSE"] = post.p_overdose
    elif isinstance(rule, CKGuided):
        mean, p_over = rule.posterior_table(history)
        table["P_DLT"] = mean
        table["P_OVERDOSE"] = p_over
    elif isinstance(rule, BOIN):
        table["P_OVERDOSE"] = np.where(n > 0, stats.beta.sf(rule.target, y + 1, n - y + 1),
                                       np.nan)
        table["ELIMINATED"] = (np.arange(n_levels) >= rule.lowest_eliminated(n, y)
                               ).astype(np.int64)
    chosen = step.mtd if step.is_stop else step.next_level
    table["RECOMMENDED"] = (np.arange(n_levels) == (-1 if chosen is None else chosen)
                            ).astype(np.int64)
    table["CONTINUE"] = int(not step.is_stop or pending > 0)
    cols = list(DECISION_COLUMNS) + [c for c in table.columns if c not in DECISION_COLUMNS]
    return NextDose(rule.name, step, table[cols], pending, tuple(deviations))
