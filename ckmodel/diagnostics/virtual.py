"""The records of a fit, their predictions, and replicates of the trial with new subjects.

Everything diagnostic starts here:

- :func:`fit_records`: one row per record the fit used (subject, analyte, time in the model's
  unit, observed value, BLQ flag and LLOQ), read from the fit's ``observed_data`` and
  ``constant_data``, in the order of the log-likelihood;
- :func:`record_predictions`: PRED and IPRED of each record;
- :func:`simulate_replicates`: observations of *new virtual subjects* at each record, one
  replicate of the whole trial per row.

Replicates (VPC, NPDE) keep each real subject's design (every dose, the record times, the
covariates, switch onsets, each record's LLOQ) and draw new subjects from the posterior: for
replicate ``r`` a posterior draw ``d_r`` is sampled, and for subject ``i`` with parameter scale
``g`` (log, logit or linear)::

    g(theta_new_i) = g(theta_i[d_r]) - eta_i[d_r] + eta_new_i,   eta_new_i ~ N(0, Omega[d_r])

``g(theta_i) - eta_i`` is the typical value of subject ``i`` with its covariate effects applied
(the fit builds ``g(theta_i) = mu + x_i beta + eta_i``), so the new subject shares the real
subject's covariates but not its random effects; ``Omega`` is diagonal with the draw's
``omega`` or, for correlated effects, ``diag(omega) R diag(omega)`` with the draw's
correlation ``chol_corr``. Residual error is then added with the draw's ``sigma_<A>`` under the
analyte's error model (:func:`ckmodel.population.residual.sample_residual`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ckmodel.fitting.draws import (
    iiv_names,
    natural_parameters,
    parameter_names,
    random_effects,
    sample_index,
    stacked_draws,
    typical_on_scale,
)

__all__ = ["RECORD_COLUMNS", "Replicates", "fit_records", "population_bands",
           "record_predictions", "simulate_replicates"]

#: Columns of :func:`fit_records`.
RECORD_COLUMNS = ("ID", "ANALYTE", "TIME", "DV", "BLQ", "LLOQ", "ROW")
#: Subjects x replicates solved in one call (bounds memory).
_CHUNK = 4000


def _analytes(fit: Any) -> list[str]:
    obs = fit.idata.observed_data
    return [a for a in fit.meta.get("analytes", fit.spec.output_names) if f"y_{a}" in obs]


def fit_records(fit: Any) -> pd.DataFrame:
    """Every record the fit used, one row each, in log-likelihood order (analyte by analyte).

    Parameters
    ----------
    fit : Fit
        A fit (:func:`ckmodel.fitting.fit` or :func:`ckmodel.fitting.load_fit`).

    Returns
    -------
    pandas.DataFrame
        ``ID``, ``ANALYTE``, ``TIME`` (model time unit, on the data's clock: time since
        infusion for CAR-T), ``DV`` (observed value in the analyte's unit; NaN for BLQ
        records), ``BLQ`` (bool), ``LLOQ`` (analyte unit; NaN when absent), ``ROW`` (line of
        the data file). attrs ``time_unit`` and ``units`` (analyte -> unit).
    """
    const = fit.idata.constant_data
    obs = fit.idata.observed_data
    parts = []
    for a in _analytes(fit):
        y = obs[f"y_{a}"]
        blq = const[f"blq_{a}"].values.astype(bool)
        parts.append(pd.DataFrame({
            "ID": const[f"subject_{a}"].values.astype(str),
            "ANALYTE": a,
            "TIME": const[f"time_{a}"].values.astype(float),
            "DV": np.where(blq, np.nan, y.values.astype(float)),
            "BLQ": blq,
            "LLOQ": const[f"lloq_{a}"].values.astype(float),
            "ROW": np.asarray(y[y.dims[0]].values, dtype=int),
        }))
    rec = pd.concat(parts, ignore_index=True)
    rec.attrs["time_unit"] = fit.spec.time_unit
    rec.attrs["units"] = {a: fit.spec.output(a).unit for a in _analytes(fit)}
    return rec


@dataclass(frozen=True)
class _Design:
    """Each fitted subject's doses, covariates and switch onsets (model time)."""

    subjects: tuple[str, ...]
    amt: np.ndarray
    dose_time: np.ndarray
    dose_cmt: np.ndarray
    covariates: dict[str, np.ndarray]
    onsets: dict[str, np.ndarray]


def _design(fit: Any) -> _Design:
    from ckmodel.population.prepare import dosing_history, switch_onsets

    if fit.data is None:
        raise ValueError("this fit holds no data, so there is no design to simulate")
    subjects = tuple(str(s) for s in fit.posterior["theta"].subject.values)
    scale = float(fit.meta.get("time_scale", 1.0))
    dosing = dosing_history(fit.data.doses, subjects, scale, fit.spec)
    covs: dict[str, np.ndarray] = {}
    if fit.spec.covariates:
        cov = fit.data.covariates.reindex(list(subjects))
        covs = {c: cov[c].to_numpy(float) for c in fit.spec.covariates}
    onsets = {k: v * scale for k, v in switch_onsets(fit.data, fit.spec, subjects).items()}
    return _Design(subjects, dosing.amt, dosing.time, dosing.cmt, covs, onsets)


def _solve_at_records(fit: Any, params: dict[str, np.ndarray], design: _Design,
                      rec: pd.DataFrame, n_rep: int) -> dict[str, np.ndarray]:
    """Model predictions (no residual error) at every record: analyte -> (n_rep, n_records_a).

    ``params`` hold ``n_rep * n_subjects`` values, replicate-major.
    """
    from ckmodel.solve import evaluate_outputs, solve_states

    spec = fit.spec
    n_sub = len(design.subjects)
    times = np.unique(rec["TIME"].to_numpy(float))
    t_idx = np.searchsorted(times, rec["TIME"].to_numpy(float))
    s_pos = {s: i for i, s in enumerate(design.subjects)}
    s_idx = rec["ID"].map(s_pos).to_numpy(int)
    out = {a: np.empty((n_rep, int((rec["ANALYTE"] == a).sum()))) for a in rec["ANALYTE"].unique()}
    masks = {a: (rec["ANALYTE"] == a).to_numpy() for a in out}
    per = max(1, _CHUNK // max(n_sub, 1))
    for r0 in range(0, n_rep, per):
        r1 = min(n_rep, r0 + per)
        k = r1 - r0
        sl = slice(r0 * n_sub, r1 * n_sub)
        par = {p: v[sl] for p, v in params.items()}
        covs = {c: np.tile(v, k) for c, v in design.covariates.items()}
        ons = {c: np.tile(v, k) for c, v in design.onsets.items()}
        states = solve_states(spec, par, times, amt=np.tile(design.amt, (k, 1)),
                              dose_time=np.tile(design.dose_time, (k, 1)),
                              dose_cmt=np.tile(design.dose_cmt, (k, 1)), covariates=covs,
                              onsets=ons)
        pred = evaluate_outputs(spec, states, par, times, covs)
        for a, m in masks.items():
            arr = np.asarray(pred[a]).reshape(k, n_sub, times.size)
            out[a][r0:r1] = arr[:, s_idx[m], t_idx[m]]
    return out


def record_predictions(fit: Any, *, n_draws: int = 200) -> pd.DataFrame:
    """PRED and IPRED of every record (noise-free model predictions, analyte units).

    ``IPRED`` is the posterior median of the subject's own prediction (its individual
    parameters ``theta``); ``PRED`` the posterior median of the *typical* subject's prediction:
    random effects 0, the subject's covariates and doses applied (``g(theta) - eta``, see the
    module docstring). Both solve over each subject's whole dosing history.

    Parameters
    ----------
    fit : Fit
        The fit.
    n_draws : int
        Posterior draws used, evenly thinned over chains and draws (deterministic).

    Returns
    -------
    pandas.DataFrame
        :func:`fit_records` with ``PRED`` and ``IPRED`` added.
    """
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}")
    rec = fit_records(fit)
    design = _design(fit)
    g_typ = typical_on_scale(fit)
    idx = sample_index(fit, n_draws)
    theta = stacked_draws(fit, "theta")[idx]
    pnames = [str(p) for p in fit.posterior["theta"].parameter.values]
    ipars = {p: theta[..., j].ravel() for j, p in enumerate(pnames)}
    ipred = _solve_at_records(fit, ipars, design, rec, idx.size)
    pred = _solve_at_records(fit, natural_parameters(fit, g_typ[idx]), design, rec, idx.size)
    rec["PRED"] = np.nan
    rec["IPRED"] = np.nan
    for a in ipred:
        m = (rec["ANALYTE"] == a).to_numpy()
        rec.loc[m, "PRED"] = np.median(pred[a], axis=0)
        rec.loc[m, "IPRED"] = np.median(ipred[a], axis=0)
    rec.attrs.update(n_draws=int(idx.size))
    return rec


@dataclass(frozen=True)
class Replicates:
    """Simulated replicates of a fitted trial at its records (see the module docstring).

    Attributes
    ----------
    records : pandas.DataFrame
        :func:`fit_records` of the fit (the design simulated).
    pred : dict of str to ndarray, shape (n_sim, n_records of the analyte)
        Noise-free predictions of the new subjects, analyte units.
    obs : dict of str to ndarray, shape (n_sim, n_records of the analyte)
        Simulated observations (residual error added), uncensored; a simulated record is BLQ
        when below its record's LLOQ.
    draws : ndarray of int, shape (n_sim,)
        Posterior sample (chain x draw, flattened) used by each replicate.
    seed : int
        The seed.
    """

    records: pd.DataFrame
    pred: dict[str, np.ndarray]
    obs: dict[str, np.ndarray]
    draws: np.ndarray
    seed: int

    @property
    def n_sim(self) -> int:
        """Number of replicates."""
        return int(self.draws.size)

    def stacked(self, kind: str = "obs") -> np.ndarray:
        """All analytes side by side, (n_sim, n_records), in :attr:`records` order."""
        src = self.obs if kind == "obs" else self.pred
        out = np.empty((self.n_sim, len(self.records)))
        for a, v in src.items():
            out[:, (self.records["ANALYTE"] == a).to_numpy()] = v
        return out


def simulate_replicates(fit: Any, n_sim: int = 200, *, seed: int = 1,
                        residual: bool = True) -> Replicates:
    """Replicate the fitted trial ``n_sim`` times with new virtual subjects from the posterior.

    Parameters
    ----------
    fit : Fit
        The fit, with its data (doses, covariates).
    n_sim : int
        Replicates of the whole trial.
    seed : int
        Seed of the random generator: draws, random effects and residual errors; the result
        is deterministic given it.

    Other Parameters
    ----------------
    residual : bool
        False returns the noise-free predictions as ``obs`` as well.

    Returns
    -------
    Replicates
    """
    from ckmodel.population.residual import sample_residual

    if isinstance(n_sim, bool) or not isinstance(n_sim, int | np.integer) or n_sim < 1:
        raise ValueError(f"n_sim must be an integer >= 1, got {n_sim!r}")
    rng = np.random.default_rng(seed)
    rec = fit_records(fit)
    design = _design(fit)
    params, draws = _new_subject_params(fit, n_sim, rng)
    pred = _solve_at_records(fit, params, design, rec, n_sim)
    obs = {}
    errors = fit.meta.get("error_models", {})
    for a, f in pred.items():
        if not residual:
            obs[a] = f
            continue
        out = fit.spec.output(a)
        err = errors.get(a, out.error)
        sigma = stacked_draws(fit, f"sigma_{a}")[draws][:, None]
        prop = (stacked_draws(fit, f"sigma_prop_{a}")[draws][:, None]
                if f"sigma_prop_{a}" in fit.posterior else None)
        obs[a] = sample_residual(err, f, sigma, rng, sigma_prop=prop, nu=out.nu)
    return Replicates(records=rec, pred=pred, obs=obs, draws=draws, seed=int(seed))


def _new_subject_params(fit: Any, n_sim: int, rng: np.random.Generator
                        ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Parameters of ``n_sim`` replicates of every fitted subject (replicate-major)."""
    g_typ = typical_on_scale(fit)
    iiv = iiv_names(fit)
    n_total, n_sub, _ = g_typ.shape
    draws = rng.choice(n_total, size=n_sim, replace=n_sim > n_total)
    g = g_typ[draws].copy()
    eta = random_effects(fit, draws, rng.standard_normal((draws.size, n_sub, len(iiv))))
    pnames = parameter_names(fit)
    for k, p in enumerate(iiv):
        g[..., pnames.index(p)] += eta[..., k]
    return natural_parameters(fit, g), draws


def population_bands(fit: Any, *, stratify: str | None = None, times: Any = None,
                     n_sim: int = 100, seed: int = 1,
                     quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)) -> Any:
    """Population prediction bands per stratum: the model's spread of new subjects.

    Each fitted subject is replicated ``n_sim`` times as a new virtual subject (module
    docstring; its doses and covariates kept), solved without residual error on ``times``;
    the quantiles pool the replicates of the stratum's subjects, so they carry both the
    between-subject variability and the posterior uncertainty of the population parameters.

    Parameters
    ----------
    fit : Fit
        The fit, with its data.
    stratify : str, optional
        Subject-level column (``DOSE_LEVEL``, ``DOSE`` ...); default one stratum ``"all"``.
    times : array, optional
        Times in the model's time unit (default :meth:`Fit.time_grid` with 200 points).
    n_sim : int
        Replicates of each subject.
    seed : int
        Seed (deterministic given it).
    quantiles : tuple of float
        Quantiles over new subjects.

    Returns
    -------
    xarray.Dataset
        ``pred`` (``quantile``, ``stratum``, ``analyte``, ``time``) in each analyte's unit
        (coord ``unit``), coord ``n_subjects`` on ``stratum``; attrs ``time_unit``,
        ``stratify``, ``n_sim``, ``seed``.
    """
    import xarray as xr

    from ckmodel.diagnostics.strata import subject_strata
    from ckmodel.solve import evaluate_outputs, solve_states

    if isinstance(n_sim, bool) or not isinstance(n_sim, int | np.integer) or n_sim < 1:
        raise ValueError(f"n_sim must be an integer >= 1, got {n_sim!r}")
    t = np.sort(np.asarray(fit.time_grid(200) if times is None else times, dtype=float))
    rng = np.random.default_rng(seed)
    design = _design(fit)
    params, _ = _new_subject_params(fit, n_sim, rng)
    n_sub = len(design.subjects)
    analytes = _analytes(fit)
    strata = subject_strata(fit.data, stratify, design.subjects)
    levels = [str(c) for c in strata.cat.categories if (strata == c).any()]
    lab = strata.astype(str).to_numpy()
    pred = {a: np.empty((n_sim, n_sub, t.size)) for a in analytes}
    per = max(1, _CHUNK // max(n_sub, 1))
    for r0 in range(0, n_sim, per):
        r1 = min(n_sim, r0 + per)
        k = r1 - r0
        sl = slice(r0 * n_sub, r1 * n_sub)
        par = {p: v[sl] for p, v in params.items()}
        covs = {c: np.tile(v, k) for c, v in design.covariates.items()}
        states = solve_states(fit.spec, par, t, amt=np.tile(design.amt, (k, 1)),
                              dose_time=np.tile(design.dose_time, (k, 1)),
                              dose_cmt=np.tile(design.dose_cmt, (k, 1)), covariates=covs,
                              onsets={c: np.tile(v, k) for c, v in design.onsets.items()})
        out = evaluate_outputs(fit.spec, states, par, t, covs)
        for a in analytes:
            pred[a][r0:r1] = np.asarray(out[a]).reshape(k, n_sub, t.size)
    q = np.empty((len(quantiles), len(levels), len(analytes), t.size))
    for j, lev in enumerate(levels):
        m = lab == lev
        for i, a in enumerate(analytes):
            q[:, j, i] = np.quantile(pred[a][:, m].reshape(-1, t.size), quantiles, axis=0)
    return xr.Dataset(
        {"pred": (("quantile", "stratum", "analyte", "time"), q)},
        coords={"quantile": list(quantiles), "stratum": levels, "analyte": analytes,
                "time": t, "unit": ("analyte", [fit.spec.output(a).unit for a in analytes]),
                "n_subjects": ("stratum", [int((lab == lev).sum()) for lev in levels])},
        attrs={"time_unit": fit.spec.time_unit, "stratify": stratify or "",
               "n_sim": int(n_sim), "seed": int(seed)})
