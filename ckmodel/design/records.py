"""Records shared by every dose-escalation rule: cohorts, decisions, next steps.

A rule is a pure function of the trial history: it reads the cohorts treated so far (in enrolment
order) and returns one :class:`Step` (what to do next and why). Nothing else is stored between
calls, so the same rule object can drive a live trial, a simulated trial, an exact enumeration of
all outcomes, or a design-simulation grid.

Dose levels are 0-based indices into the dose grid (level 0 is the lowest dose).
"""

from __future__ import annotations

import enum
import math
import operator
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "PHASE_ATD",
    "PHASE_3PLUS3",
    "Cohort",
    "Decision",
    "Step",
    "EscalationRule",
    "level_tallies",
    "next_decision",
    "restrict_levels",
    "restricted_step",
    "tally_key",
]

PHASE_ATD = "ATD"
"""Phase tag of single-patient accelerated-titration cohorts."""

PHASE_3PLUS3 = "3+3"
"""Phase tag of cohorts treated under the 3+3 rule."""


class Decision(enum.StrEnum):
    """What a rule decides after a cohort (or before the first one).

    Attributes
    ----------
    START
        Empty history: treat the first cohort.
    ESCALATE
        Treat the next cohort one level higher.
    STAY
        Treat more patients at the current level (e.g. 1/3 DLT: expand to 6).
    DE_ESCALATE
        The current level exceeds the MTD: treat more patients one or more levels lower.
    SWITCH
        Leave accelerated titration and continue under the follow-on rule (alias
        ``SWITCH_TO_3PLUS3``).
    STOP_MTD_FOUND
        Stop and declare the MTD (alias ``DECLARE_MTD``); ``Step.mtd`` holds the level.
    STOP_TOO_TOXIC
        Stop without an MTD: the lowest level exceeds the MTD.
    STOP_MAX_PATIENTS
        Stop without an MTD: the next cohort would exceed the maximum sample size.
    """

    START = "start"
    ESCALATE = "escalate"
    STAY = "stay"
    DE_ESCALATE = "de_escalate"
    SWITCH = "switch"
    SWITCH_TO_3PLUS3 = "switch"
    STOP_MTD_FOUND = "stop_mtd_found"
    DECLARE_MTD = "stop_mtd_found"
    STOP_TOO_TOXIC = "stop_too_toxic"
    STOP_MAX_PATIENTS = "stop_max_patients"

    @property
    def is_stop(self) -> bool:
        """Whether the decision ends the trial."""
        return self.value.startswith("stop")


def _as_int(value: object, name: str) -> int:
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None


@dataclass(frozen=True, slots=True)
class Cohort:
    """A group of patients treated together at one dose level, with their DLT outcome.

    Parameters
    ----------
    level : int
        0-based dose level index (0 = lowest dose of the grid).
    n : int
        Number of patients treated in this cohort (>= 1).
    n_dlt : int
        Number of those patients with a dose-limiting toxicity in the DLT window (0..n).
    phase : str
        Phase the cohort was treated in: ``"ATD"`` (accelerated titration) or ``"3+3"``;
        model-based designs add their own tags.
    grades : tuple of int, optional
        Worst toxicity grade (CTCAE, 0-5) of each patient, in enrolment order. Only needed by
        grade-based accelerated-titration triggers (:class:`~ckmodel.design.ToxicityTrigger`).
    exposures : tuple of float, optional
        Each patient's exposure (e.g. model-based Cmax, natural units), in enrolment order;
        needed by the CK-guided design (:class:`~ckmodel.design.CKGuided`).
    dlts : tuple of int, optional
        Each patient's DLT (0/1), in enrolment order, summing to ``n_dlt``; with
        ``exposures``, which patient had the DLT matters to an exposure-driven model.

    Examples
    --------
    >>> Cohort(level=2, n=3, n_dlt=1)
    Cohort(level=2, n=3, n_dlt=1, phase='3+3', grades=None, exposures=None, dlts=None)
    """

    level: int
    n: int
    n_dlt: int
    phase: str = PHASE_3PLUS3
    grades: tuple[int, ...] | None = None
    exposures: tuple[float, ...] | None = None
    dlts: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        level = _as_int(self.level, "level")
        n = _as_int(self.n, "n")
        n_dlt = _as_int(self.n_dlt, "n_dlt")
        if level < 0:
            raise ValueError(f"level must be >= 0, got {level}")
        if n < 1:
            raise ValueError(f"a cohort treats at least one patient, got n={n}")
        if not 0 <= n_dlt <= n:
            raise ValueError(f"n_dlt must be between 0 and n={n}, got {n_dlt}")
        if not isinstance(self.phase, str) or not self.phase:
            raise ValueError(f"phase must be a non-empty string, got {self.phase!r}")
        object.__setattr__(self, "level", level)
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "n_dlt", n_dlt)
        if self.grades is not None:
            grades = tuple(_as_int(g, "grade") for g in self.grades)
            if len(grades) != n:
                raise ValueError(f"grades has {len(grades)} entries for a cohort of n={n}")
            if any(not 0 <= g <= 5 for g in grades):
                raise ValueError(f"toxicity grades must be between 0 and 5, got {grades}")
            object.__setattr__(self, "grades", grades)
        if self.exposures is not None:
            ex = tuple(float(e) for e in self.exposures)
            if len(ex) != n:
                raise ValueError(f"exposures has {len(ex)} entries for a cohort of n={n}")
            if any(not (e > 0 and math.isfinite(e)) for e in ex):
                raise ValueError(f"exposures must be positive and finite, got {ex}")
            object.__setattr__(self, "exposures", ex)
        if self.dlts is not None:
            d = tuple(_as_int(v, "dlt") for v in self.dlts)
            if len(d) != n or any(v not in (0, 1) for v in d) or sum(d) != n_dlt:
                raise ValueError(f"dlts must be n={n} values 0/1 summing to n_dlt={n_dlt}, "
                                 f"got {d}")
            object.__setattr__(self, "dlts", d)


@dataclass(frozen=True, slots=True)
class Step:
    """The decision a rule takes on a history, and the cohort it asks for next.

    Parameters
    ----------
    decision : Decision
        What the rule decided.
    reason : str
        Human-readable justification, citing the DLT counts it rests on.
    next_level : int, optional
        Level of the next cohort; ``None`` when the decision stops the trial.
    cohort_size : int
        Number of patients to treat next; 0 when the decision stops the trial.
    phase : str, optional
        Phase tag of the next cohort (``"ATD"``, ``"3+3"``); ``None`` when stopping.
    mtd : int, optional
        Declared MTD level; set exactly when ``decision`` is ``STOP_MTD_FOUND``.
    """

    decision: Decision
    reason: str
    next_level: int | None = None
    cohort_size: int = 0
    phase: str | None = None
    mtd: int | None = None

    def __post_init__(self) -> None:
        decision = Decision(self.decision)
        object.__setattr__(self, "decision", decision)
        if decision.is_stop:
            if self.next_level is not None or self.cohort_size != 0 or self.phase is not None:
                raise ValueError(f"a {decision.value} step treats nobody: {self!r}")
            if (self.mtd is not None) != (decision is Decision.STOP_MTD_FOUND):
                raise ValueError(f"mtd is set exactly when the MTD is declared: {self!r}")
        else:
            if self.next_level is None or self.next_level < 0 or self.cohort_size < 1:
                raise ValueError(f"a {decision.value} step needs a level and a cohort: {self!r}")
            if not self.phase:
                raise ValueError(f"a {decision.value} step needs the next cohort's phase")
            if self.mtd is not None:
                raise ValueError(f"only a stop declares an MTD: {self!r}")

    @property
    def is_stop(self) -> bool:
        """Whether this step ends the trial."""
        return self.decision.is_stop


@runtime_checkable
class EscalationRule(Protocol):
    """What the runner, the exact enumerator and the simulators need from a rule.

    A rule must be deterministic: the same history and number of levels give the same step.
    """

    @property
    def name(self) -> str:
        """Short label of the design, e.g. ``"3+3"``."""
        ...

    def decide(self, history: Sequence[Cohort], n_levels: int) -> Step:
        """Return the next step given the cohorts treated so far, in enrolment order."""
        ...

    def max_sample_size(self, n_levels: int) -> int:
        """Upper bound on the patients the rule treats on ``n_levels`` levels."""
        ...


def level_tallies(history: Sequence[Cohort], n_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Count patients and DLTs per dose level over a history (all phases pooled).

    Parameters
    ----------
    history : sequence of Cohort
        Cohorts treated so far.
    n_levels : int
        Number of dose levels.

    Returns
    -------
    n_treated, n_dlt : numpy.ndarray of int, shape (n_levels,)
        Patients treated and DLTs observed at each level.

    Examples
    --------
    >>> n, d = level_tallies([Cohort(0, 3, 0), Cohort(1, 3, 1), Cohort(1, 3, 0)], 3)
    >>> n.tolist(), d.tolist()
    ([3, 6, 0], [0, 1, 0])
    """
    n_treated = np.zeros(n_levels, dtype=np.int64)
    n_dlt = np.zeros(n_levels, dtype=np.int64)
    for cohort in history:
        n_treated[cohort.level] += cohort.n
        n_dlt[cohort.level] += cohort.n_dlt
    return n_treated, n_dlt


def tally_key(history: Sequence[Cohort]) -> Hashable:
    """Summary of a history that tally-based rules decide on.

    Patients and DLTs pooled per level (all phases), plus the level and phase of the last cohort.
    A rule whose ``decide`` depends on the history only through this key declares
    ``tally_sufficient = True``, which lets :func:`~ckmodel.design.exact_operating_characteristics`
    merge histories with equal keys. The 3+3 qualifies, and so does accelerated titration with
    the ``"dlt"`` trigger (while titrating, every cohort is a titration cohort).

    Parameters
    ----------
    history : sequence of Cohort
        Cohorts treated so far.

    Returns
    -------
    Hashable
        ``(n_per_level, dlt_per_level, last_level, last_phase)`` with the tuples running up to
        the highest level treated; ``None`` parts for an empty history.

    Examples
    --------
    >>> a = [Cohort(0, 3, 1), Cohort(0, 3, 0), Cohort(1, 3, 0)]
    >>> b = [Cohort(0, 3, 0), Cohort(0, 3, 1), Cohort(1, 3, 0)]
    >>> tally_key(a) == tally_key(b), tally_key(a)
    (True, ((6, 3), (1, 0), 1, '3+3'))
    """
    if not history:
        return ((), (), None, None)
    top = max(c.level for c in history) + 1
    n = [0] * top
    d = [0] * top
    for c in history:
        n[c.level] += c.n
        d[c.level] += c.n_dlt
    return (tuple(n), tuple(d), history[-1].level, history[-1].phase)


def next_decision(
    history: Sequence[Cohort],
    rule: EscalationRule,
    *,
    n_levels: int,
    max_patients: int | None = None,
) -> Step:
    """Apply a rule to a trial history and return the next step (pure function).

    Parameters
    ----------
    history : sequence of Cohort
        Cohorts treated so far, in enrolment order (empty before the first patient).
    rule : EscalationRule
        The design, e.g. :class:`~ckmodel.design.ThreePlusThree` or
        :class:`~ckmodel.design.AcceleratedTitration`.
    n_levels : int
        Number of dose levels in the grid (levels ``0 .. n_levels - 1``).
    max_patients : int, optional
        Maximum sample size. When the cohort the rule asks for would take the total past it, the
        step becomes ``STOP_MAX_PATIENTS`` (no MTD declared) and its reason names the cohort the
        rule wanted. Default: no cap.

    Returns
    -------
    Step
        Decision, reason and the next cohort (level, size, phase), or the stop and the MTD.

    Raises
    ------
    ValueError
        If the history names a level outside the grid or the rule returns a step outside it.

    Examples
    --------
    >>> from ckmodel.design import ThreePlusThree
    >>> step = next_decision([Cohort(0, 3, 1)], ThreePlusThree(), n_levels=4)
    >>> step.decision, step.next_level, step.cohort_size
    (<Decision.STAY: 'stay'>, 0, 3)
    >>> step.reason
    'level 0: 1/3 DLT -> treat 3 more at level 0 (expand to 6)'
    """
    n_levels = _as_int(n_levels, "n_levels")
    if n_levels < 1:
        raise ValueError(f"n_levels must be >= 1, got {n_levels}")
    for i, cohort in enumerate(history):
        if not isinstance(cohort, Cohort):
            raise TypeError(f"history[{i}] is {type(cohort).__name__}, expected Cohort")
        if cohort.level >= n_levels:
            raise ValueError(f"history[{i}] is at level {cohort.level}; the grid has {n_levels}")
    step = rule.decide(history, n_levels)
    if not isinstance(step, Step):
        raise TypeError(f"{rule!r}.decide returned {type(step).__name__}, expected Step")
    if not step.is_stop and step.next_level >= n_levels:  # type: ignore[operator]
        raise ValueError(f"{rule.name} asked for level {step.next_level} of {n_levels}: {step}")
    if step.mtd is not None and not 0 <= step.mtd < n_levels:
        raise ValueError(f"{rule.name} declared MTD level {step.mtd} of {n_levels}: {step}")
    if max_patients is not None and not step.is_stop:
        treated = sum(c.n for c in history)
        if treated + step.cohort_size > max_patients:
            return Step(
                Decision.STOP_MAX_PATIENTS,
                f"maximum sample size reached ({treated} of {max_patients} treated); the rule "
                f"asked for {step.cohort_size} more at level {step.next_level} ({step.reason}); "
                "no MTD declared",
            )
    return step


def restrict_levels(rec: np.ndarray, last: np.ndarray, last_rate: np.ndarray,
                    target: float) -> np.ndarray:
    """Escalation restrictions of the model-based designs (dfcrm's ``restrict=TRUE``).

    The next level is the recommended one, but at most one above the last cohort's (no
    skipping) and not above it when the last cohort's DLT rate reached the target
    (coherence). Vectorised over trials.
    """
    cap = np.where(last_rate >= target, last, last + 1)
    return np.minimum(rec, cap)


def restricted_step(rec: int, history: Sequence[Cohort], *, target: float, cohort_size: int,
                    max_n: int, phase: str, here: str, why: str) -> Step:
    """The next cohort's step of a model-based design from its recommended level ``rec``.

    Applies :func:`restrict_levels` against the last cohort, names the restriction in the
    reason, and sizes the cohort to what the sample size ``max_n`` leaves.
    """
    last = history[-1]
    rate = last.n_dlt / last.n
    nxt = int(restrict_levels(np.array(rec), np.array(last.level), np.array(rate), target))
    if nxt != rec:
        why += (f", restricted to level {nxt} (" + ("last cohort at or above the target"
                if rate >= target else "no skipping") + ")")
    decision = (Decision.ESCALATE if nxt > last.level else
                Decision.DE_ESCALATE if nxt < last.level else Decision.STAY)
    treated = sum(c.n for c in history)
    size = min(int(cohort_size), int(max_n) - treated)
    return Step(decision, f"{here}; {why} -> level {nxt}", next_level=nxt, cohort_size=size,
                phase=phase)
