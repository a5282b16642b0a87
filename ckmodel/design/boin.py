"""The Bayesian optimal interval (BOIN) design of Liu & Yuan (2015).

The decision at the current dose compares its observed DLT rate with two fixed boundaries
derived from the target: escalate when ``y / n <= lambda_e``, de-escalate when
``y / n >= lambda_d``, otherwise stay. A dose (and every dose above it) is eliminated when
``P(p > target | y, n) > 0.95`` under a Beta(1, 1) prior with at least 3 patients treated; the
trial stops without an MTD when the lowest dose is eliminated. At the end the MTD is the
admissible dose whose isotonic (pool-adjacent-violators) estimate of the DLT rate is closest to
the target. Counts, cutoffs, stopping and selection follow the reference implementation (the
BOIN R package's ``get.boundary``, ``get.oc`` and ``select.mtd``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from ckmodel.design.batch import StopCode, TrialBatch, cumulative_dlts
from ckmodel.design.records import Cohort, Decision, Step, level_tallies

__all__ = [
    "BOIN",
    "BoinBoundaries",
    "boin_boundaries",
    "boin_boundary_table",
    "boin_select_mtd",
    "pava",
]

PHASE_BOIN = "BOIN"


def boin_boundaries(
    target: float, *, phi1: float | None = None, phi2: float | None = None
) -> tuple[float, float]:
    """Escalation and de-escalation boundaries ``(lambda_e, lambda_d)`` of BOIN (closed form).

    ``lambda_e = log((1 - phi1) / (1 - phi)) / log(phi (1 - phi1) / (phi1 (1 - phi)))`` and
    ``lambda_d = log((1 - phi) / (1 - phi2)) / log(phi2 (1 - phi) / (phi (1 - phi2)))``,
    which minimise the probability of a wrong escalation decision (Liu & Yuan 2015, eq. 2).

    Parameters
    ----------
    target : float
        Target DLT rate ``phi``, in (0, 1).
    phi1, phi2 : float, optional
        Highest DLT rate deemed sub-therapeutic and lowest deemed overly toxic; defaults
        ``0.6 * target`` and ``1.4 * target``.

    Returns
    -------
    lambda_e, lambda_d : float

    Examples
    --------
    >>> [round(b, 3) for b in boin_boundaries(0.3)]
    [0.236, 0.359]
    """
    phi = float(target)
    phi1 = 0.6 * phi if phi1 is None else float(phi1)
    phi2 = 1.4 * phi if phi2 is None else float(phi2)
    if not 0 < phi1 < phi < phi2 < 1:
        raise ValueError(f"need 0 < phi1 < target < phi2 < 1, got {phi1}, {phi}, {phi2}")
    lam_e = math.log((1 - phi1) / (1 - phi)) / math.log(phi * (1 - phi1) / (phi1 * (1 - phi)))
    lam_d = math.log((1 - phi) / (1 - phi2)) / math.log(phi2 * (1 - phi) / (phi * (1 - phi2)))
    return lam_e, lam_d


@dataclass(frozen=True)
class BoinBoundaries:
    """BOIN decision table by number of patients ``n = 1 .. max_n`` at the current dose.

    Attributes
    ----------
    target, lambda_e, lambda_d, cutoff_eli : float
        Target, rate boundaries and elimination cutoff.
    n : numpy.ndarray of int
        ``1 .. max_n``.
    escalate : numpy.ndarray of int
        Escalate when the DLT count is ``<= escalate[n - 1]`` (``floor(lambda_e n)``).
    deescalate : numpy.ndarray of int
        De-escalate when the count is ``>= deescalate[n - 1]`` (``ceil(lambda_d n)``, lowered
        to the elimination count when that is smaller).
    eliminate : numpy.ndarray of int
        Eliminate the dose and those above when the count is ``>= eliminate[n - 1]``, the
        smallest count with ``P(p > target | data) > cutoff_eli`` under Beta(1, 1); ``n + 1``
        (never) below 3 patients or when no count qualifies.
    """

    target: float
    lambda_e: float
    lambda_d: float
    cutoff_eli: float
    n: np.ndarray
    escalate: np.ndarray
    deescalate: np.ndarray
    eliminate: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        """The table as printed by the reference package (``NaN`` where no elimination)."""
        elim = np.where(self.eliminate > self.n, np.nan, self.eliminate)
        return pd.DataFrame(
            {"N": self.n, "ESCALATE_IF_DLT_LE": self.escalate,
             "DEESCALATE_IF_DLT_GE": self.deescalate, "ELIMINATE_IF_DLT_GE": elim}
        )


def boin_boundary_table(
    target: float,
    max_n: int,
    *,
    phi1: float | None = None,
    phi2: float | None = None,
    cutoff_eli: float = 0.95,
) -> BoinBoundaries:
    """Decision counts of BOIN for 1 .. ``max_n`` patients at a dose.

    Parameters
    ----------
    target : float
        Target DLT rate.
    max_n : int
        Largest number of patients at one dose to tabulate.

    Other Parameters
    ----------------
    phi1, phi2 : float, optional
        As in :func:`boin_boundaries`.
    cutoff_eli : float
        Posterior probability of exceeding the target above which a dose is eliminated.

    Returns
    -------
    BoinBoundaries

    Examples
    --------
    >>> tab = boin_boundary_table(0.3, 12)
    >>> tab.escalate.tolist()[2::3], tab.deescalate.tolist()[2::3], tab.eliminate.tolist()[2::3]
    ([0, 1, 2, 2], [2, 3, 4, 5], [3, 4, 5, 7])
    """
    if int(max_n) != max_n or max_n < 1:
        raise ValueError(f"max_n must be a positive integer, got {max_n!r}")
    if not 0 < cutoff_eli < 1:
        raise ValueError(f"cutoff_eli must lie in (0, 1), got {cutoff_eli}")
    lam_e, lam_d = boin_boundaries(target, phi1=phi1, phi2=phi2)
    n = np.arange(1, int(max_n) + 1)
    escalate = np.floor(lam_e * n).astype(np.int64)
    deescalate = np.ceil(lam_d * n).astype(np.int64)
    eliminate = n + 1
    for i, m in enumerate(n):
        if m < 3:
            continue
        y = np.arange(1, m + 1)
        over = np.flatnonzero(stats.beta.sf(target, y + 1, m - y + 1) > cutoff_eli)
        if over.size:
            eliminate[i] = y[over[0]]
    deescalate = np.minimum(deescalate, eliminate)
    return BoinBoundaries(float(target), lam_e, lam_d, float(cutoff_eli), n, escalate,
                          deescalate, eliminate)


def pava(x: ArrayLike, w: ArrayLike | None = None) -> np.ndarray:
    """Weighted isotonic (non-decreasing) regression by pool-adjacent-violators.

    Parameters
    ----------
    x : array_like of float
        Values in dose order.
    w : array_like of float, optional
        Positive weights; default 1.

    Returns
    -------
    numpy.ndarray
        The non-decreasing sequence closest to ``x`` in weighted least squares.

    Examples
    --------
    >>> pava([0.1, 0.4, 0.2, 0.5]).tolist()
    [0.1, 0.30000000000000004, 0.30000000000000004, 0.5]
    """
    x = np.asarray(x, dtype=float)
    w = np.ones_like(x) if w is None else np.asarray(w, dtype=float)
    values: list[float] = []
    weights: list[float] = []
    counts: list[int] = []
    for xi, wi in zip(x.tolist(), w.tolist(), strict=True):
        values.append(xi)
        weights.append(wi)
        counts.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            v, wt, c = values.pop(), weights.pop(), counts.pop()
            total = weights[-1] + wt
            values[-1] = (values[-1] * weights[-1] + v * wt) / total
            weights[-1] = total
            counts[-1] += c
    return np.repeat(values, counts)


def _eliminated_from(n: np.ndarray, y: np.ndarray, table: BoinBoundaries) -> int:
    """Lowest eliminated level (``len(n)`` when none): ``n >= 3`` and ``y`` at its cutoff."""
    for k in range(n.size):
        if n[k] >= 3 and y[k] >= table.eliminate[min(n[k], table.n.size) - 1]:
            return k
    return n.size


def boin_select_mtd(
    n: ArrayLike,
    y: ArrayLike,
    target: float,
    *,
    cutoff_eli: float = 0.95,
    table: BoinBoundaries | None = None,
) -> int | None:
    """MTD at the end of a BOIN trial, as the reference ``select.mtd``.

    Doses are eliminated from the lowest with ``n >= 3`` and ``P(p > target | data) >
    cutoff_eli`` (Beta(1, 1) prior) upwards. Among treated, non-eliminated doses the rates
    ``(y + 0.05) / (n + 0.1)`` are made non-decreasing by :func:`pava` weighted by the inverse
    of their Beta(y + 0.05, n - y + 0.05) variance; the dose closest to the target is chosen.
    Ties go to the highest dose when the estimates are below the target and to the lowest when
    above (a 1e-10 per-level offset, as in the reference).

    Parameters
    ----------
    n, y : array_like of int, shape (n_levels,)
        Patients treated and DLTs at each level.
    target : float
        Target DLT rate.

    Other Parameters
    ----------------
    cutoff_eli : float
        Elimination cutoff.
    table : BoinBoundaries, optional
        A decision table covering ``max(n)`` patients for the same target and cutoff: its
        elimination counts replace the Beta tail probabilities (the same decisions, faster).

    Returns
    -------
    int or None
        0-based level, or ``None`` when the lowest dose is eliminated or no admissible dose
        was treated.

    Examples
    --------
    >>> boin_select_mtd([3, 3, 15, 9, 0], [0, 0, 4, 4, 0], 0.3)
    2
    """
    n = np.asarray(n, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    if table is not None and n.max(initial=0) <= table.n.size:
        elim = _eliminated_from(n, y, table)
    else:
        elim = n.size
        for k in range(n.size):
            if n[k] >= 3 and stats.beta.sf(target, y[k] + 1, n[k] - y[k] + 1) > cutoff_eli:
                elim = k
                break
    admissible = np.flatnonzero(n[:elim] > 0)
    if elim == 0 or admissible.size == 0:
        return None
    na, ya = n[admissible].astype(float), y[admissible].astype(float)
    phat = (ya + 0.05) / (na + 0.1)
    var = (ya + 0.05) * (na - ya + 0.05) / ((na + 0.1) ** 2 * (na + 1.1))
    phat = pava(phat, 1.0 / var) + np.arange(1, phat.size + 1) * 1e-10
    return int(admissible[np.argmin(np.abs(phat - target))])


@dataclass(frozen=True)
class BOIN:
    """The BOIN design as an escalation rule (``decide(history, n_levels)``).

    After each cohort, at the current dose with ``y`` DLTs in ``n`` patients (all cohorts
    there pooled), using :func:`boin_boundary_table`:

    - the lowest dose is eliminated (``y >=`` elimination count, ``n >= 3``): stop, no MTD;
    - ``max_n`` patients treated: stop and select the MTD with :func:`boin_select_mtd`;
    - ``n >= n_earlystop`` and the rule would stay (or would move to a dose it cannot reach):
      stop and select the MTD;
    - ``y <= floor(lambda_e n)``: escalate, unless at the top dose or the next dose is
      eliminated (then stay);
    - ``y >= deescalation count``: de-escalate one level (stay at the lowest dose);
    - otherwise stay.

    The last cohort is shortened to reach ``max_n`` exactly.

    Parameters
    ----------
    target : float
        Target DLT rate.
    cohort_size : int
        Patients per cohort.
    max_n : int
        Maximum sample size.

    Other Parameters
    ----------------
    phi1, phi2 : float, optional
        See :func:`boin_boundaries` (defaults 0.6 and 1.4 times the target).
    cutoff_eli : float
        Elimination cutoff (0.95).
    n_earlystop : int, optional
        Stop once this many patients are at the current dose (off by default, as the
        reference's 100).
    start_level : int
        Level of the first cohort.

    References
    ----------
    .. [1] Liu S, Yuan Y. Bayesian optimal interval designs for phase I clinical trials.
       J R Stat Soc Ser C 2015;64:507-523.
    .. [2] Yan F, Zhang L, Zhou Y, Pan H, Liu S, Yuan Y. BOIN: an R package for designing
       single-agent and drug-combination dose-finding trials using Bayesian optimal interval
       designs. J Stat Softw 2020;94(13):1-32.

    Examples
    --------
    >>> from ckmodel.design import Cohort, next_decision
    >>> rule = BOIN(target=0.3)
    >>> next_decision([Cohort(0, 3, 0), Cohort(1, 3, 1)], rule, n_levels=5).decision
    <Decision.STAY: 'stay'>
    >>> next_decision([Cohort(0, 3, 0), Cohort(1, 3, 2)], rule, n_levels=5).next_level
    0
    """

    target: float = 0.3
    cohort_size: int = 3
    max_n: int = 30
    phi1: float | None = None
    phi2: float | None = None
    cutoff_eli: float = 0.95
    n_earlystop: int | None = None
    start_level: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.target < 1:
            raise ValueError(f"target must lie in (0, 1), got {self.target}")
        if int(self.cohort_size) != self.cohort_size or self.cohort_size < 1:
            raise ValueError(f"cohort_size must be a positive integer, got {self.cohort_size}")
        if int(self.max_n) != self.max_n or self.max_n < 1:
            raise ValueError(f"max_n must be a positive integer, got {self.max_n}")
        if self.n_earlystop is not None and self.n_earlystop < 1:
            raise ValueError(f"n_earlystop must be a positive integer, got {self.n_earlystop}")
        if self.start_level < 0:
            raise ValueError(f"start_level must be >= 0, got {self.start_level}")
        _ = self.table  # check phi1, phi2, cutoff_eli now

    @property
    def name(self) -> str:
        """Short label of the design."""
        return "BOIN"

    @property
    def tally_sufficient(self) -> bool:
        """Decisions depend on the per-level tallies and the last level only."""
        return True

    def max_sample_size(self, n_levels: int) -> int:
        """The design's sample size ``max_n``."""
        return int(self.max_n)

    @cached_property
    def table(self) -> BoinBoundaries:
        """Decision counts for 1 .. ``max_n`` patients at a dose."""
        return boin_boundary_table(self.target, self.max_n, phi1=self.phi1, phi2=self.phi2,
                                   cutoff_eli=self.cutoff_eli)

    def select_mtd(self, n: ArrayLike, y: ArrayLike) -> int | None:
        """MTD on the tallies (:func:`boin_select_mtd`)."""
        return boin_select_mtd(n, y, self.target, cutoff_eli=self.cutoff_eli,
                               table=self.table)

    def lowest_eliminated(self, n: ArrayLike, y: ArrayLike) -> int:
        """Lowest eliminated level on the tallies (the number of levels when none is)."""
        return _eliminated_from(np.asarray(n), np.asarray(y), self.table)

    def _cohort(self, decision: Decision, level: int, treated: int, reason: str) -> Step:
        size = min(int(self.cohort_size), int(self.max_n) - treated)
        return Step(decision, reason, next_level=level, cohort_size=size, phase=PHASE_BOIN)

    def _select(self, n: np.ndarray, y: np.ndarray, why: str) -> Step:
        mtd = self.select_mtd(n, y)
        if mtd is None:
            return Step(Decision.STOP_TOO_TOXIC, f"{why}; no admissible dose -> no MTD")
        return Step(Decision.STOP_MTD_FOUND, f"{why} -> MTD = level {mtd} (isotonic estimate "
                    "closest to the target)", mtd=mtd)

    def decide(self, history: Sequence[Cohort], n_levels: int) -> Step:
        """Next step of BOIN on a history; see the class docstring."""
        if not history:
            if self.start_level >= n_levels:
                raise ValueError(f"start_level {self.start_level} is outside {n_levels} levels")
            return self._cohort(Decision.START, self.start_level, 0,
                                f"BOIN: start at level {self.start_level}")
        tab = self.table
        n, y = level_tallies(history, n_levels)
        treated = int(n.sum())
        d = history[-1].level
        nd, yd = int(n[d]), int(y[d])
        m = min(nd, tab.n.size) - 1
        esc, dee = int(tab.escalate[m]), int(tab.deescalate[m])
        here = f"BOIN: level {d}: {yd}/{nd} DLT"
        elim = _eliminated_from(n, y, tab)
        if elim == 0:
            return Step(Decision.STOP_TOO_TOXIC, f"{here}; level 0 eliminated (P(p > "
                        f"{self.target:g} | data) > {self.cutoff_eli:g}) -> stop, no MTD")
        if treated >= self.max_n:
            return self._select(n, y, f"{here}; maximum sample size {self.max_n} reached")
        top = min(n_levels, elim) - 1
        if self.n_earlystop is not None and nd >= self.n_earlystop and (
            esc < yd < dee or (d == 0 and yd >= dee) or (d >= top and yd <= esc)
        ):
            return self._select(n, y, f"{here}; {nd} >= n_earlystop={self.n_earlystop} "
                                "patients at the current dose")
        if d > top:
            return self._cohort(Decision.DE_ESCALATE, top, treated,
                                f"{here}; level {elim} and above eliminated (P(p > "
                                f"{self.target:g} | data) > {self.cutoff_eli:g}) -> "
                                f"de-escalate to level {top}")
        if yd <= esc:
            if d < top:
                return self._cohort(Decision.ESCALATE, d + 1, treated,
                                    f"{here} <= {esc} (lambda_e = {tab.lambda_e:.3f}) -> "
                                    f"escalate to level {d + 1}")
            why = "top level" if d + 1 >= n_levels else f"level {d + 1} eliminated"
            return self._cohort(Decision.STAY, d, treated,
                                f"{here} <= {esc} but {why} -> stay at level {d}")
        if yd >= dee and d > 0:
            return self._cohort(Decision.DE_ESCALATE, d - 1, treated,
                                f"{here} >= {dee} (lambda_d = {tab.lambda_d:.3f}) -> "
                                f"de-escalate to level {d - 1}")
        return self._cohort(Decision.STAY, d, treated, f"{here} within ({esc}, {dee}) -> "
                            f"stay at level {d}" if yd < dee else
                            f"{here} >= {dee} at the lowest level -> stay at level 0")

    def simulate_batch(self, probs: np.ndarray, uniforms: np.ndarray) -> TrialBatch:
        """Vectorised simulation of trials (same trials as the rule walked one by one).

        Parameters
        ----------
        probs : numpy.ndarray, shape (n_levels,)
            True DLT probability per level.
        uniforms : numpy.ndarray, shape (n_trials, >= max_n)
            One uniform number per patient (see :mod:`ckmodel.design.batch`).

        Returns
        -------
        TrialBatch
        """
        n_trials, n_levels = uniforms.shape[0], probs.size
        if self.start_level >= n_levels:
            raise ValueError(f"start_level {self.start_level} is outside {n_levels} levels")
        tab, cap = self.table, int(self.max_n)
        cum = cumulative_dlts(uniforms[:, :cap], probs)
        rows = np.arange(n_trials)
        n = np.zeros((n_trials, n_levels), dtype=np.int64)
        y = np.zeros_like(n)
        elim = np.full(n_trials, n_levels)  # lowest eliminated level
        d = np.full(n_trials, self.start_level)
        pos = np.zeros(n_trials, dtype=np.int64)
        cohorts = np.zeros(n_trials, dtype=np.int64)
        stop = np.full(n_trials, -1)
        active = np.ones(n_trials, dtype=bool)
        esc_t = np.concatenate(([0], tab.escalate))
        dee_t = np.concatenate(([1], tab.deescalate))
        eli_t = np.concatenate(([1], tab.eliminate))
        while active.any():
            t = rows[active]
            dt = d[t]
            size = np.minimum(self.cohort_size, cap - pos[t])
            dlt = cum[t, pos[t] + size, dt] - cum[t, pos[t], dt]
            pos[t] += size
            cohorts[t] += 1
            n[t, dt] += size
            y[t, dt] += dlt
            nd, yd = n[t, dt], y[t, dt]
            newly = (nd >= 3) & (yd >= eli_t[nd])
            elim[t] = np.where(newly, np.minimum(elim[t], dt), elim[t])
            et = elim[t]
            too_toxic = et == 0
            full = ~too_toxic & (pos[t] >= cap)
            top = np.minimum(n_levels, et) - 1
            esc, dee = esc_t[nd], dee_t[nd]
            early = np.zeros_like(full)
            if self.n_earlystop is not None:
                early = (~too_toxic & ~full & (nd >= self.n_earlystop)
                         & (((yd > esc) & (yd < dee)) | ((dt == 0) & (yd >= dee))
                            | ((dt >= top) & (yd <= esc))))
            nxt = np.where((yd <= esc) & (dt < top), dt + 1,
                           np.where((yd >= dee) & (dt > 0), dt - 1, dt))
            d[t] = np.minimum(nxt, top)
            stop[t[too_toxic]] = StopCode.TOO_TOXIC
            done = too_toxic | full | early
            stop[t[~too_toxic & done]] = StopCode.MTD_FOUND
            active[t[done]] = False
        mtd = np.full(n_trials, -1, dtype=np.int64)
        cache: dict[bytes, int | None] = {}
        for i in np.flatnonzero(stop == StopCode.MTD_FOUND):
            key = n[i].tobytes() + y[i].tobytes()
            if key not in cache:
                cache[key] = self.select_mtd(n[i], y[i])
            mtd[i] = -1 if cache[key] is None else cache[key]
        stop[(stop == StopCode.MTD_FOUND) & (mtd < 0)] = StopCode.TOO_TOXIC
        return TrialBatch(n, y, mtd, cohorts, stop)
