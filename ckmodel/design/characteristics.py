"""Operating characteristics of escalation rules: simulated, enumerated, and in closed form.

Three independent routes to the same numbers, so that each checks the others:

- :func:`operating_characteristics` simulates trials with Bernoulli DLTs;
- :func:`exact_operating_characteristics` enumerates every binomial outcome of every cohort the
  rule can ask for (any deterministic rule driven by DLT counts);
- :func:`three_plus_three_mtd_probabilities` is the closed form of :class:`ThreePlusThree`
  (Lin & Shih 2001), built from per-level binomial outcomes without running the rule.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ckmodel.design.records import (
    Cohort,
    Decision,
    EscalationRule,
    Step,
    level_tallies,
    next_decision,
    tally_key,
)
from ckmodel.design.runner import HistoryNode, check_max_patients, check_probs

__all__ = [
    "OperatingCharacteristics",
    "operating_characteristics",
    "exact_operating_characteristics",
    "three_plus_three_escalation_probability",
    "three_plus_three_mtd_probabilities",
]

_STOPS = (Decision.STOP_MTD_FOUND, Decision.STOP_TOO_TOXIC, Decision.STOP_MAX_PATIENTS)


@dataclass(frozen=True)
class OperatingCharacteristics:
    """Operating characteristics of a rule under a true dose-toxicity curve.

    Attributes
    ----------
    rule : str
        ``repr`` of the rule.
    true_dlt_probs : numpy.ndarray
        True DLT probability per level.
    method : str
        ``"simulation"`` or ``"exact"``.
    n_trials : int or None
        Number of simulated trials (``None`` for exact results).
    random_seed : int or None
        Seed of the simulation.
    max_patients : int
        Sample-size cap applied.
    p_select : numpy.ndarray
        Probability that each level is declared the MTD.
    p_no_mtd : float
        Probability of stopping without an MTD (``1 - p_select.sum()``).
    p_stop : dict of str to float
        Probability of each stop decision (keyed by :class:`Decision` value).
    p_treated : numpy.ndarray
        Probability that each level treats at least one patient.
    mean_patients, sd_patients : float
        Mean and standard deviation (between trials) of the number of patients treated.
    mean_dlt, sd_dlt : float
        Mean and standard deviation of the number of DLTs observed.
    mean_patients_per_level, mean_dlt_per_level : numpy.ndarray
        Expected patients treated and DLTs observed at each level.
    """

    rule: str
    true_dlt_probs: np.ndarray
    method: str
    n_trials: int | None
    random_seed: int | None
    max_patients: int
    p_select: np.ndarray
    p_no_mtd: float
    p_stop: dict[str, float]
    p_treated: np.ndarray
    mean_patients: float
    sd_patients: float
    mean_dlt: float
    sd_dlt: float
    mean_patients_per_level: np.ndarray
    mean_dlt_per_level: np.ndarray = field(repr=False)

    def se_select(self) -> np.ndarray:
        """Monte-Carlo standard error of ``p_select`` (zeros for exact results)."""
        if self.n_trials is None:
            return np.zeros_like(self.p_select)
        return np.sqrt(self.p_select * (1 - self.p_select) / self.n_trials)

    def to_frame(self) -> pd.DataFrame:
        """Per-level table; trial-level summaries are in ``attrs``.

        Returns
        -------
        pandas.DataFrame
            Index ``level``; columns ``true_dlt_prob``, ``p_select``, ``p_treated``,
            ``mean_patients``, ``mean_dlt``.
        """
        frame = pd.DataFrame(
            {
                "true_dlt_prob": self.true_dlt_probs,
                "p_select": self.p_select,
                "p_treated": self.p_treated,
                "mean_patients": self.mean_patients_per_level,
                "mean_dlt": self.mean_dlt_per_level,
            },
            index=pd.RangeIndex(len(self.p_select), name="level"),
        )
        frame.attrs.update(
            rule=self.rule,
            method=self.method,
            n_trials=self.n_trials,
            random_seed=self.random_seed,
            max_patients=self.max_patients,
            p_no_mtd=self.p_no_mtd,
            p_stop=dict(self.p_stop),
            mean_patients=self.mean_patients,
            mean_dlt=self.mean_dlt,
        )
        return frame


class _Accumulator:
    """Weighted sums over finished trials (weight = probability, or 1 per simulated trial)."""

    def __init__(self, n_levels: int) -> None:
        self.total = 0.0
        self.select = np.zeros(n_levels)
        self.stop = dict.fromkeys((d.value for d in _STOPS), 0.0)
        self.treated = np.zeros(n_levels)
        self.n_level = np.zeros(n_levels)
        self.d_level = np.zeros(n_levels)
        self.moments = np.zeros(4)  # sum N, N^2, D, D^2

    def add(self, history: Sequence[Cohort], step: Step, weight: float) -> None:
        n, d = level_tallies(history, len(self.select))
        n_tot, d_tot = float(n.sum()), float(d.sum())
        self.total += weight
        if step.mtd is not None:
            self.select[step.mtd] += weight
        self.stop[step.decision.value] += weight
        self.treated += weight * (n > 0)
        self.n_level += weight * n
        self.d_level += weight * d
        self.moments += weight * np.array([n_tot, n_tot**2, d_tot, d_tot**2])

    def result(self, **meta: object) -> OperatingCharacteristics:
        w = self.total
        mean_n, mean_n2, mean_d, mean_d2 = self.moments / w
        p_select = self.select / w
        return OperatingCharacteristics(
            p_select=p_select,
            p_no_mtd=float(max(0.0, 1.0 - p_select.sum())),
            p_stop={k: v / w for k, v in self.stop.items()},
            p_treated=self.treated / w,
            mean_patients=float(mean_n),
            sd_patients=float(np.sqrt(max(0.0, mean_n2 - mean_n**2))),
            mean_dlt=float(mean_d),
            sd_dlt=float(np.sqrt(max(0.0, mean_d2 - mean_d**2))),
            mean_patients_per_level=self.n_level / w,
            mean_dlt_per_level=self.d_level / w,
            **meta,  # type: ignore[arg-type]
        )


def operating_characteristics(
    rule: EscalationRule,
    true_dlt_probs: ArrayLike,
    n_trials: int,
    seed: int | None,
    *,
    max_patients: int | None = None,
) -> OperatingCharacteristics:
    """Operating characteristics of a rule by simulating trials with Bernoulli DLTs.

    Each trial runs as :func:`~ckmodel.design.run_escalation` does with
    :func:`~ckmodel.design.bernoulli_sampler` (the same rule decisions, the number of DLTs of a
    cohort drawn as a binomial count); decisions are cached per distinct history, so the rule runs
    once per history rather than once per trial.

    Parameters
    ----------
    rule : EscalationRule
        The design.
    true_dlt_probs : array_like of float, shape (n_levels,)
        True DLT probability at each level.
    n_trials : int
        Number of simulated trials. Monte-Carlo standard error of a probability ``p`` is
        ``sqrt(p (1 - p) / n_trials)`` (see :meth:`OperatingCharacteristics.se_select`).
    seed : int or None
        Seed for :func:`numpy.random.default_rng`; results are deterministic for a seed.

    Other Parameters
    ----------------
    max_patients : int, optional
        Sample-size cap; default ``rule.max_sample_size(n_levels)``.

    Returns
    -------
    OperatingCharacteristics
        P(select each level), P(no MTD), mean and SD of patients and DLTs, per-level means.

    Examples
    --------
    >>> from ckmodel.design import ThreePlusThree
    >>> oc = operating_characteristics(ThreePlusThree(), [0.05, 0.1, 0.3, 0.5], 2000, seed=1)
    >>> oc.p_select.round(2).tolist(), round(oc.mean_patients, 1)
    ([0.1, 0.5, 0.3, 0.07], 14.8)
    """
    probs = check_probs(true_dlt_probs)
    n_levels = probs.size
    if int(n_trials) != n_trials or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    cap = check_max_patients(rule, n_levels, max_patients)
    rng = np.random.default_rng(seed)
    root = HistoryNode(())
    acc = _Accumulator(n_levels)
    for _ in range(int(n_trials)):
        node = root
        step = node.resolve(rule, n_levels, cap)
        while not step.is_stop:
            n_dlt = int(rng.binomial(step.cohort_size, probs[step.next_level]))
            node = node.child(n_dlt, None)
            step = node.resolve(rule, n_levels, cap)
        acc.add(node.history, step, 1.0)
    return acc.result(
        rule=repr(rule),
        true_dlt_probs=probs,
        method="simulation",
        n_trials=int(n_trials),
        random_seed=seed,
        max_patients=cap,
    )


def _binom_pmf(n: int, p: float) -> np.ndarray:
    """Binomial probabilities of 0..n DLTs (exact zeros at p = 0 and p = 1)."""
    return np.array([math.comb(n, x) * p**x * (1.0 - p) ** (n - x) for x in range(n + 1)])


def exact_operating_characteristics(
    rule: EscalationRule,
    true_dlt_probs: ArrayLike,
    *,
    max_patients: int | None = None,
) -> OperatingCharacteristics:
    """Exact operating characteristics by enumerating every cohort outcome.

    Walks the tree of histories: at each one the rule asks for ``s`` patients at level ``k`` and
    the branch for ``x`` DLTs has probability ``comb(s, x) p[k]^x (1 - p[k])^(s - x)``; stops
    are leaves.
    Works for any deterministic rule whose decisions depend on DLT counts only (not on toxicity
    grades). Histories are processed in order of patients treated; when the rule declares
    ``tally_sufficient = True`` (its decision depends on the history only through
    :func:`~ckmodel.design.tally_key`: patients and DLTs per level and phase, and the last
    cohort's level and phase), histories with the same key are merged, which keeps the 3+3 and
    the accelerated titration polynomial in the number of levels. Other rules get the full
    tree, which grows exponentially with the sample size.

    Parameters
    ----------
    rule : EscalationRule
        The design.
    true_dlt_probs : array_like of float, shape (n_levels,)
        True DLT probability at each level.

    Other Parameters
    ----------------
    max_patients : int, optional
        Sample-size cap; default ``rule.max_sample_size(n_levels)``.

    Returns
    -------
    OperatingCharacteristics
        With ``method="exact"`` and ``n_trials=None``.

    Examples
    --------
    >>> from ckmodel.design import ThreePlusThree
    >>> oc = exact_operating_characteristics(ThreePlusThree(), [0.1, 0.3])
    >>> oc.p_treated[1].round(4)  # P(escalate past level 0) = (1-p)^3 + 3p(1-p)^5 at p = 0.1
    np.float64(0.9061)
    """
    probs = check_probs(true_dlt_probs)
    n_levels = probs.size
    cap = check_max_patients(rule, n_levels, max_patients)
    acc = _Accumulator(n_levels)
    merge = bool(getattr(rule, "tally_sufficient", False))
    # buckets[t]: histories with t patients treated, keyed by tally_key (merged) or by identity
    buckets: list[dict[Hashable, tuple[tuple[Cohort, ...], float]]] = [{} for _ in range(cap + 1)]
    buckets[0][()] = ((), 1.0)
    pmfs: dict[tuple[int, int], np.ndarray] = {}
    for treated in range(cap + 1):
        for history, weight in buckets[treated].values():
            step = next_decision(history, rule, n_levels=n_levels, max_patients=cap)
            if step.is_stop:
                acc.add(history, step, weight)
                continue
            size, level, phase = step.cohort_size, step.next_level, step.phase
            assert level is not None and phase is not None
            pmf = pmfs.get((size, level))
            if pmf is None:
                pmf = pmfs[(size, level)] = _binom_pmf(size, float(probs[level]))
            bucket = buckets[treated + size]
            for n_dlt in np.flatnonzero(pmf > 0):
                child = (*history, Cohort(level, size, int(n_dlt), phase=phase))
                key = tally_key(child) if merge else child
                w = weight * float(pmf[n_dlt])
                if key in bucket:
                    bucket[key] = (bucket[key][0], bucket[key][1] + w)
                else:
                    bucket[key] = (child, w)
        buckets[treated] = {}
    return acc.result(
        rule=repr(rule),
        true_dlt_probs=probs,
        method="exact",
        n_trials=None,
        random_seed=None,
        max_patients=cap,
    )


def three_plus_three_escalation_probability(p: ArrayLike) -> np.ndarray:
    """Probability that the 3+3 escalates past a level with true DLT probability ``p``.

    ``(1 - p)^3 + 3 p (1 - p)^2 (1 - p)^3``: 0/3 DLT, or 1/3 then 0/3.

    Parameters
    ----------
    p : array_like of float
        True DLT probability, in [0, 1].

    Returns
    -------
    numpy.ndarray
        Same shape as ``p``.

    Examples
    --------
    >>> three_plus_three_escalation_probability([0.1, 0.2, 0.3, 0.4, 0.5]).round(2).tolist()
    [0.91, 0.71, 0.49, 0.31, 0.17]
    """
    p = np.asarray(p, dtype=float)
    q = 1.0 - p
    return q**3 + 3 * p * q**2 * q**3


def three_plus_three_mtd_probabilities(
    true_dlt_probs: ArrayLike,
    *,
    six_at_mtd: bool = True,
    six_at_top: bool = False,
) -> np.ndarray:
    """Exact probability that :class:`ThreePlusThree` declares each level the MTD (closed form).

    Per level ``k`` with ``q = 1 - p_k`` (first visit, escalating): cleared at 0/3 with
    ``A3 = q^3``, cleared at 1/6 with ``A6 = 3 p q^2 q^3``, too toxic with
    ``T = 1 - A3 - A6``; a level cleared at 0/3 and re-opened (de-escalation with
    ``six_at_mtd``, or the top level with ``six_at_top``) passes its 3 extra patients with
    ``C = q^3 + 3 p q^2``. With ``E_i = A3_i + A6_i``, ``S_k = A6_k + A3_k c_k`` and
    ``F_i = A3_i (1 - c_i)`` (``c = C`` when six are required, else 1)::

        P(MTD = k) = prod_{i<k} E_i * S_k * sum_{j>k} prod_{k<i<j} F_i * T_j
                     [+ prod_{i<K-1} E_i * S_{K-1}  when k = K-1, top level cleared]

    where ``j`` is the level at which escalation met toxicity, and for ``j = K-1`` ``T_j``
    includes the top level failing its expansion (``six_at_top``). Requires ``start_level=0``.

    Parameters
    ----------
    true_dlt_probs : array_like of float, shape (n_levels,)
        True DLT probability at each level.
    six_at_mtd, six_at_top : bool
        As in :class:`ThreePlusThree`.

    Returns
    -------
    numpy.ndarray, shape (n_levels,)
        P(MTD = level); ``1 - sum`` is the probability of stopping with no MTD.

    References
    ----------
    .. [1] Lin Y, Shih WJ. Statistical properties of the traditional algorithm-based designs for
       phase I cancer clinical trials. Biostatistics 2001;2:203-215.

    Examples
    --------
    >>> three_plus_three_mtd_probabilities([0.0, 1.0]).tolist()
    [1.0, 0.0]
    """
    p = check_probs(true_dlt_probs)
    q = 1.0 - p
    a3 = q**3
    a6 = 3 * p * q**2 * q**3
    cleared = a3 + a6
    toxic = 1.0 - cleared
    confirm = q**3 + 3 * p * q**2
    c_mtd = confirm if six_at_mtd else np.ones_like(p)
    settle = a6 + a3 * c_mtd
    fail = a3 * (1.0 - c_mtd)
    n_levels = p.size
    top = n_levels - 1
    c_top = confirm[top] if six_at_top else 1.0
    toxic = toxic.copy()
    toxic[top] += a3[top] * (1.0 - c_top)
    reach = np.concatenate(([1.0], np.cumprod(cleared)[:-1]))  # P(levels below k cleared)
    out = np.zeros(n_levels)
    for k in range(n_levels):
        through = 1.0  # prod_{k<i<j} F_i
        total = 0.0
        for j in range(k + 1, n_levels):
            total += through * toxic[j]
            through *= fail[j]
        out[k] = reach[k] * settle[k] * total
    out[top] += reach[top] * (a6[top] + a3[top] * c_top)
    return out
