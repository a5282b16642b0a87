"""Run one dose-escalation trial: a rule plus a DLT sampler, patient by patient."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ckmodel.design.records import Cohort, Decision, EscalationRule, Step, next_decision

__all__ = ["DltSampler", "EscalationResult", "HistoryNode", "bernoulli_sampler",
           "check_max_patients", "check_probs", "run_escalation"]

DltSampler = Callable[[int, int, np.random.Generator], Any]
"""``dlt_sampler(level, n, rng)`` -> 0/1 array of length ``n`` (DLT per patient), or a pair
``(dlt, grade)`` of such arrays where ``grade`` is each patient's worst toxicity grade (0-5)."""

PATIENT_COLUMNS = (
    "patient",
    "cohort",
    "phase",
    "level",
    "dlt",
    "grade",
    "decision",
    "next_level",
    "reason",
)


class HistoryNode:
    """One history in the tree of possible trials, with the step the rule takes on it.

    Children are keyed by the outcome of the next cohort, ``(n_dlt, grades)``: the cohort's
    level, size and phase are fixed by this node's step. Sharing the tree between simulated
    trials evaluates the rule once per distinct history.
    """

    __slots__ = ("history", "step", "children")

    def __init__(self, history: tuple[Cohort, ...]) -> None:
        self.history = history
        self.step: Step | None = None
        self.children: dict[tuple[int, tuple[int, ...] | None], HistoryNode] = {}

    def resolve(self, rule: EscalationRule, n_levels: int, max_patients: int | None) -> Step:
        """The rule's step on this history (evaluated once, then kept)."""
        if self.step is None:
            self.step = next_decision(
                self.history, rule, n_levels=n_levels, max_patients=max_patients
            )
        return self.step

    def child(self, n_dlt: int, grades: tuple[int, ...] | None) -> HistoryNode:
        """The history after the next cohort has ``n_dlt`` DLTs (and these grades)."""
        key = (n_dlt, grades)
        node = self.children.get(key)
        if node is None:
            step = self.step
            assert step is not None and not step.is_stop
            level, size, phase = step.next_level, step.cohort_size, step.phase
            assert level is not None and phase is not None
            cohort = Cohort(level, size, n_dlt, phase=phase, grades=grades)
            node = self.children[key] = HistoryNode((*self.history, cohort))
        return node


def check_max_patients(rule: EscalationRule, n_levels: int, max_patients: int | None) -> int:
    """The sample-size cap: ``max_patients`` checked, else the rule's own bound."""
    if max_patients is None:
        return int(rule.max_sample_size(n_levels))
    if int(max_patients) != max_patients or max_patients < 0:
        raise ValueError(f"max_patients must be a non-negative integer, got {max_patients!r}")
    return int(max_patients)


def _draw(
    sampler: DltSampler, level: int, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Call a user sampler and validate its output."""
    out = sampler(level, n, rng)
    grade = None
    if isinstance(out, tuple):
        if len(out) != 2:
            raise ValueError("dlt_sampler must return a 0/1 array or a pair (dlt, grade)")
        out, grade = out
    dlt = np.asarray(out)
    if dlt.shape != (n,) or not np.isin(dlt, (0, 1)).all():
        raise ValueError(
            f"dlt_sampler(level={level}, n={n}) must return {n} values in {{0, 1}}, got {dlt!r}"
        )
    dlt = dlt.astype(np.int64)
    if grade is not None:
        grade = np.asarray(grade)
        if grade.shape != (n,) or not np.isin(grade, np.arange(6)).all():
            raise ValueError(f"dlt_sampler grades must be {n} integers in 0..5, got {grade!r}")
        grade = grade.astype(np.int64)
    return dlt, grade


def bernoulli_sampler(true_dlt_probs: ArrayLike) -> DltSampler:
    """DLT sampler with a fixed true DLT probability per level, independent between patients.

    Parameters
    ----------
    true_dlt_probs : array_like of float, shape (n_levels,)
        True probability of a DLT at each level, in [0, 1].

    Returns
    -------
    callable
        ``sampler(level, n, rng)`` returning ``n`` draws of 0/1.

    Examples
    --------
    >>> import numpy as np
    >>> sampler = bernoulli_sampler([0.0, 1.0])
    >>> sampler(1, 3, np.random.default_rng(0)).tolist()
    [1, 1, 1]
    """
    probs = check_probs(true_dlt_probs)

    def sampler(level: int, n: int, rng: np.random.Generator) -> np.ndarray:
        return (rng.random(n) < probs[level]).astype(np.int64)

    return sampler


def check_probs(true_dlt_probs: ArrayLike) -> np.ndarray:
    """True DLT probabilities as a 1-D float array in [0, 1], or a clear ValueError."""
    probs = np.asarray(true_dlt_probs, dtype=float)
    if probs.ndim != 1 or probs.size < 1:
        raise ValueError("true_dlt_probs must be a 1-D array with one probability per level")
    if not np.all((probs >= 0) & (probs <= 1)):
        raise ValueError(f"true_dlt_probs must lie in [0, 1], got {probs.tolist()}")
    return probs


@dataclass(frozen=True)
class EscalationResult:
    """Outcome of one dose-escalation trial.

    Attributes
    ----------
    patients : pandas.DataFrame
        One row per patient in enrolment order: ``patient`` and ``cohort`` (1-based counters),
        ``phase`` (``"ATD"`` / ``"3+3"``), ``level`` (0-based dose level), ``dlt`` (0/1),
        ``grade`` (worst toxicity grade, ``<NA>`` unless the sampler returns grades),
        ``decision`` (the :class:`Decision` value taken after the patient's cohort),
        ``next_level`` (level of the next cohort, ``<NA>`` at the stop) and ``reason``.
    mtd : int or None
        Declared MTD level, ``None`` when the trial stopped without one.
    stop : Decision
        The final decision (``STOP_MTD_FOUND``, ``STOP_TOO_TOXIC`` or ``STOP_MAX_PATIENTS``).
    stop_reason : str
        Why the trial stopped.
    cohorts : tuple of Cohort
        The history the decisions were taken on.
    steps : tuple of Step
        ``steps[0]`` is the start; ``steps[i + 1]`` the step after ``cohorts[i]``.
    """

    patients: pd.DataFrame
    mtd: int | None
    stop: Decision
    stop_reason: str
    cohorts: tuple[Cohort, ...]
    steps: tuple[Step, ...]

    @property
    def n_patients(self) -> int:
        """Number of patients treated."""
        return len(self.patients)

    @property
    def n_dlt(self) -> int:
        """Number of DLTs observed."""
        return int(self.patients["dlt"].sum())


def run_escalation(
    rule: EscalationRule,
    dlt_sampler: DltSampler,
    n_levels: int,
    max_patients: int | None,
    rng: np.random.Generator | int | None = None,
) -> EscalationResult:
    """Simulate (or replay) one dose-escalation trial under a rule.

    The rule asks for a cohort (level, size, phase); the sampler returns the DLT of each patient;
    the rule decides again on the updated history, until it stops or the next cohort would take
    the total past ``max_patients``.

    Parameters
    ----------
    rule : EscalationRule
        The design, e.g. ``AcceleratedTitration(then=ThreePlusThree())``.
    dlt_sampler : callable
        ``dlt_sampler(level, n, rng)`` returning ``n`` values in {0, 1} (DLT in the DLT window
        of each new patient treated at ``level``), or a pair ``(dlt, grade)`` adding each
        patient's worst toxicity grade (0-5) for grade-based titration triggers. It can derive
        DLTs from simulated exposure; it must draw randomness only from ``rng``.
    n_levels : int
        Number of dose levels (levels ``0 .. n_levels - 1``).
    max_patients : int or None
        Maximum sample size; a cohort that would exceed it is not started and the trial stops
        with ``STOP_MAX_PATIENTS`` (no MTD). ``None`` uses ``rule.max_sample_size(n_levels)``.
    rng : numpy.random.Generator or int or None
        Random generator, or a seed for :func:`numpy.random.default_rng`. The trial is
        deterministic for a given seed.

    Returns
    -------
    EscalationResult
        Patient table, declared MTD (or ``None``), the stop decision and its reason. The seed,
        when an int was given, is recorded in ``patients.attrs["random_seed"]``.

    Examples
    --------
    >>> from ckmodel.design import ThreePlusThree, bernoulli_sampler
    >>> res = run_escalation(ThreePlusThree(), bernoulli_sampler([0.0, 0.0, 1.0]), 3, 18, rng=1)
    >>> res.mtd, res.stop.value, res.n_patients
    (1, 'stop_mtd_found', 12)
    >>> res.patients.groupby("cohort")["decision"].first().tolist()
    ['escalate', 'escalate', 'de_escalate', 'stop_mtd_found']
    """
    n_levels = int(n_levels)
    cap = check_max_patients(rule, n_levels, max_patients)
    seed = rng if isinstance(rng, int | np.integer) else None
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    node = HistoryNode(())
    step = node.resolve(rule, n_levels, cap)
    dlts: list[np.ndarray] = []
    grades: list[np.ndarray | None] = []
    steps = [step]
    while not step.is_stop:
        dlt, grade = _draw(dlt_sampler, step.next_level, step.cohort_size, gen)  # type: ignore[arg-type]
        dlts.append(dlt)
        grades.append(grade)
        key = None if grade is None else tuple(int(g) for g in grade)
        node = node.child(int(dlt.sum()), key)
        step = node.resolve(rule, n_levels, cap)
        steps.append(step)

    frame = _patient_frame(node.history, steps, dlts, grades)
    if seed is not None:
        frame.attrs["random_seed"] = int(seed)
    frame.attrs["rule"] = repr(rule)
    return EscalationResult(
        patients=frame,
        mtd=step.mtd,
        stop=step.decision,
        stop_reason=step.reason,
        cohorts=node.history,
        steps=tuple(steps),
    )


def _patient_frame(
    cohorts: Sequence[Cohort],
    steps: Sequence[Step],
    dlts: Sequence[np.ndarray],
    grades: Sequence[np.ndarray | None],
) -> pd.DataFrame:
    rows = []
    patient = 0
    for i, (cohort, dlt, grade) in enumerate(zip(cohorts, dlts, grades, strict=True)):
        after = steps[i + 1]
        for j in range(cohort.n):
            patient += 1
            rows.append(
                (
                    patient,
                    i + 1,
                    cohort.phase,
                    cohort.level,
                    int(dlt[j]),
                    None if grade is None else int(grade[j]),
                    after.decision.value,
                    after.next_level,
                    after.reason,
                )
            )
    frame = pd.DataFrame.from_records(rows, columns=list(PATIENT_COLUMNS))
    for col in ("patient", "cohort", "level", "dlt"):
        frame[col] = frame[col].astype(np.int64)
    for col in ("grade", "next_level"):
        frame[col] = frame[col].astype("Int64")
    return frame
