"""The result of a fit: InferenceData plus everything needed to rebuild and check it.

A :class:`Fit` saves to one NetCDF file (written to a temporary file, then moved into place).
Metadata (spec TOML text, data CSV text, hashes, seed, sampler, options, package versions) are
plain string attributes of the posterior group: loading never unpickles or executes anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from ckmodel.spec.model import ModelSpec

if TYPE_CHECKING:
    from ckmodel.fitting.summary import FitSummary

__all__ = ["Fit", "load_fit", "package_versions"]

_PREFIX = "ckmodel_"


def package_versions() -> dict[str, str]:
    """Versions of Python and the numerical packages a fit depends on."""
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for pkg in ("ckmodel", "pymc", "pytensor", "arviz", "numpy", "scipy", "xarray", "pandas",
                "nutpie", "numba", "jax", "numpyro", "blackjax"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def thinned_draws(n_chain: int, n_draw: int, n_draws: int) -> np.ndarray:
    """Draw indices kept from every chain to use about ``n_draws`` posterior draws in all.

    The same ``max(1, n_draws // n_chain)`` evenly spaced draws of each chain (all of them
    when there are fewer), so a thinned posterior keeps its (chain, draw) shape; the one
    thinning rule of predictions, exposures and diagnostics. Deterministic.
    """
    per_chain = max(1, min(n_draw, int(n_draws) // max(n_chain, 1)))
    return np.unique(np.linspace(0, n_draw - 1, per_chain).round().astype(int))


@dataclass
class Fit:
    """A fitted population CK model.

    Attributes
    ----------
    idata : arviz.InferenceData
        ``posterior`` (typical values ``<p>_pop``, ``omega``, ``theta`` (subject x parameter),
        ``sigma_<analyte>`` ...), ``sample_stats``, ``posterior_predictive`` and
        ``log_likelihood`` (``y_<analyte>`` on dims ``obs_<analyte>``), ``observed_data`` and
        ``constant_data`` (subject, time and BLQ flag of each record).
    spec : ModelSpec
        The model fitted.
    data : CKData or None
        The data fitted (rebuilt from the file on load).
    meta : dict
        seed, sampler, settings, covariate effects, options, hashes and package versions.
    """

    idata: Any
    spec: ModelSpec
    data: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    # ----------------------------------------------------------------- views
    @property
    def posterior(self) -> xr.Dataset:
        """Posterior draws (dims chain, draw, ...)."""
        return self.idata.posterior

    def typical_values(self) -> xr.Dataset:
        """Posterior of the typical values ``<p>_pop`` (natural scale)."""
        names = [f"{p}_pop" for p in self.spec.param_names if f"{p}_pop" in self.posterior]
        return self.posterior[names]

    def individual_parameters(self) -> xr.DataArray:
        """Posterior of the individual parameters, dims (chain, draw, subject, parameter)."""
        return self.posterior["theta"]

    def time_grid(self, n: int = 400) -> np.ndarray:
        """Default prediction times (model time unit): the first dose to the last record.

        A uniform grid of ``n`` points from the earliest dose to 5 % past the latest
        observation (or dose), with every dose time added, so that each dosing event is
        drawn. Without data: 0-365 days (``ckmodel.simulate.DEFAULT_TIMES``) in the model's
        unit.
        """
        from ckmodel.simulate import DEFAULT_TIMES

        if self.data is None:
            return np.asarray(DEFAULT_TIMES, dtype=float)
        scale = float(self.meta.get("time_scale", 1.0))
        dose_t = self.data.doses["TIME"].to_numpy(float) * scale
        obs_t = self.data.observations["TIME"].to_numpy(float) * scale
        t0 = float(np.min(dose_t)) if dose_t.size else 0.0
        t1 = float(np.max(np.concatenate([obs_t, dose_t, [t0 + 1.0]])))
        t1 = t0 + 1.05 * (t1 - t0)
        return np.unique(np.concatenate([np.linspace(t0, t1, n), dose_t]))

    def trajectories(self, times: Any = None, *, n_draws: int = 200) -> xr.DataArray:
        """Each subject's noise-free trajectory per posterior draw, over its dosing history.

        Every dose of the data (repeated doses, superposition, doses into the state their
        CMT names, switches such as anti-drug antibodies from their onset) enters the
        solve; times are on the data's clock, in the model's time unit (data in another
        unit were converted for the fit, and are here).

        Parameters
        ----------
        times : array, optional
            Times in the model's time unit on the data's clock (time since infusion for
            CAR-T); default :meth:`time_grid`.
        n_draws : int
            About this many posterior draws: the same evenly spaced draws of every chain
            (``n_draws // chains`` each, at least one), so the result keeps (chain, draw).
            Deterministic.

        Returns
        -------
        xarray.DataArray
            Dims (``chain``, ``draw``, ``subject``, ``analyte``, ``time``), in each output's
            unit (coord ``unit``); attrs ``time_unit``, ``model``, ``n_draws``.
        """
        from ckmodel.population.prepare import dosing_history, switch_onsets
        from ckmodel.solve import evaluate_outputs, solve_states

        if self.data is None:
            raise ValueError("this fit holds no data, so there is no dosing history to "
                             "predict over; use ckmodel.simulate for new subjects")
        if isinstance(n_draws, bool) or int(n_draws) < 1:
            raise ValueError(f"n_draws must be an integer >= 1, got {n_draws!r}")
        t = np.asarray(self.time_grid() if times is None else times, dtype=float)
        if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)):
            raise ValueError("times must be a non-empty 1-D array of finite times")
        t = np.unique(t)
        scale = float(self.meta.get("time_scale", 1.0))
        theta = self.posterior["theta"]
        theta = theta.isel(draw=thinned_draws(theta.sizes["chain"], theta.sizes["draw"],
                                              int(n_draws)))
        th = theta.transpose("chain", "draw", "subject", "parameter").values
        n_c, n_d, n_sub, n_par = th.shape
        n_s = n_c * n_d
        th = th.reshape(n_s, n_sub, n_par)
        subjects = [str(s) for s in theta.subject.values]
        params = {p: th[:, :, j].ravel() for j, p in enumerate(self.spec.param_names)}
        dosing = dosing_history(self.data.doses, subjects, scale, self.spec)
        covs = {}
        if self.spec.covariates:
            cov = self.data.covariates.reindex(subjects)
            covs = {c: np.tile(cov[c].to_numpy(float), n_s) for c in self.spec.covariates}
        onsets = {k: np.tile(v * scale, n_s)
                  for k, v in switch_onsets(self.data, self.spec, subjects).items()}
        states = solve_states(self.spec, params, t, amt=np.tile(dosing.amt, (n_s, 1)),
                              dose_time=np.tile(dosing.time, (n_s, 1)),
                              dose_cmt=np.tile(dosing.cmt, (n_s, 1)), covariates=covs,
                              onsets=onsets)
        pred = evaluate_outputs(self.spec, states, params, t, covs)
        analytes = list(self.spec.output_names)
        arr = np.stack([pred[a].reshape(n_c, n_d, n_sub, t.size) for a in analytes], axis=3)
        return xr.DataArray(
            arr, dims=("chain", "draw", "subject", "analyte", "time"),
            coords={"chain": theta.chain.values, "draw": theta.draw.values,
                    "subject": subjects, "analyte": analytes, "time": t,
                    "unit": ("analyte", [self.spec.output(a).unit for a in analytes])},
            attrs={"model": self.spec.name, "n_draws": int(n_s),
                   "time_unit": self.spec.time_unit})

    def predict(self, times: Any = None, *, n_draws: int = 200,
                quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)) -> xr.Dataset:
        """Individual prediction bands over each subject's whole dosing history.

        Quantiles over the posterior of :meth:`trajectories` (same ``times`` and
        ``n_draws``).

        Parameters
        ----------
        times : array, optional
            Times in the model's time unit on the data's clock; default :meth:`time_grid`.
        n_draws : int
            About this many posterior draws (see :meth:`trajectories`).
        quantiles : tuple of float
            Quantiles of the individual prediction over the posterior.

        Returns
        -------
        xarray.Dataset
            ``pred`` with dims (``quantile``, ``subject``, ``analyte``, ``time``): the
            noise-free model prediction of each subject (IPRED band), in each output's unit
            (coord ``unit``); attrs ``time_unit``, ``model``, ``n_draws``.
        """
        traj = self.trajectories(times, n_draws=n_draws)
        flat = traj.stack(sample=("chain", "draw")).transpose("sample", ...).values
        q = np.quantile(flat, quantiles, axis=0)
        return xr.Dataset({"pred": (("quantile", "subject", "analyte", "time"), q)},
                          coords={"quantile": list(quantiles), "subject": traj.subject.values,
                                  "analyte": traj.analyte.values, "time": traj.time.values,
                                  "unit": ("analyte", traj.unit.values)},
                          attrs=dict(traj.attrs))

    def exposure(self, **options: Any) -> xr.Dataset:
        """Posterior draws of each subject's exposure metrics (Cmax, Tmax, AUC0-28 ...).

        See :func:`ckmodel.exposure.exposure_draws`, to which ``options`` go.
        """
        from ckmodel.exposure import exposure_draws

        return exposure_draws(self, **options)

    def simulate(self, doses: Any, **options: Any) -> xr.Dataset:
        """New virtual patients from the posterior at each candidate dose.

        Posterior draws (``draw``) and new patients (``patient``) on separate dims, exposure
        metrics per (dose, draw, patient); see :func:`ckmodel.virtual_patients.simulate_patients`,
        to which ``options`` go.
        """
        from ckmodel.virtual_patients import simulate_patients

        return simulate_patients(self, doses, **options)

    def diagnostics(self) -> pd.DataFrame:
        """R-hat and ESS of the population-level parameters."""
        from ckmodel.fitting.convergence import convergence_table

        return convergence_table(self.idata)

    def summary(self, *, hdi_prob: float = 0.95) -> FitSummary:
        """What the fit says: records used and left out, convergence verdict, parameters.

        Returns
        -------
        FitSummary
            ``records`` (per analyte: records in the data, used, BLQ among them, left out by
            reason), ``convergence`` (chains, draws, divergences, worst R-hat, lowest ESS,
            E-BFMI, ``ok``), ``parameters`` (one row per population-level quantity: ``kind``,
            ``unit``, ``median``, ``mean``, ``sd``, ``lower``, ``upper`` (equal-tailed
            ``hdi_prob`` interval), ``cv_percent`` (IIV as CV% for log-scale parameters:
            sqrt(exp(omega^2) - 1) * 100), ``r_hat``, ``ess_bulk``, ``ess_tail``) and notes.
            Printing it gives all of this as text, records first.
        """
        from ckmodel.fitting.summary import fit_summary

        return fit_summary(self, prob=hdi_prob)

    def __repr__(self) -> str:
        post = self.posterior
        return (f"Fit(model={self.spec.name!r}, subjects={post.sizes.get('subject', 0)}, "
                f"chains={post.sizes.get('chain', 0)}, draws={post.sizes.get('draw', 0)}, "
                f"sampler={self.meta.get('sampler')!r}, seed={self.meta.get('seed')!r})")

    # ----------------------------------------------------------------- save / load
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fit to one NetCDF file, atomically (temporary file, then rename).

        The file holds the posterior and its derived groups, the data, the model spec, the
        seed, settings and package versions; :func:`load_fit` reads it back and checks it (see
        :mod:`ckmodel.fitting.storage` for what the check covers). Posterior-predictive and
        log-likelihood draws are stored as float32 to keep files small.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        from ckmodel.fitting.storage import save_fit

        return save_fit(self, path)


def load_fit(path: str | os.PathLike[str], *, model: Any = None, data: Any = None) -> Fit:
    """Read a fit written by :meth:`Fit.save` (see :func:`ckmodel.fitting.storage.load_fit`)."""
    from ckmodel.fitting.storage import load_fit as load

    return load(path, model=model, data=data)
