"""Normalised prediction distribution errors (NPDE), with BLQ records through their censoring.

For subject ``i`` with observations ``y_i`` (``n_i`` records) and ``K`` simulated replicates
``y_i^(k)`` of its design from the model (new subjects from the posterior:
:func:`ckmodel.diagnostics.virtual.simulate_replicates`), following Brendel et al. (2006) and
Comets, Brendel & Mentré (2008):

1. BLQ records (Nguyen, Comets et al. 2012): a BLQ record ``j`` only says ``y_ij < LLOQ_ij``;
   its prediction discrepancy is imputed as ``pd_ij ~ U(0, p_ij)`` with
   ``p_ij = P(y_ij < LLOQ_ij) = mean_k 1[y_ij^(k) < LLOQ_ij]`` (seeded), and the record is
   replaced by the ``pd_ij`` quantile of its simulated values, so that every record has a
   value;
2. decorrelation: on the analysis scale ``h`` (log for the log-scale error models
   ``log_normal``/``student_t``/``proportional``, identity otherwise),
   ``E_i = mean_k h(y_i^(k))``, ``V_i = cov_k h(y_i^(k))``, ``L_i = chol(V_i)``, and
   ``y*_i = L_i^-1 (h(y_i) - E_i)``, ``y*_i^(k) = L_i^-1 (h(y_i^(k)) - E_i)``;
3. ``pde_ij = mean_k 1[y*_ij^(k) < y*_ij]`` (kept inside ``[1/(2K), 1 - 1/(2K)]``) and
   ``npde_ij = Phi^-1(pde_ij)``.

Under the model, NPDE are independent standard normal. The prediction discrepancy ``pd``
(step 3 without decorrelation, ``U(0, 1)`` under the model) is returned as well. The
simulations are of new subjects, not the fitted individuals' posterior predictive: the latter
has seen each subject's data, so its discrepancies concentrate near 0.5 even for a true model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["npde_arrays", "npde"]

#: Error models whose analysis scale for decorrelation is the log.
LOG_SCALE_ERRORS = ("log_normal", "student_t", "proportional")


def _quantile_sorted(sorted_cols: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The ``q[j]`` quantile of sorted column ``j`` (linear interpolation, type 7)."""
    k = sorted_cols.shape[0]
    pos = np.asarray(q) * (k - 1)
    j0 = np.floor(pos).astype(int)
    j1 = np.minimum(j0 + 1, k - 1)
    w = pos - j0
    cols = np.arange(sorted_cols.shape[1])
    return (1 - w) * sorted_cols[j0, cols] + w * sorted_cols[j1, cols]


def npde_arrays(y: np.ndarray, sims: np.ndarray, subject: np.ndarray, *,
                blq: np.ndarray | None = None, lloq: np.ndarray | None = None,
                log_scale: np.ndarray | bool = True, decorrelate: bool = True,
                rng: np.random.Generator | int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """NPDE and PD of records from simulations of them (the NumPy kernel of :func:`npde`).

    Parameters
    ----------
    y : ndarray, shape (n_records,)
        Observed values (any value for BLQ records; they are imputed).
    sims : ndarray, shape (K, n_records)
        Simulated observations of the same records, uncensored.
    subject : ndarray, shape (n_records,)
        Subject of each record (records of one subject are decorrelated together).

    Other Parameters
    ----------------
    blq : bool ndarray, shape (n_records,), optional
        Below the LLOQ (default none).
    lloq : ndarray, shape (n_records,), optional
        LLOQ of each record (needed for BLQ records).
    log_scale : bool or bool ndarray (n_records,)
        Decorrelate on the log scale (positive data); per record or for all.
    decorrelate : bool
        False gives NPD (the per-record discrepancies, not decorrelated) as ``npde``.
    rng : numpy.random.Generator or int, optional
        Generator (or seed) of the BLQ imputation.

    Returns
    -------
    npde, pd : ndarray, shape (n_records,)
        NPDE (standard normal under the model) and prediction discrepancies (uniform).
    """
    y = np.asarray(y, dtype=float)
    sims = np.asarray(sims, dtype=float)
    if sims.ndim != 2 or sims.shape[1] != y.size:
        raise ValueError(f"sims must have shape (K, {y.size}), got {sims.shape}")
    k = sims.shape[0]
    if k < 2:
        raise ValueError("npde needs at least 2 simulated replicates")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    blq = np.zeros(y.size, bool) if blq is None else np.asarray(blq, bool)
    lo = 0.5 / k
    pd_ = np.clip(np.mean(sims < y[None, :], axis=0), lo, 1 - lo)
    y = y.copy()
    if blq.any() and lloq is None:
        raise ValueError("BLQ records need their LLOQ")
    if lloq is not None:
        lim = np.asarray(lloq, dtype=float)
        cens = np.isfinite(lim)
        cols = np.flatnonzero(cens)
        below = sims[:, cols] < lim[None, cols]
        p = below.mean(axis=0)
        sorted_sims = np.sort(sims[:, cols], axis=0)
        sims = sims.copy()
        # observed BLQ records, then simulated values below their record's LLOQ, get the
        # same imputation, so that observations and replicates stay exchangeable
        obs_blq = blq[cols]
        u = rng.uniform(size=cols.size) * p
        pd_[cols[obs_blq]] = np.clip(u[obs_blq], lo, 1 - lo)
        y[cols[obs_blq]] = _quantile_sorted(sorted_sims[:, obs_blq], pd_[cols[obs_blq]])
        kk, jj = np.nonzero(below)
        u_sim = np.clip(rng.uniform(size=kk.size) * p[jj], lo, 1 - lo)
        sims[kk, cols[jj]] = _quantile_sorted(sorted_sims[:, jj], u_sim)
    if not decorrelate:
        return stats.norm.ppf(pd_), pd_
    log_scale = np.broadcast_to(np.asarray(log_scale, bool), y.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        tiny = np.finfo(float).tiny
        hy = np.where(log_scale, np.log(np.maximum(y, tiny)), y)
        hs = np.where(log_scale[None, :], np.log(np.maximum(sims, tiny)), sims)
    out = np.empty(y.size)
    subject = np.asarray(subject)
    for s in pd.unique(subject):
        m = np.flatnonzero(subject == s)
        e = hs[:, m].mean(axis=0)
        d_sim = hs[:, m] - e
        d_obs = hy[m] - e
        if m.size == 1:
            sd = max(float(np.sqrt(np.mean(d_sim[:, 0] ** 2))), 1e-300)
            ys, ss = d_obs / sd, d_sim / sd
        else:
            v = np.cov(d_sim, rowvar=False)
            jitter = 1e-10 * max(float(np.mean(np.diag(v))), 1e-300)
            for _ in range(6):
                try:
                    chol = np.linalg.cholesky(v + jitter * np.eye(m.size))
                    break
                except np.linalg.LinAlgError:
                    jitter *= 100.0
            else:
                chol = np.diag(np.sqrt(np.maximum(np.diag(v), 1e-300)))
            ys = np.linalg.solve(chol, d_obs)
            ss = np.linalg.solve(chol, d_sim.T).T
        out[m] = np.clip(np.mean(ss < ys[None, :], axis=0), lo, 1 - lo)
    return stats.norm.ppf(out), pd_


def npde(fit: Any, *, n_sim: int = 1000, seed: int = 1, decorrelate: bool = True,
         replicates: Any = None) -> pd.DataFrame:
    """NPDE of every record of a fit, from new virtual subjects drawn from the posterior.

    Parameters
    ----------
    fit : Fit
        The fit (with its data).
    n_sim : int
        Simulated replicates of the trial (``K`` in the module docstring); the decorrelation
        needs ``K`` well above the records per subject (1000 is ample for CK schedules).
    seed : int
        Seed of the simulation and of the BLQ imputation (deterministic given it).

    Other Parameters
    ----------------
    decorrelate : bool
        False: NPD (no decorrelation).
    replicates : Replicates, optional
        Reuse simulations (:func:`~ckmodel.diagnostics.virtual.simulate_replicates`).

    Returns
    -------
    pandas.DataFrame
        :func:`~ckmodel.diagnostics.virtual.fit_records` with ``NPDE`` and ``PD``; attrs
        ``n_sim``, ``seed``.
    """
    from ckmodel.diagnostics.virtual import simulate_replicates

    rep = replicates if replicates is not None else simulate_replicates(fit, n_sim, seed=seed)
    rec = rep.records.copy()
    errors = fit.meta.get("error_models", {})
    log_scale = rec["ANALYTE"].map(
        lambda a: errors.get(a, fit.spec.output(a).error) in LOG_SCALE_ERRORS).to_numpy(bool)
    y = np.where(rec["BLQ"], rec["LLOQ"], rec["DV"]).astype(float)
    # one subject's records of all analytes are decorrelated together
    rng = np.random.default_rng([int(seed), 7])
    n, p = npde_arrays(y, rep.stacked("obs"), rec["ID"].to_numpy(), blq=rec["BLQ"].to_numpy(),
                       lloq=rec["LLOQ"].to_numpy(float), log_scale=log_scale,
                       decorrelate=decorrelate, rng=rng)
    rec["NPDE"] = n
    rec["PD"] = p
    rec.attrs.update(n_sim=rep.n_sim, seed=int(seed))
    return rec
