"""CK-guided dose escalation: the DLT model is a function of each patient's exposure.

Rule-based and dose-based designs (3+3, BOIN, CRM) learn toxicity per dose level; in CAR-T
the same dose gives exposures (Cmax, AUC0-28d) that differ tenfold between patients, and
toxicity follows exposure. Here each patient's exposure informs the next dose:

- **toxicity model**: ``logit P(DLT_i) = a + b (log E_i - c)``, with ``E_i`` the patient's
  exposure (e.g. model-based Cmax from the CK fit), ``c`` the median log exposure at the
  middle level, priors ``a ~ Normal(logit(prior_p), prior_sd^2)`` and
  ``log b ~ Normal(slope_mean, slope_sd^2)`` (a positive slope: more exposure, more toxicity);
- **dose -> exposure**: the CK posterior maps each dose level to a distribution of exposure in
  new patients (:class:`ExposureModel`, from virtual patients of a fit), so the population DLT
  rate at level ``k`` under ``(a, b)`` is ``T_k(a, b) = E_{E | k}[expit(a + b (log E - c))]``;
- **posterior** of ``(a, b)`` on a fixed grid (``n_grid`` points of each; the rates ``T`` are
  tabulated once per design), updated patient by patient;
- **decision**: the level whose posterior mean rate is closest to the target among the levels
  with ``P(T_k > target | data) <= overdose_limit`` (EWOC-style overdose control; the lowest
  level always allowed), never more than one level above the last cohort's and not above it
  when the last cohort's DLT rate reached the target (as the CRM here); stop for safety when
  ``P(T_0 > target | data) > safety_stop``; after ``max_n`` patients the MTD is the
  recommended level.

The nearest published idea is the PK-guided family of dfpk (e.g. PKLOGIT, Ursino et al. 2017),
where a PK summary enters the dose-toxicity model; here the exposure model is the hierarchical
CK posterior itself.

Simulation (:meth:`CKGuided.simulate_batch`) keeps the package's one-uniform-per-patient
contract: from patient ``j``'s uniform ``u``, ``floor(u S)`` picks an exposure among the ``S``
samples of its level and the fractional part ``frac(u S)`` (again uniform, independent of the
pick) decides the DLT against the true ``p(E)``. The truth is ``logit p(E) = alpha_k +
simulation_slope (log E - c)`` with ``alpha_k`` set so that each level's marginal DLT rate is
exactly the scenario's, so the CK design and the other designs meet the same scenario.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
from scipy import special

from ckmodel.design.batch import StopCode, TrialBatch
from ckmodel.design.records import (
    Cohort,
    Decision,
    Step,
    level_tallies,
    restrict_levels,
    restricted_step,
)

__all__ = ["CKGuided", "ExposureModel", "PHASE_CK"]

PHASE_CK = "CK"


@numba.njit(cache=True, parallel=True)
def _add_patients(ll: np.ndarray, rows: np.ndarray, x: np.ndarray, y: np.ndarray,
                  a: np.ndarray, b: np.ndarray) -> None:
    """``ll[rows[i]] += log p(y_i | a + b x_i)`` on the grid (numerically stable log-expit).

    ``rows`` are distinct (one patient per trial per call), so trials run in threads.
    """
    for i in numba.prange(rows.size):
        r = rows[i]
        for g in range(a.size):
            eta = a[g] + b[g] * x[i]
            z = eta if y[i] == 1 else -eta  # log expit(z)
            ll[r, g] += -np.log1p(np.exp(-z)) if z > 0 else z - np.log1p(np.exp(z))


@dataclass(frozen=True, eq=False)
class ExposureModel:
    """Distribution of exposure in new patients at each dose level (samples of log exposure).

    Parameters
    ----------
    doses : sequence of float
        Dose of each level (model amount unit), increasing.
    log_exposure : array, shape (n_levels, n_samples)
        Samples of log exposure per level (posterior predictive: draws x patients pooled).
    metric : str
        What the exposure is (e.g. ``PB_QPCR_CMAX``).
    unit : str
        Its unit.
    """

    doses: tuple[float, ...]
    log_exposure: np.ndarray
    metric: str = "exposure"
    unit: str = ""

    def __post_init__(self) -> None:
        d = tuple(float(x) for x in self.doses)
        le = np.asarray(self.log_exposure, dtype=float)
        if le.ndim != 2 or le.shape[0] != len(d) or le.shape[1] < 1:
            raise ValueError(f"log_exposure must be (n_levels={len(d)}, n_samples), got "
                             f"{le.shape}")
        if not np.all(np.isfinite(le)):
            raise ValueError("log_exposure must be finite (exposures > 0)")
        if any(b <= a for a, b in zip(d, d[1:], strict=False)) or not all(x > 0 for x in d):
            raise ValueError(f"doses must be positive and increasing, got {d}")
        object.__setattr__(self, "doses", d)
        object.__setattr__(self, "log_exposure", le)

    @property
    def n_levels(self) -> int:
        """Number of dose levels."""
        return len(self.doses)

    @property
    def reference(self) -> float:
        """Centring ``c``: median log exposure at the middle level."""
        return float(np.median(self.log_exposure[(self.n_levels - 1) // 2]))

    @classmethod
    def from_patients(cls, patients: Any, variable: str, *, max_samples: int = 4000
                      ) -> ExposureModel:
        """From virtual patients (:func:`ckmodel.virtual_patients.simulate_patients`).

        Posterior draws and patients are pooled per dose (the posterior predictive of a new
        patient's exposure); at most ``max_samples`` evenly spaced values are kept.
        """
        if variable not in patients:
            have = [v for v in patients.data_vars if patients[v].dims[:1] == ("dose",)]
            raise ValueError(f"no exposure {variable!r} among the virtual patients "
                             f"({', '.join(map(str, have))})")
        v = patients[variable].transpose("dose", ...).values.reshape(patients.sizes["dose"], -1)
        if np.any(~(v > 0)):
            raise ValueError(f"{variable} has values <= 0 or missing: a log-exposure model "
                             "needs positive exposures")
        keep = np.unique(np.linspace(0, v.shape[1] - 1, min(max_samples, v.shape[1]))
                         .round().astype(int))
        return cls(tuple(float(x) for x in patients["dose"].values), np.log(v[:, keep]),
                   metric=variable, unit=str(patients[variable].attrs.get("unit", "")))

    @classmethod
    def lognormal(cls, doses: Sequence[float], *, median: float = 1.0, sd: float = 0.8,
                  power: float = 1.0, n_samples: int = 2000) -> ExposureModel:
        """Log-normal exposure ``median * (dose / dose_1)^power``, log-scale SD ``sd``.

        Samples are the normal quantiles at ``(i + 0.5) / n_samples`` (deterministic); for
        designs without a fit, or tests.
        """
        d = np.asarray(doses, dtype=float)
        z = special.ndtri((np.arange(n_samples) + 0.5) / n_samples)
        le = np.log(median) + power * np.log(d / d[0])[:, None] + sd * z[None, :]
        return cls(tuple(d.tolist()), le, metric="exposure")


@dataclass(frozen=True, eq=False)
class CKGuided:
    """CK-guided escalation rule (``decide(history, n_levels)``); see the module docstring.

    Parameters
    ----------
    exposure : ExposureModel
        Dose -> exposure in new patients; fixes the number of levels.
    target : float
        Target DLT rate.
    cohort_size, max_n : int
        Patients per cohort and sample size.
    overdose_limit : float or None
        Admissible levels have ``P(T_k > target | data)`` at most this (0.25, as EWOC: the
        design then aims below the target, trading P(correct selection) for fewer patients
        above the MTD); None: closest to the target, as the CRM without overdose control.
    safety_stop : float or None
        Stop without an MTD when ``P(T_0 > target | data)`` exceeds this.

    Other Parameters
    ----------------
    prior_p : float, optional
        Prior median DLT probability of a patient at the reference exposure ``c``
        (default the target).
    prior_sd : float
        Prior SD of the intercept (logit scale).
    slope_mean, slope_sd : float
        Prior of ``log b`` (default: ``b`` median 1, i.e. odds x e per e-fold exposure).
    n_grid : int
        Grid points for each of ``a`` and ``log b`` (+-4 prior SDs).
    simulation_slope : float
        Simulation truth only: log odds of DLT per log exposure within a level.
    start_level : int
    """

    exposure: ExposureModel = field(repr=False)
    target: float = 0.3
    cohort_size: int = 3
    max_n: int = 30
    overdose_limit: float | None = 0.25
    safety_stop: float | None = 0.9
    prior_p: float | None = None
    prior_sd: float = 1.5
    slope_mean: float = 0.0
    slope_sd: float = 0.7
    n_grid: int = 41
    simulation_slope: float = 1.0
    start_level: int = 0
    _a: np.ndarray = field(init=False, repr=False)
    _b: np.ndarray = field(init=False, repr=False)
    _log_prior: np.ndarray = field(init=False, repr=False)
    _rates: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.target < 1:
            raise ValueError(f"target must lie in (0, 1), got {self.target}")
        for name in ("cohort_size", "max_n", "n_grid"):
            v = getattr(self, name)
            if int(v) != v or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v}")
        if self.overdose_limit is not None and not 0 < self.overdose_limit < 1:
            raise ValueError(f"overdose_limit must lie in (0, 1), got {self.overdose_limit}")
        if self.safety_stop is not None and not 0 < self.safety_stop < 1:
            raise ValueError(f"safety_stop must lie in (0, 1), got {self.safety_stop}")
        if not (self.prior_sd > 0 and self.slope_sd > 0):
            raise ValueError("prior_sd and slope_sd must be positive")
        if not 0 <= self.start_level < self.exposure.n_levels:
            raise ValueError(f"start_level {self.start_level} is outside the "
                             f"{self.exposure.n_levels} levels")
        p0 = self.target if self.prior_p is None else self.prior_p
        if not 0 < p0 < 1:
            raise ValueError(f"prior_p must lie in (0, 1), got {p0}")
        z = np.linspace(-4.0, 4.0, int(self.n_grid))
        za, zb = np.meshgrid(z, z, indexing="ij")
        a = special.logit(p0) + self.prior_sd * za.ravel()
        b = np.exp(self.slope_mean + self.slope_sd * zb.ravel())
        object.__setattr__(self, "_a", a)
        object.__setattr__(self, "_b", b)
        object.__setattr__(self, "_log_prior", -0.5 * (za.ravel() ** 2 + zb.ravel() ** 2))
        x = self.exposure.log_exposure - self.exposure.reference  # (K, S)
        rates = np.empty((a.size, x.shape[0]))
        for k in range(x.shape[0]):
            rates[:, k] = special.expit(a[:, None] + b[:, None] * x[k][None, :]).mean(axis=1)
        object.__setattr__(self, "_rates", rates)

    @property
    def name(self) -> str:
        """Short label of the design."""
        return "CK"

    @property
    def tally_sufficient(self) -> bool:
        """False: decisions read each patient's exposure, beyond the tallies."""
        return False

    def max_sample_size(self, n_levels: int) -> int:
        """The design's sample size ``max_n``."""
        return int(self.max_n)

    # --- posterior --------------------------------------------------------------------------
    def log_likelihood(self, log_exposure: np.ndarray, dlt: np.ndarray) -> np.ndarray:
        """Log likelihood on the grid of patients ``(..., n)`` -> ``(..., G)``."""
        x = np.asarray(log_exposure, float)[..., None, :] - self.exposure.reference
        eta = self._a[:, None] + self._b[:, None] * x  # (..., G, n)
        y = np.asarray(dlt, float)[..., None, :]
        return (y * special.log_expit(eta) + (1 - y) * special.log_expit(-eta)).sum(-1)

    def rates(self, log_lik: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean rate ``E[T_k]`` and ``P(T_k > target)`` per level, ``(..., K)``."""
        lp = self._log_prior + np.asarray(log_lik, float)
        w = np.exp(lp - lp.max(axis=-1, keepdims=True))
        w /= w.sum(axis=-1, keepdims=True)
        return w @ self._rates, w @ (self._rates > self.target).astype(float)

    def recommend(self, mean: np.ndarray, p_over: np.ndarray) -> np.ndarray:
        """Level closest to the target among the admissible ones; ``-1`` for a safety stop."""
        dist = np.abs(mean - self.target)
        if self.overdose_limit is not None:
            ok = p_over <= self.overdose_limit
            ok[..., 0] = True
            dist = np.where(ok, dist, np.inf)
        best = np.argmin(dist, axis=-1)
        if self.safety_stop is not None:
            best = np.where(p_over[..., 0] > self.safety_stop, -1, best)
        return best

    def posterior_table(self, history: Sequence[Cohort]) -> tuple[np.ndarray, np.ndarray]:
        """``E[T_k]`` and ``P(T_k > target)`` on a history (patients with exposures)."""
        x, y = self._patients(history)
        ll = self.log_likelihood(x, y) if x.size else np.zeros(self._a.size)
        return self.rates(ll)

    def _patients(self, history: Sequence[Cohort]) -> tuple[np.ndarray, np.ndarray]:
        xs: list[float] = []
        ys: list[int] = []
        for i, c in enumerate(history):
            if c.exposures is None:
                raise ValueError(f"cohort {i + 1} (level {c.level}) has no exposures: the "
                                 "CK-guided design needs each patient's exposure")
            dl = c.dlts if c.dlts is not None else (
                (1,) * c.n if c.n_dlt == c.n else (0,) * c.n if c.n_dlt == 0 else None)
            if dl is None:
                raise ValueError(f"cohort {i + 1} (level {c.level}) has {c.n_dlt} DLT(s) in "
                                 f"{c.n} patients but not which: give each patient's DLT")
            xs += [float(np.log(e)) for e in c.exposures]
            ys += list(dl)
        return np.asarray(xs), np.asarray(ys, dtype=float)

    def decide(self, history: Sequence[Cohort], n_levels: int) -> Step:
        """Next step on a history whose cohorts carry each patient's exposure and DLT."""
        if n_levels != self.exposure.n_levels:
            raise ValueError(f"the exposure model has {self.exposure.n_levels} levels, not "
                             f"{n_levels}")
        if not history:
            return Step(Decision.START, f"CK: start at level {self.start_level}",
                        next_level=self.start_level,
                        cohort_size=min(self.cohort_size, self.max_n), phase=PHASE_CK)
        n, _ = level_tallies(history, n_levels)
        mean, p_over = self.posterior_table(history)
        rec = int(self.recommend(mean, p_over))
        treated = int(n.sum())
        here = "CK: P_DLT = [" + ", ".join(f"{p:.3f}" for p in mean) + "]"
        if rec < 0:
            return Step(Decision.STOP_TOO_TOXIC, f"{here}; P(rate > {self.target:g} | data) "
                        f"at level 0 is {p_over[0]:.3f} > {self.safety_stop:g} -> stop, no MTD")
        if treated >= self.max_n:
            return Step(Decision.STOP_MTD_FOUND, f"{here}; maximum sample size {self.max_n} "
                        f"reached -> MTD = level {rec}", mtd=rec)
        why = f"closest to {self.target:g}" + (
            "" if self.overdose_limit is None else
            f" with P(rate > target) <= {self.overdose_limit:g}") + f": level {rec}"
        return restricted_step(rec, history, target=self.target, cohort_size=self.cohort_size,
                               max_n=self.max_n, phase=PHASE_CK, here=here, why=why)

    # --- simulation -------------------------------------------------------------------------
    def true_intercepts(self, probs: np.ndarray) -> np.ndarray:
        """``alpha_k`` giving each level's marginal DLT rate ``probs[k]`` (bisection)."""
        x = self.exposure.log_exposure - self.exposure.reference
        lo, hi = np.full(x.shape[0], -60.0), np.full(x.shape[0], 60.0)
        for _ in range(100):
            mid = (lo + hi) / 2
            rate = special.expit(mid[:, None] + self.simulation_slope * x).mean(axis=1)
            lo, hi = np.where(rate < probs, mid, lo), np.where(rate < probs, hi, mid)
        return (lo + hi) / 2

    def patient_outcomes(self, level: np.ndarray, u: np.ndarray, alpha: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Log exposure and DLT (0/1) of patients at ``level`` with uniforms ``u``."""
        le = self.exposure.log_exposure
        s = le.shape[1]
        pick = np.minimum((u * s).astype(np.int64), s - 1)
        frac = u * s - pick
        x = le[level, pick]
        p = special.expit(alpha[level] + self.simulation_slope * (x - self.exposure.reference))
        return x, (frac < p).astype(np.int64)

    def simulate_batch(self, probs: np.ndarray, uniforms: np.ndarray) -> TrialBatch:
        """Vectorised trials (the same as :meth:`decide` walked patient by patient)."""
        probs = np.asarray(probs, float)
        n_trials, n_levels = uniforms.shape[0], probs.size
        if n_levels != self.exposure.n_levels:
            raise ValueError(f"the exposure model has {self.exposure.n_levels} levels, not "
                             f"{n_levels}")
        cap = int(self.max_n)
        alpha = self.true_intercepts(probs)
        rows = np.arange(n_trials)
        n = np.zeros((n_trials, n_levels), dtype=np.int64)
        y = np.zeros_like(n)
        ll = np.zeros((n_trials, self._a.size))
        d = np.full(n_trials, self.start_level)
        pos = np.zeros(n_trials, dtype=np.int64)
        cohorts = np.zeros(n_trials, dtype=np.int64)
        stop = np.full(n_trials, -1)
        mtd = np.full(n_trials, -1, dtype=np.int64)
        active = np.ones(n_trials, dtype=bool)
        while active.any():
            t = rows[active]
            dt = d[t]
            size = np.minimum(self.cohort_size, cap - pos[t])
            dlt = np.zeros(t.size, dtype=np.int64)
            for j in range(int(size.max())):
                on = j < size
                tj = t[on]
                x, yj = self.patient_outcomes(dt[on], uniforms[tj, pos[tj] + j], alpha)
                _add_patients(ll, tj, x - self.exposure.reference, yj, self._a, self._b)
                dlt[on] += yj
            pos[t] += size
            cohorts[t] += 1
            n[t, dt] += size
            y[t, dt] += dlt
            mean, p_over = self.rates(ll[t])
            rec = self.recommend(mean, p_over)
            none = rec < 0
            full = ~none & (pos[t] >= cap)
            stop[t[none]] = StopCode.TOO_TOXIC
            stop[t[full]] = StopCode.MTD_FOUND
            mtd[t[full]] = rec[full]
            d[t] = restrict_levels(rec, dt, dlt / size, self.target)
            active[t[none | full]] = False
        return TrialBatch(n, y, mtd, cohorts, stop)
