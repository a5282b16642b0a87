"""The result of a fit: InferenceData plus everything needed to rebuild and check it.

A :class:`Fit` saves to one NetCDF file (written to a temporary file, then moved into place).
Metadata (spec TOML text, data CSV text, hashes, seed, sampler, options, package versions) are
plain string attributes of the posterior group: loading never unpickles or executes anything.
"""

from __future__ import annotations

import json
import os
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ckmodel._arviz import az
from ckmodel.errors import FitMismatchError
from ckmodel.files import atomic_write
from ckmodel.spec.model import ModelSpec
from ckmodel.spec.parse import spec_from_dict

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

    def predict(self, times: Any = None, *, n_draws: int = 200,
                quantiles: tuple[float, ...] = (0.05, 0.5, 0.95)) -> xr.Dataset:
        """Individual predictions on a dense time grid, computed on demand from the posterior.

        Parameters
        ----------
        times : array, optional
            Times (model time unit) since the dose (default 0-365 days, dense early).
        n_draws : int
            Posterior draws used (evenly thinned over chains and draws; deterministic).
        quantiles : tuple of float
            Quantiles of the individual prediction over the posterior.

        Returns
        -------
        xarray.Dataset
            ``pred`` with dims (``quantile``, ``subject``, ``analyte``, ``time``): the
            noise-free model prediction of each subject (IPRED band).
        """
        from ckmodel.simulate import DEFAULT_TIMES
        from ckmodel.solve import evaluate_outputs, solve_states

        t = np.asarray(DEFAULT_TIMES if times is None else times, dtype=float)
        theta = self.posterior["theta"].stack(sample=("chain", "draw"))
        idx = np.unique(np.linspace(0, theta.sizes["sample"] - 1, n_draws).astype(int))
        th = theta.isel(sample=idx).transpose("sample", "subject", "parameter").values
        n_s, n_sub, _ = th.shape
        subjects = [str(s) for s in theta.subject.values]
        params = {p: th[:, :, j].ravel() for j, p in enumerate(self.spec.param_names)}
        doses = self.data.doses.groupby("ID")["AMT"].first() if self.data is not None else None
        amt = np.tile(doses.reindex(subjects).to_numpy(float), n_s) if doses is not None else 1.0
        covs = {}
        if self.spec.covariates and self.data is not None:
            cov = self.data.covariates.reindex(subjects)
            covs = {c: np.tile(cov[c].to_numpy(float), n_s) for c in self.spec.covariates}
        onsets = {}
        if self.spec.switches and self.data is not None:
            from ckmodel.population.prepare import switch_onsets

            # predictions run in time since the dose: shift the onsets likewise
            t_dose = self.data.doses.groupby("ID")["TIME"].min().reindex(subjects)
            onsets = {k: np.tile(v - t_dose.to_numpy(float), n_s)
                      for k, v in switch_onsets(self.data, self.spec, subjects).items()}
        states = solve_states(self.spec, params, t, amt=amt, covariates=covs, onsets=onsets)
        pred = evaluate_outputs(self.spec, states, params, t, covs)
        analytes = list(self.spec.output_names)
        arr = np.stack([pred[a].reshape(n_s, n_sub, t.size) for a in analytes], axis=2)
        q = np.quantile(arr, quantiles, axis=0)
        return xr.Dataset({"pred": (("quantile", "subject", "analyte", "time"), q)},
                          coords={"quantile": list(quantiles), "subject": subjects,
                                  "analyte": analytes, "time": t},
                          attrs={"model": self.spec.name, "n_draws": int(idx.size)})

    def diagnostics(self) -> pd.DataFrame:
        """R-hat and ESS of the population-level parameters."""
        from ckmodel.fitting.convergence import convergence_table

        return convergence_table(self.idata)

    def summary(self, *, hdi_prob: float = 0.95) -> pd.DataFrame:
        """Parameter table: typical values with units, IIV (CV%), residual SDs, covariates.

        Columns: ``kind``, ``unit``, ``median``, ``mean``, ``sd``, ``lower``, ``upper``
        (equal-tailed ``hdi_prob`` credible interval), ``cv_percent`` (IIV as CV% for log-scale
        parameters: sqrt(exp(omega^2) - 1) * 100), ``r_hat``, ``ess_bulk``, ``ess_tail``.
        """
        from ckmodel.fitting.summary import summary_table

        return summary_table(self, prob=hdi_prob)

    def __repr__(self) -> str:
        post = self.posterior
        return (f"Fit(model={self.spec.name!r}, subjects={post.sizes.get('subject', 0)}, "
                f"chains={post.sizes.get('chain', 0)}, draws={post.sizes.get('draw', 0)}, "
                f"sampler={self.meta.get('sampler')!r}, seed={self.meta.get('seed')!r})")

    # ----------------------------------------------------------------- save / load
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fit to one NetCDF file, atomically (temporary file, then rename).

        Posterior-predictive and log-likelihood draws are stored as float32 to keep files
        small. Returns the path written.
        """
        path = Path(path)
        idata = self.idata.copy()
        for group in ("posterior_predictive", "log_likelihood"):
            if hasattr(idata, group):
                ds = getattr(idata, group)
                setattr(idata, group, ds.astype("float32"))
        attrs = {_PREFIX + "spec_toml": self.spec.to_toml(),
                 _PREFIX + "spec_hash": self.spec.hash()}
        if self.data is not None:
            attrs[_PREFIX + "data_csv"] = _data_text(self.data)
            if getattr(self.data, "outcomes", None) is not None:
                attrs[_PREFIX + "outcomes_csv"] = self.data.outcomes.reset_index().to_csv(
                    index=False)
        attrs[_PREFIX + "meta_json"] = json.dumps(self.meta, default=str)
        idata.posterior.attrs.update(attrs)
        atomic_write(path, lambda p: idata.to_netcdf(str(p), engine="h5netcdf"))
        return path


def _data_text(data: Any) -> str:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "data.csv"
        data.to_csv(p)
        return p.read_text()


def load_fit(path: str | os.PathLike[str], *, model: Any = None, data: Any = None) -> Fit:
    """Read a fit written by :meth:`Fit.save`.

    Parameters
    ----------
    path : path
        NetCDF file.
    model : str, path or ModelSpec, optional
        When given, the file's model must be this model (same content hash).
    data : CKData, optional
        When given, the file's data must be these data (same content hash).

    Raises
    ------
    FitMismatchError
        When the stored spec does not match its own hash (file edited), or the given model or
        data differ from those the fit was made with.
    """
    from ckmodel.data import CKData, read_ck
    from ckmodel.spec.parse import load_model

    idata = az.from_netcdf(str(path))
    attrs = dict(idata.posterior.attrs)
    try:
        text = attrs[_PREFIX + "spec_toml"]
        stored_hash = attrs[_PREFIX + "spec_hash"]
    except KeyError:
        raise FitMismatchError(f"{path} is not a ckmodel fit (no model spec stored)") from None
    spec = spec_from_dict(tomllib.loads(text), file=f"{path}:spec")
    if spec.hash() != stored_hash:
        raise FitMismatchError(f"{path}: the stored model spec does not match its hash; the "
                               "file was altered")
    meta = json.loads(attrs.get(_PREFIX + "meta_json", "{}"))
    if model is not None:
        given = load_model(model)
        if given.hash() != spec.hash():
            raise FitMismatchError(f"{path} was fitted with model '{spec.name}' "
                                   f"({spec.hash()[:12]}), not the given '{given.name}' "
                                   f"({given.hash()[:12]})")
    stored: CKData | None = None
    if _PREFIX + "data_csv" in attrs:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "data.csv"
            p.write_text(attrs[_PREFIX + "data_csv"])
            outc = None
            if _PREFIX + "outcomes_csv" in attrs:
                outc = Path(d) / "outcomes.csv"
                outc.write_text(attrs[_PREFIX + "outcomes_csv"])
            stored = read_ck(p, outcomes=outc, analytes=meta.get("data_analytes"))
        if meta.get("data_hash") and stored.hash() != meta["data_hash"]:
            raise FitMismatchError(f"{path}: the stored data do not match the data hash; the "
                                   "file was altered")
    if data is not None and meta.get("data_hash") and data.hash() != meta["data_hash"]:
        raise FitMismatchError(f"{path} was fitted to different data (hash "
                               f"{meta['data_hash'][:12]}, given {data.hash()[:12]})")
    for k in list(idata.posterior.attrs):
        if k.startswith(_PREFIX):
            del idata.posterior.attrs[k]
    return Fit(idata=idata, spec=spec, data=data if data is not None else stored, meta=meta)
