"""Operating characteristics of any design by simulation, on one core or through Dask.

Trials are simulated in chunks of fixed size. Chunk ``i`` draws its patients' uniform numbers
from ``numpy.random.SeedSequence(seed).spawn(n_chunks)[i]``, so the chunking, and hence every
simulated trial, depends only on ``seed``, ``n_trials`` and ``chunk_size``, never on how many
workers run the chunks: one worker and a cluster give identical results. BOIN and the CRM run
vectorised over the trials of a chunk; other rules (3+3, accelerated titration) walk their rule
object trial by trial with a decision cache (:func:`~ckmodel.design.batch.simulate_rule_batch`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ckmodel.design.batch import StopCode, TrialBatch, simulate_rule_batch
from ckmodel.design.records import EscalationRule
from ckmodel.design.runner import check_max_patients, check_probs
from ckmodel.errors import DatasetError, Problem
from ckmodel.parallel import dask_client, map_tasks

__all__ = ["DesignSimulation", "compare_designs", "read_scenarios", "simulate_design",
           "true_mtd"]

DEFAULT_CHUNK = 1000


@dataclass(frozen=True)
class DesignSimulation:
    """Simulated trials of one design under one true dose-toxicity curve.

    Attributes
    ----------
    design : str
        ``repr`` of the rule.
    true_dlt_probs : numpy.ndarray
        True DLT probability per level.
    trials : TrialBatch
        Per-trial patients and DLTs per level, selected level, cohorts, stop code.
    seed : int or None
        Seed of the simulation.
    chunk_size : int
        Trials per chunk (each chunk has its own spawned seed).
    """

    design: str
    true_dlt_probs: np.ndarray
    trials: TrialBatch
    seed: int | None
    chunk_size: int

    @property
    def n_trials(self) -> int:
        """Number of simulated trials."""
        return int(self.trials.mtd.size)

    @property
    def p_select(self) -> np.ndarray:
        """P(select each level) (0-based levels)."""
        k = self.true_dlt_probs.size
        return np.bincount(self.trials.mtd[self.trials.mtd >= 0], minlength=k) / self.n_trials

    @property
    def p_none(self) -> float:
        """P(no dose selected)."""
        return float(np.mean(self.trials.mtd < 0))

    def se(self, p: ArrayLike) -> np.ndarray:
        """Monte-Carlo standard error of a probability estimated from these trials."""
        p = np.asarray(p, dtype=float)
        return np.sqrt(p * (1 - p) / self.n_trials)

    def summary(self, target: float | None = None, *, cohort_interval: float = 28.0
                ) -> dict[str, float]:
        """Trial-level summaries.

        Parameters
        ----------
        target : float, optional
            Target DLT rate; with it, the true MTD (:func:`true_mtd`), ``P_CORRECT`` and
            ``N_ABOVE_MTD`` (expected patients treated above the true MTD) are added.
        cohort_interval : float
            Days between cohorts (the DLT window); ``EXPECTED_DURATION`` is
            ``cohorts x cohort_interval`` days.

        Returns
        -------
        dict of str to float
        """
        t = self.trials
        out = {
            "P_NONE": self.p_none,
            "EXPECTED_N": float(t.n.sum(1).mean()),
            "EXPECTED_DLT": float(t.y.sum(1).mean()),
            "EXPECTED_COHORTS": float(t.n_cohorts.mean()),
            "EXPECTED_DURATION": float(t.n_cohorts.mean() * cohort_interval),
            "P_STOP_TOXIC": float(np.mean(t.stop == StopCode.TOO_TOXIC)),
        }
        if target is not None:
            mtd = true_mtd(self.true_dlt_probs, target)
            out["TRUE_MTD"] = mtd + 1
            out["P_CORRECT"] = float(self.p_select[mtd])
            out["N_ABOVE_MTD"] = float(t.n[:, mtd + 1:].sum(1).mean())
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per dose level (1-based ``DOSE_LEVEL``) and a ``DOSE_LEVEL`` 0 row.

        Returns
        -------
        pandas.DataFrame
            ``DOSE_LEVEL, TRUE_P_DLT, P_SELECT, EXPECTED_N, EXPECTED_DLT``. Row 0 is "no dose
            selected": its ``P_SELECT`` is P(no MTD); nobody is treated at it (0 patients, 0
            DLTs) so the columns sum to the expected trial size and DLT count.
        """
        k = self.true_dlt_probs.size
        return pd.DataFrame({
            "DOSE_LEVEL": np.arange(0, k + 1),
            "TRUE_P_DLT": np.concatenate(([np.nan], self.true_dlt_probs)),
            "P_SELECT": np.concatenate(([self.p_none], self.p_select)),
            "EXPECTED_N": np.concatenate(([0.0], self.trials.n.mean(0))),
            "EXPECTED_DLT": np.concatenate(([0.0], self.trials.y.mean(0))),
        })


def true_mtd(true_dlt_probs: ArrayLike, target: float) -> int:
    """The true MTD: the level whose true DLT probability is closest to the target.

    Ties go to the lower level.

    Parameters
    ----------
    true_dlt_probs : array_like of float
        True DLT probability per level.
    target : float
        Target DLT rate.

    Returns
    -------
    int
        0-based level.

    Examples
    --------
    >>> true_mtd([0.05, 0.1, 0.2, 0.35, 0.5], 0.3)
    3
    """
    p = np.asarray(true_dlt_probs, dtype=float)
    return int(np.argmin(np.abs(p - target)))


def _simulate_chunk(rule: EscalationRule, probs: np.ndarray, n_trials: int, cap: int,
                    seed: np.random.SeedSequence) -> TrialBatch:
    """One chunk: its uniforms from its own seed, then the rule's batch simulator."""
    uniforms = np.random.default_rng(seed).random((n_trials, cap))
    batch = getattr(rule, "simulate_batch", None)
    if callable(batch) and cap == rule.max_sample_size(probs.size):
        return batch(probs, uniforms)
    return simulate_rule_batch(rule, probs, uniforms, cap)


def simulate_design(
    rule: EscalationRule,
    true_dlt_probs: ArrayLike,
    n_trials: int,
    *,
    seed: int | None,
    max_patients: int | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    workers: int = 1,
    scheduler: str | None = None,
    client: Any = None,
    processes: bool = True,
) -> DesignSimulation:
    """Simulate trials of a design, optionally on a Dask cluster, reproducibly.

    Parameters
    ----------
    rule : EscalationRule
        The design (``ThreePlusThree()``, ``BOIN(...)``, ``CRM(...)``, ...).
    true_dlt_probs : array_like of float, shape (n_levels,)
        True DLT probability per level.
    n_trials : int
        Number of trials.
    seed : int or None
        Root seed; chunk ``i`` uses ``SeedSequence(seed).spawn(n_chunks)[i]``.

    Other Parameters
    ----------------
    max_patients : int, optional
        Sample-size cap; default the rule's own (``max_n`` for BOIN and CRM, six per level for
        the 3+3).
    chunk_size : int
        Trials per chunk; results depend on it (and on the seed), not on the workers.
    workers : int
        Number of local workers; more than 1 starts a ``dask.distributed.LocalCluster``.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``); overrides ``workers``.
    client : dask.distributed.Client, optional
        An existing client to submit to (overrides both).
    processes : bool
        Whether the local cluster's workers are processes (default) or threads.

    Returns
    -------
    DesignSimulation

    Examples
    --------
    >>> from ckmodel.design import BOIN
    >>> sim = simulate_design(BOIN(target=0.3), [0.05, 0.1, 0.2, 0.35, 0.5], 2000, seed=1)
    >>> sim.p_select.round(2).tolist()
    [0.0, 0.05, 0.39, 0.46, 0.1]
    """
    probs = check_probs(true_dlt_probs)
    if int(n_trials) != n_trials or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    cap = check_max_patients(rule, probs.size, max_patients)
    n_trials, chunk_size = int(n_trials), int(chunk_size)
    n_chunks = math.ceil(n_trials / chunk_size)
    seeds = np.random.SeedSequence(seed).spawn(n_chunks)
    sizes = [min(chunk_size, n_trials - i * chunk_size) for i in range(n_chunks)]
    args = [(rule, probs, size, cap, s) for size, s in zip(sizes, seeds, strict=True)]
    with dask_client(workers=workers, scheduler=scheduler, client=client,
                     processes=processes) as run_on:
        batches = map_tasks(_simulate_chunk, args, run_on)
    return DesignSimulation(repr(rule), probs, TrialBatch.concatenate(batches), seed,
                            chunk_size)


def compare_designs(
    designs: Mapping[str, EscalationRule],
    scenarios: Mapping[str, ArrayLike],
    n_trials: int,
    *,
    seed: int | None,
    target: float,
    cohort_interval: float = 28.0,
    chunk_size: int = DEFAULT_CHUNK,
    workers: int = 1,
    scheduler: str | None = None,
    client: Any = None,
    processes: bool = True,
) -> pd.DataFrame:
    """Several designs side by side on several true dose-toxicity scenarios.

    Every design sees the same simulated patients in a scenario (common random numbers: the
    same seed), which sharpens the comparison. One Dask cluster serves all runs.

    Parameters
    ----------
    designs : mapping of str to EscalationRule
        Label and rule of each design.
    scenarios : mapping of str to array_like
        Name and true DLT probabilities (one per level) of each scenario.
    n_trials : int
        Trials per design and scenario.
    seed : int or None
        Root seed (see :func:`simulate_design`).
    target : float
        Target DLT rate defining the true MTD of each scenario (:func:`true_mtd`).

    Other Parameters
    ----------------
    cohort_interval : float
        Days between cohorts, for ``EXPECTED_DURATION``.
    chunk_size, workers, scheduler, client, processes
        As in :func:`simulate_design`.

    Returns
    -------
    pandas.DataFrame
        One row per scenario and design: ``SCENARIO, DESIGN, TRUE_MTD`` (1-based),
        ``P_CORRECT, P_NONE, N_ABOVE_MTD, EXPECTED_N, EXPECTED_DLT, EXPECTED_COHORTS,
        EXPECTED_DURATION, P_STOP_TOXIC`` and ``P_SELECT_1 .. P_SELECT_K``.
    """
    rows = []
    with dask_client(workers=workers, scheduler=scheduler, client=client,
                     processes=processes) as client:
        for scen, probs in scenarios.items():
            for label, rule in designs.items():
                sim = simulate_design(rule, probs, n_trials, seed=seed, chunk_size=chunk_size,
                                      client=client)
                row: dict[str, Any] = {"SCENARIO": scen, "DESIGN": label}
                summ = sim.summary(target, cohort_interval=cohort_interval)
                row["TRUE_MTD"] = int(summ.pop("TRUE_MTD"))
                row.update({k: summ[k] for k in ("P_CORRECT", "P_NONE", "N_ABOVE_MTD")})
                row.update(summ)
                row.update({f"P_SELECT_{k + 1}": p for k, p in enumerate(sim.p_select)})
                rows.append(row)
    return pd.DataFrame(rows)


def read_scenarios(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read true dose-toxicity scenarios from a CSV file.

    Either one scenario per row (an optional ``SCENARIO`` column names it; the other columns,
    in order, are the dose levels), or, when the file has a ``DOSE_LEVEL`` column, one
    scenario per column (named by its header) with the levels as rows. Probabilities must lie
    in (0, 1) and not decrease with dose.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file.

    Returns
    -------
    dict of str to numpy.ndarray
        Scenario name to true DLT probabilities.

    Raises
    ------
    DatasetError
        Listing every problem with its line and column.
    """
    name = os.fspath(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DatasetError("the file is empty", file=name) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(f"not a readable CSV file: {exc}", file=name) from None
    raw.columns = [str(c).strip() for c in raw.columns]
    by_column = "DOSE_LEVEL" in raw.columns
    problems: list[Problem] = []
    values = raw.drop(columns=[c for c in ("DOSE_LEVEL", "SCENARIO") if c in raw.columns])
    if values.shape[1] == 0 or len(raw) == 0:
        raise DatasetError("no scenario found (one row per scenario: SCENARIO,D1,D2,...; or a "
                           "DOSE_LEVEL column and one column per scenario)", file=name)
    num = np.full(values.shape, np.nan)
    for j, col in enumerate(values.columns):
        for i, text in enumerate(values[col].str.strip()):
            try:
                v = float(text)
            except ValueError:
                v = np.nan
            if not 0 < v < 1:
                problems.append(Problem(f"{text!r} is not a probability in (0, 1)", file=name,
                                        row=i + 2, column=col, rule="bad_value"))
            num[i, j] = v
    if by_column:
        names, curves = list(values.columns), [num[:, j] for j in range(num.shape[1])]
        where = [(None, c) for c in names]
    else:
        labels = raw["SCENARIO"].tolist() if "SCENARIO" in raw.columns else [
            str(i + 1) for i in range(len(raw))]
        names, curves = [str(x) for x in labels], list(num)
        where = [(i + 2, None) for i in range(len(raw))]
    out: dict[str, np.ndarray] = {}
    for scen, curve, (row, col) in zip(names, curves, where, strict=True):
        if scen in out:
            problems.append(Problem(f"scenario {scen!r} is given twice", file=name, row=row,
                                    column=col, rule="duplicate"))
        if np.all(np.isfinite(curve)) and np.any(np.diff(curve) < 0):
            problems.append(Problem(f"scenario {scen!r}: DLT probabilities decrease with dose "
                                    f"({', '.join(f'{v:g}' for v in curve)})", file=name,
                                    row=row, column=col, rule="not_increasing"))
        out[scen] = curve
    if problems:
        raise DatasetError(problems, file=name)
    return out
