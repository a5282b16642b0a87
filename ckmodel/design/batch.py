"""Batches of simulated trials driven by one uniform number per patient.

Every simulated trial gets a row of uniform numbers ``u[0], u[1], ...``, one per patient in
enrolment order; patient ``j`` treated at level ``k`` has a DLT when ``u[j] < p[k]``. Because
the randomness is attached to patients and not to the order in which a simulator visits trials,
a design's vectorised simulator (BOIN, CRM) and the generic trial-by-trial walk of its rule
object give the same trials from the same numbers, which the tests check, and a batch gives the
same results however it is split between workers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from ckmodel.design.records import Decision, EscalationRule, level_tallies
from ckmodel.design.runner import HistoryNode

__all__ = ["StopCode", "TrialBatch", "cumulative_dlts", "simulate_rule_batch"]


class StopCode(enum.IntEnum):
    """How a simulated trial ended (stored as a small integer per trial)."""

    MTD_FOUND = 0
    TOO_TOXIC = 1
    MAX_PATIENTS = 2

    @classmethod
    def of(cls, decision: Decision) -> StopCode:
        """The code of a stop decision."""
        return {
            Decision.STOP_MTD_FOUND: cls.MTD_FOUND,
            Decision.STOP_TOO_TOXIC: cls.TOO_TOXIC,
            Decision.STOP_MAX_PATIENTS: cls.MAX_PATIENTS,
        }[Decision(decision)]


@dataclass(frozen=True)
class TrialBatch:
    """Outcome of a batch of simulated trials, one row per trial.

    Attributes
    ----------
    n, y : numpy.ndarray of int, shape (n_trials, n_levels)
        Patients treated and DLTs observed at each level.
    mtd : numpy.ndarray of int, shape (n_trials,)
        Selected level (0-based), ``-1`` when the trial selected no dose.
    n_cohorts : numpy.ndarray of int, shape (n_trials,)
        Number of cohorts treated (the trial's duration in cohort intervals).
    stop : numpy.ndarray of int, shape (n_trials,)
        :class:`StopCode` of each trial.
    """

    n: np.ndarray
    y: np.ndarray
    mtd: np.ndarray
    n_cohorts: np.ndarray
    stop: np.ndarray

    @staticmethod
    def concatenate(batches: list[TrialBatch]) -> TrialBatch:
        """Stack batches in order."""
        return TrialBatch(
            *(np.concatenate([getattr(b, f) for b in batches]) for f in TrialBatch.FIELDS)
        )

    FIELDS = ("n", "y", "mtd", "n_cohorts", "stop")


def cumulative_dlts(uniforms: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """DLTs among the first ``j`` patients of each trial were they all treated at level ``k``.

    Parameters
    ----------
    uniforms : numpy.ndarray, shape (n_trials, n_patients)
        One uniform number per patient.
    probs : numpy.ndarray, shape (n_levels,)
        True DLT probability per level.

    Returns
    -------
    numpy.ndarray of int32, shape (n_trials, n_patients + 1, n_levels)
        ``c[t, j, k]``; the DLTs of patients ``a .. b - 1`` at level ``k`` are
        ``c[t, b, k] - c[t, a, k]``.

    Examples
    --------
    >>> c = cumulative_dlts(np.array([[0.1, 0.5, 0.05]]), np.array([0.2, 0.6]))
    >>> c[0].tolist()
    [[0, 0], [1, 1], [1, 2], [2, 3]]
    """
    hits = uniforms[:, :, None] < probs[None, None, :]
    out = np.zeros((uniforms.shape[0], uniforms.shape[1] + 1, probs.size), dtype=np.int32)
    np.cumsum(hits, axis=1, out=out[:, 1:, :])
    return out


def simulate_rule_batch(
    rule: EscalationRule, probs: np.ndarray, uniforms: np.ndarray, max_patients: int
) -> TrialBatch:
    """Run any rule object on a batch of trials, one trial after the other.

    Decisions are cached per distinct history in a tree shared by the batch, so the rule runs
    once per history rather than once per trial.

    Parameters
    ----------
    rule : EscalationRule
        The design.
    probs : numpy.ndarray, shape (n_levels,)
        True DLT probability per level.
    uniforms : numpy.ndarray, shape (n_trials, >= max_patients)
        One uniform number per patient (see the module docstring).
    max_patients : int
        Sample-size cap (:func:`~ckmodel.design.next_decision`).

    Returns
    -------
    TrialBatch
    """
    n_trials, n_levels = uniforms.shape[0], probs.size
    if uniforms.shape[1] < max_patients:
        raise ValueError(f"{uniforms.shape[1]} uniforms per trial for {max_patients} patients")
    cum = cumulative_dlts(uniforms[:, :max_patients], probs).tolist()
    root = HistoryNode(())
    n_out = np.zeros((n_trials, n_levels), dtype=np.int64)
    y_out = np.zeros((n_trials, n_levels), dtype=np.int64)
    mtd = np.full(n_trials, -1, dtype=np.int64)
    cohorts = np.zeros(n_trials, dtype=np.int64)
    stop = np.zeros(n_trials, dtype=np.int64)
    for t in range(n_trials):
        rows = cum[t]
        node, pos = root, 0
        step = node.resolve(rule, n_levels, max_patients)
        while not step.is_stop:
            level, size = step.next_level, step.cohort_size
            n_dlt = rows[pos + size][level] - rows[pos][level]  # type: ignore[index]
            pos += size
            node = node.child(n_dlt, None)
            step = node.resolve(rule, n_levels, max_patients)
        n_out[t], y_out[t] = level_tallies(node.history, n_levels)
        mtd[t] = -1 if step.mtd is None else step.mtd
        cohorts[t] = len(node.history)
        stop[t] = StopCode.of(step.decision)
    return TrialBatch(n_out, y_out, mtd, cohorts, stop)
