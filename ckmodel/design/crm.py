"""The continual reassessment method (CRM) with the empiric (power) model, as in dfcrm.

Model: ``p_k(a) = skeleton_k ** exp(a)`` with ``a ~ Normal(0, prior_sd**2)``. The posterior of
``a`` given ``y_k`` DLTs in ``n_k`` patients per level is one-dimensional and log-concave; it is
integrated by adaptive Gauss-Hermite quadrature (nodes centred on the posterior mode and scaled
by the curvature there, found by Newton's method), vectorised over many data sets at once so
that thousands of simulated trials update together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from ckmodel.design.batch import StopCode, TrialBatch, cumulative_dlts
from ckmodel.design.records import (
    Cohort,
    Decision,
    Step,
    level_tallies,
    restrict_levels,
    restricted_step,
)

__all__ = ["CRM", "CrmPosterior", "DFCRM_PRIOR_SD", "crm_posterior", "crm_skeleton"]

PHASE_CRM = "CRM"

DFCRM_PRIOR_SD = math.sqrt(1.34)
"""Default prior SD of ``a``: dfcrm's ``scale = sqrt(1.34)`` (prior variance 1.34)."""

_GH_X, _GH_W = np.polynomial.hermite.hermgauss(64)
_GH_LOGW = np.log(_GH_W) + _GH_X**2
_GL_X, _GL_W = np.polynomial.legendre.leggauss(64)
_U_MAX = 700.0  # exp overflow guard


@dataclass(frozen=True)
class CrmPosterior:
    """Posterior summaries of the empiric CRM for one or many data sets.

    Attributes
    ----------
    p_mean : numpy.ndarray, shape (..., n_levels)
        Posterior mean of the DLT probability at each level.
    p_plugin : numpy.ndarray, shape (..., n_levels)
        ``skeleton ** exp(E[a])``, dfcrm's ``ptox``.
    a_mean, a_sd : numpy.ndarray, shape (...)
        Posterior mean and SD of ``a``.
    p_overdose : numpy.ndarray, shape (..., n_levels)
        ``P(p_k > target | data)``; ``NaN`` unless a target was given.
    """

    p_mean: np.ndarray
    p_plugin: np.ndarray
    a_mean: np.ndarray
    a_sd: np.ndarray
    p_overdose: np.ndarray = field(repr=False)


def _log_post(a: np.ndarray, c: np.ndarray, n: np.ndarray, y: np.ndarray, var: float
              ) -> np.ndarray:
    """Unnormalised log posterior at ``a`` (..., G) for data (..., K); ``c = log skeleton``."""
    u = np.minimum(-c[..., None, :] * np.exp(a)[..., None], _U_MAX)  # -log p, (..., G, K)
    yk, fk = y[..., None, :], (n - y)[..., None, :]
    with np.errstate(divide="ignore"):
        loglik = -yk * u + fk * np.log(-np.expm1(-u))
    loglik = np.where(fk > 0, loglik, -yk * u)
    return loglik.sum(-1) - a**2 / (2 * var)


def _mode(c: np.ndarray, n: np.ndarray, y: np.ndarray, var: float) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """Posterior mode of ``a`` and the curvature there, by safeguarded Newton steps."""
    a = np.zeros(n.shape[:-1])
    for _ in range(60):
        u = np.minimum(-c * np.exp(a)[..., None], _U_MAX)
        em1 = np.expm1(u)
        g = u / em1  # d/da log(1 - exp(-u)) = u / (e^u - 1)
        h = g * (1.0 - u * (em1 + 1.0) / em1)
        f = n - y
        grad = (-y * u + f * g).sum(-1) - a / var
        hess = (-y * u + f * h).sum(-1) - 1.0 / var
        step = np.clip(-grad / hess, -1.0, 1.0)
        a = a + step
        if np.all(np.abs(step) < 1e-12):
            break
    u = np.minimum(-c * np.exp(a)[..., None], _U_MAX)
    em1 = np.expm1(u)
    g = u / em1
    hess = ((-y * u + (n - y) * g * (1.0 - u * (em1 + 1.0) / em1)).sum(-1) - 1.0 / var)
    return a, hess


def crm_posterior(
    skeleton: ArrayLike,
    n: ArrayLike,
    y: ArrayLike,
    *,
    prior_sd: float = DFCRM_PRIOR_SD,
    target: float | None = None,
) -> CrmPosterior:
    """Posterior of the empiric CRM by adaptive Gauss-Hermite quadrature.

    With ``l(a) = sum_k y_k exp(a) log s_k + (n_k - y_k) log(1 - s_k^exp(a)) - a^2 / (2 sd^2)``
    (concave), the mode ``m`` and ``v = -1 / l''(m)`` place 40 Gauss-Hermite nodes at
    ``m + sqrt(2 v) x_i``; posterior means are weighted sums there. ``P(p_k > target)`` is
    ``P(a < log(log target / log s_k))``, integrated by 64-point Gauss-Legendre over the shorter
    side of the cut, within 12 posterior SDs of the mode.

    Parameters
    ----------
    skeleton : array_like of float, shape (n_levels,)
        Prior guesses of the DLT probability per level, increasing in (0, 1).
    n, y : array_like of int, shape (..., n_levels)
        Patients treated and DLTs per level; leading axes are independent data sets.

    Other Parameters
    ----------------
    prior_sd : float
        Prior SD of ``a`` (default dfcrm's ``sqrt(1.34)``).
    target : float, optional
        Target DLT rate for ``p_overdose``.

    Returns
    -------
    CrmPosterior

    Examples
    --------
    >>> post = crm_posterior([0.05, 0.12, 0.25, 0.4, 0.55], [3, 3, 0, 0, 0], [0, 1, 0, 0, 0])
    >>> post.p_mean.round(3).tolist()
    [0.131, 0.219, 0.351, 0.487, 0.617]
    """
    s = _check_skeleton(skeleton)
    c = np.log(s)
    n = np.asarray(n, dtype=float)
    y = np.asarray(y, dtype=float)
    if n.shape[-1] != s.size or y.shape != n.shape:
        raise ValueError(f"n and y must have shape (..., {s.size}), got {n.shape}, {y.shape}")
    var = float(prior_sd) ** 2
    m, hess = _mode(c, n, y, var)
    scale = np.sqrt(-1.0 / hess)
    nodes = m[..., None] + math.sqrt(2.0) * scale[..., None] * _GH_X  # (..., G)
    lp = _log_post(nodes, c, n, y, var) + _GH_LOGW
    shift = lp.max(-1)
    lp -= shift[..., None]
    w = np.exp(lp)
    w /= w.sum(-1, keepdims=True)
    p_nodes = np.exp(c * np.exp(nodes)[..., None])  # (..., G, K)
    p_mean = np.einsum("...g,...gk->...k", w, p_nodes)
    a_mean = (w * nodes).sum(-1)
    a_sd = np.sqrt(np.maximum((w * (nodes - a_mean[..., None]) ** 2).sum(-1), 0.0))
    p_plugin = np.exp(c * np.exp(a_mean)[..., None])
    p_over = np.full(p_mean.shape, np.nan)
    if target is not None:
        # normaliser: Z = sqrt(2) * scale * sum_i exp(lp_i + shift)
        log_z = np.log(np.exp(lp).sum(-1)) + shift + np.log(math.sqrt(2.0) * scale)
        p_over = _overdose(c, n, y, var, m, scale, log_z, float(target))
    return CrmPosterior(p_mean, p_plugin, a_mean, a_sd, p_over)


def _overdose(c: np.ndarray, n: np.ndarray, y: np.ndarray, var: float, m: np.ndarray,
              scale: np.ndarray, log_z: np.ndarray, target: float) -> np.ndarray:
    """``P(a < cut_k)`` per level: the tail on the mode's far side by Gauss-Legendre, over Z."""
    cut = np.log(np.log(target) / c)  # p_k > target  <=>  a < cut_k
    lo, hi = m - 12 * scale, m + 12 * scale
    out = np.empty(m.shape + (c.size,))
    for k in range(c.size):
        left = cut[k] <= m
        a0 = np.where(left, lo, np.clip(cut[k], lo, hi))
        a1 = np.where(left, np.clip(cut[k], lo, hi), hi)
        half = (a1 - a0) / 2
        pts = (a0 + a1)[..., None] / 2 + half[..., None] * _GL_X
        tail = (np.exp(_log_post(pts, c, n, y, var) - log_z[..., None]) * _GL_W).sum(-1) * half
        tail = np.clip(tail, 0.0, 1.0)
        out[..., k] = np.where(left, tail, 1.0 - tail)
    return out


def _check_skeleton(skeleton: ArrayLike) -> np.ndarray:
    s = np.asarray(skeleton, dtype=float)
    if s.ndim != 1 or s.size < 1:
        raise ValueError("skeleton must be a 1-D array with one probability per level")
    if not np.all((s > 0) & (s < 1)):
        raise ValueError(f"skeleton probabilities must lie in (0, 1), got {s.tolist()}")
    if np.any(np.diff(s) <= 0):
        raise ValueError(f"skeleton must be strictly increasing, got {s.tolist()}")
    return s


@dataclass(frozen=True)
class CRM:
    """The empiric CRM as an escalation rule (``decide(history, n_levels)``).

    The first cohort is treated at ``start_level``. After each cohort the posterior of all data
    gives ``P_DLT`` per level (the posterior mean of ``p_k``, or dfcrm's plug-in
    ``skeleton ** exp(E[a])`` with ``estimate="plugin"``) and the recommended level is the one
    closest to the target (ties to the lower level). As dfcrm's ``restrict=TRUE``, the next
    cohort goes at most one level above the last cohort's (no skipping) and, when the last
    cohort's DLT rate reached the target, not above it (coherence). Optional overdose control
    and safety stop: see :meth:`recommend`. After ``max_n`` patients the MTD is the
    recommended level on all data (without the escalation restrictions).

    Parameters
    ----------
    skeleton : sequence of float
        Prior DLT probability per level, strictly increasing; fixes the number of levels.
    target : float
        Target DLT rate.
    cohort_size : int
        Patients per cohort.
    max_n : int
        Sample size.

    Other Parameters
    ----------------
    prior_sd : float
        Prior SD of ``a`` (dfcrm default ``sqrt(1.34)``).
    estimate : {"mean", "plugin"}
        Posterior mean of ``p_k`` (default) or dfcrm's plug-in estimate.
    overdose_limit : float, optional
        Overdose control: recommend only levels with ``P(p_k > target | data)`` at most this
        (the lowest level is always allowed); ``None`` (default) is dfcrm's CRM.
    safety_stop : float, optional
        Stop without an MTD when ``P(p_0 > target | data)`` exceeds this (e.g. 0.9); ``None``
        (default, as dfcrm) never stops early.
    start_level : int
        Level of the first cohort.

    References
    ----------
    .. [1] O'Quigley J, Pepe M, Fisher L. Continual reassessment method: a practical design for
       phase 1 clinical trials in cancer. Biometrics 1990;46:33-48.
    .. [2] Cheung YK. Dose Finding by the Continual Reassessment Method. Chapman & Hall/CRC,
       2011 (the dfcrm package).

    Examples
    --------
    >>> from ckmodel.design import Cohort, next_decision
    >>> rule = CRM(skeleton=(0.05, 0.12, 0.25, 0.4, 0.55), target=0.25)
    >>> step = next_decision([Cohort(0, 3, 0)], rule, n_levels=5)
    >>> step.decision, step.next_level
    (<Decision.ESCALATE: 'escalate'>, 1)
    """

    skeleton: tuple[float, ...] = (0.05, 0.12, 0.25, 0.4, 0.55)
    target: float = 0.25
    cohort_size: int = 3
    max_n: int = 30
    prior_sd: float = DFCRM_PRIOR_SD
    estimate: Literal["mean", "plugin"] = "mean"
    overdose_limit: float | None = None
    safety_stop: float | None = None
    start_level: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "skeleton", tuple(_check_skeleton(self.skeleton).tolist()))
        if not 0 < self.target < 1:
            raise ValueError(f"target must lie in (0, 1), got {self.target}")
        if int(self.cohort_size) != self.cohort_size or self.cohort_size < 1:
            raise ValueError(f"cohort_size must be a positive integer, got {self.cohort_size}")
        if int(self.max_n) != self.max_n or self.max_n < 1:
            raise ValueError(f"max_n must be a positive integer, got {self.max_n}")
        if not self.prior_sd > 0:
            raise ValueError(f"prior_sd must be positive, got {self.prior_sd}")
        if self.estimate not in ("mean", "plugin"):
            raise ValueError(f"estimate must be 'mean' or 'plugin', got {self.estimate!r}")
        if self.overdose_limit is not None and not 0 < self.overdose_limit < 1:
            raise ValueError(f"overdose_limit must lie in (0, 1), got {self.overdose_limit}")
        if self.safety_stop is not None and not 0 < self.safety_stop < 1:
            raise ValueError(f"safety_stop must lie in (0, 1), got {self.safety_stop}")
        if not 0 <= self.start_level < len(self.skeleton):
            raise ValueError(f"start_level {self.start_level} is outside the skeleton")

    @property
    def name(self) -> str:
        """Short label of the design."""
        return "CRM"

    @property
    def tally_sufficient(self) -> bool:
        """False: coherence reads the last cohort's DLT count, beyond the tally key."""
        return False

    def max_sample_size(self, n_levels: int) -> int:
        """The design's sample size ``max_n``."""
        return int(self.max_n)

    def posterior(self, n: ArrayLike, y: ArrayLike, *, overdose: bool | None = None
                  ) -> CrmPosterior:
        """Posterior on tallies (:func:`crm_posterior` with this design's prior).

        ``P(p_k > target)`` is computed when ``overdose`` is true, or by default when the
        design uses it (``overdose_limit`` or ``safety_stop``).
        """
        if overdose is None:
            overdose = self.overdose_limit is not None or self.safety_stop is not None
        return crm_posterior(self.skeleton, n, y, prior_sd=self.prior_sd,
                             target=self.target if overdose else None)

    def estimates(self, post: CrmPosterior) -> np.ndarray:
        """``P_DLT`` per level used for decisions."""
        return post.p_mean if self.estimate == "mean" else post.p_plugin

    def recommend(self, post: CrmPosterior) -> np.ndarray:
        """Recommended level per data set, ``-1`` for a safety stop.

        The level whose ``P_DLT`` is closest to the target (ties to the lower); with
        ``overdose_limit`` only among levels with ``P(p_k > target) <= overdose_limit`` (the
        lowest level when none qualifies); ``-1`` when ``safety_stop`` is set and
        ``P(p_0 > target) > safety_stop``.
        """
        dist = np.abs(self.estimates(post) - self.target)
        if self.overdose_limit is not None:
            ok = post.p_overdose <= self.overdose_limit
            ok[..., 0] = True
            dist = np.where(ok, dist, np.inf)
        best = np.argmin(dist, axis=-1)
        if self.safety_stop is not None:
            best = np.where(post.p_overdose[..., 0] > self.safety_stop, -1, best)
        return best

    def decide(self, history: Sequence[Cohort], n_levels: int) -> Step:
        """Next step of the CRM on a history; see the class docstring."""
        if n_levels != len(self.skeleton):
            raise ValueError(f"the skeleton has {len(self.skeleton)} levels, not {n_levels}")
        if not history:
            return Step(Decision.START, f"CRM: start at level {self.start_level}",
                        next_level=self.start_level, cohort_size=min(self.cohort_size,
                                                                     self.max_n),
                        phase=PHASE_CRM)
        n, y = level_tallies(history, n_levels)
        post = self.posterior(n, y)
        est = self.estimates(post)
        treated = int(n.sum())
        rec = int(self.recommend(post))
        shown = ", ".join(f"{p:.3f}" for p in est)
        here = f"CRM: P_DLT = [{shown}]"
        if rec < 0:
            return Step(Decision.STOP_TOO_TOXIC, f"{here}; P(p > {self.target:g} | data) at "
                        f"level 0 is {post.p_overdose[0]:.3f} > {self.safety_stop:g} -> stop, "
                        "no MTD")
        if treated >= self.max_n:
            return Step(Decision.STOP_MTD_FOUND, f"{here}; maximum sample size {self.max_n} "
                        f"reached -> MTD = level {rec}", mtd=rec)
        why = f"closest to {self.target:g}: level {rec}"
        return restricted_step(rec, history, target=self.target, cohort_size=self.cohort_size,
                               max_n=self.max_n, phase=PHASE_CRM, here=here, why=why)

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
        if n_levels != len(self.skeleton):
            raise ValueError(f"the skeleton has {len(self.skeleton)} levels, not {n_levels}")
        cap = int(self.max_n)
        cum = cumulative_dlts(uniforms[:, :cap], probs)
        rows = np.arange(n_trials)
        n = np.zeros((n_trials, n_levels), dtype=np.int64)
        y = np.zeros_like(n)
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
            dlt = cum[t, pos[t] + size, dt] - cum[t, pos[t], dt]
            pos[t] += size
            cohorts[t] += 1
            n[t, dt] += size
            y[t, dt] += dlt
            # trials with equal tallies share one posterior
            keys, inverse = np.unique(np.concatenate((n[t], y[t]), axis=1), axis=0,
                                      return_inverse=True)
            k = n_levels
            rec = self.recommend(self.posterior(keys[:, :k], keys[:, k:]))[inverse.ravel()]
            none = rec < 0
            full = ~none & (pos[t] >= cap)
            stop[t[none]] = StopCode.TOO_TOXIC
            stop[t[full]] = StopCode.MTD_FOUND
            mtd[t[full]] = rec[full]
            d[t] = restrict_levels(rec, dt, dlt / size, self.target)
            active[t[none | full]] = False
        return TrialBatch(n, y, mtd, cohorts, stop)


def crm_skeleton(
    target: float, n_levels: int, *, halfwidth: float = 0.05, prior_mtd: int | None = None
) -> np.ndarray:
    """Empiric-model skeleton by indifference intervals (Lee & Cheung 2009; dfcrm ``getprior``).

    The prior MTD gets ``target``; going up, each level is placed so that the model switches
    from one level to the next when the DLT rate crosses ``target -/+ halfwidth``.

    Parameters
    ----------
    target : float
        Target DLT rate.
    n_levels : int
        Number of levels.

    Other Parameters
    ----------------
    halfwidth : float
        Half-width of the indifference interval.
    prior_mtd : int, optional
        0-based level guessed to be the MTD; default the middle level ``(n_levels - 1) // 2``.

    Returns
    -------
    numpy.ndarray, shape (n_levels,)

    Examples
    --------
    >>> crm_skeleton(0.25, 5, prior_mtd=2).round(3).tolist()
    [0.084, 0.157, 0.25, 0.355, 0.46]
    """
    if not 0 < halfwidth < min(target, 1 - target):
        raise ValueError(f"halfwidth must lie in (0, min(target, 1 - target)), got {halfwidth}")
    nu = (int(n_levels) - 1) // 2 if prior_mtd is None else int(prior_mtd)
    if not 0 <= nu < n_levels:
        raise ValueError(f"prior_mtd {prior_mtd} is outside {n_levels} levels")
    s = np.empty(int(n_levels))
    s[nu] = target
    lo, hi = math.log(target - halfwidth), math.log(target + halfwidth)
    for k in range(nu, 0, -1):
        s[k - 1] = math.exp(lo * math.log(s[k]) / hi)
    for k in range(nu, n_levels - 1):
        s[k + 1] = math.exp(hi * math.log(s[k]) / lo)
    return s
