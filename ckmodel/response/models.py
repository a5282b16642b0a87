"""Bayesian exposure-response models: fit, coefficients, probabilities, save and load.

:func:`fit_response` relates an endpoint of the outcomes table (binary, ordinal or time to
event; :mod:`ckmodel.response.analysis`) to an exposure and baseline covariates, in PyMC
(graphs and priors: :mod:`ckmodel.response.likelihoods`), sampled with nutpie and checked for
convergence like every fit of the package. The exposure is an outcomes column (e.g. NCA Cmax
merged in, or a baseline covariate) or, given a CK fit, a model-based metric
(:mod:`ckmodel.exposure`) used two ways:

- ``plugin``: each subject's posterior median exposure, as if known (the usual workflow);
- ``propagate``: the CK posterior carried through as a latent exposure per subject (see
  :mod:`ckmodel.response.likelihoods`), so its uncertainty reaches the coefficients.

Coefficients are reported per unit of the exposure as entered (per unit of log exposure on
the default log scale) and of each covariate: log odds ratios (binary; ordinal: towards a
higher grade) or log hazard ratios (time to event).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ResponseFit", "load_response", "MODELS", "UNCERTAINTY"]

#: Model choices per endpoint kind (the first is the default).
MODELS = {"binary": ("logistic", "probit"), "ordinal": ("ordinal",),
          "tte": ("weibull", "piecewise")}
UNCERTAINTY = ("plugin", "propagate")


@dataclass
class ResponseFit:
    """An exposure-response fit: what was modelled, the posterior and what it says.

    Attributes
    ----------
    endpoint, kind, model : str
        Endpoint name, ``binary``/``ordinal``/``tte`` and the model (``logistic`` ...).
    exposure_metric : str or None
        The exposure (outcomes column or model-based metric); None without exposure.
    exposure_scale : {"log", "linear"}
    covariates : tuple of str
    uncertainty : {"plugin", "propagate"}
    hsct : str
        HSCT rule (time to event).
    idata : arviz.InferenceData
        Posterior (standardised coefficients ``beta`` per SD, ``alpha``/``cutpoints``/
        ``log_lambda``/``log_shape``/``log_hazard``), sample stats and ``constant_data``
        (the analysis table).
    meta : dict
        ``center``, ``scale`` (standardisation), ``terms``, ``rule``, ``left_out``, ``n``,
        ``events``, ``t_ref``, ``cuts``, ``n_categories``, ``categories``, ``convergence``,
        ``seed``, ``versions``, ``notes``.
    """

    endpoint: str
    kind: str
    model: str
    exposure_metric: str | None
    exposure_scale: str
    covariates: tuple[str, ...]
    uncertainty: str
    hsct: str
    idata: Any
    meta: dict[str, Any] = field(default_factory=dict)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    # --- coefficients on the scale entered ---------------------------------------------------
    def _draws(self, name: str) -> np.ndarray:
        v = self.idata.posterior[name]
        other = [d for d in v.dims if d not in ("chain", "draw")]
        return v.transpose("chain", "draw", *other).values.reshape(-1, *v.shape[2:])

    def slopes(self, suffix: str = "") -> np.ndarray:
        """Per-unit slopes (samples x terms): ``beta / scale``."""
        if not self.meta["terms"]:
            return np.zeros((self._n_samples(), 0))
        return self._draws(f"beta{suffix}") / np.asarray(self.meta["scale"])

    def _n_samples(self) -> int:
        post = self.idata.posterior
        return int(post.sizes["chain"] * post.sizes["draw"])

    def _shift(self, suffix: str = "") -> np.ndarray:
        return self.slopes(suffix) @ np.asarray(self.meta["center"], float)

    def term_names(self) -> list[str]:
        """Terms as reported: ``log(EXPOSURE)`` (or the exposure) and the covariates."""
        names = list(self.meta["terms"])
        if self.exposure_metric is not None and names:
            names[0] = (f"log({self.exposure_metric})" if self.exposure_scale == "log"
                        else self.exposure_metric)
        return names

    def coefficient_draws(self) -> pd.DataFrame:
        """Posterior draws of every reported term (columns), on the scale entered."""
        if "coef" not in self._cache:
            self._cache["coef"] = self._coefficient_draws()
        return self._cache["coef"].copy()

    def _coefficient_draws(self) -> pd.DataFrame:
        out = {n: self.slopes()[:, j] for j, n in enumerate(self.term_names())}
        shift = self._shift()
        if self.kind == "binary":
            out = {"intercept": self._draws("alpha") - shift, **out}
        elif self.kind == "ordinal":
            cuts = self._draws("cutpoints") + shift[:, None]
            out.update({f"cut_{k + 1}": cuts[:, k] for k in range(cuts.shape[1])})
        elif self.model == "weibull":  # per the data's time unit: H(t) = lambda t^k e^eta
            log_tref = np.log(float(self.meta["t_ref"]))
            shape = np.exp(self._draws("log_shape"))
            out = {"log_lambda": self._draws("log_lambda") - shift - shape * log_tref,
                   "shape": shape, **out}
            if "log_lambda_hsct" in self.idata.posterior:
                hs = self.slopes("_hsct")
                shape_h = np.exp(self._draws("log_shape_hsct"))
                out["hsct: log_lambda"] = (self._draws("log_lambda_hsct") - self._shift("_hsct")
                                           - shape_h * log_tref)
                out["hsct: shape"] = shape_h
                out.update({f"hsct: {n}": hs[:, j] for j, n in enumerate(self.term_names())})
        else:  # per the data's time unit
            lh = (self._draws("log_hazard") - shift[:, None]
                  - np.log(float(self.meta["t_ref"])))
            out.update({f"log_hazard_{k + 1}": lh[:, k] for k in range(lh.shape[1])})
        return pd.DataFrame(out)

    def coefficients(self, level: float = 0.95) -> pd.DataFrame:
        """One row per term: ``term, median, mean, sd, lower, upper`` (equal-tailed ``level``).

        Slopes are log odds ratios (binary, ordinal towards a higher grade) or log hazard
        ratios per unit of the exposure as entered (per unit of log exposure by default) and
        of each covariate; ``intercept``/``cut_k``/``log_lambda`` at zero predictors; the
        Weibull ``log_lambda`` and ``shape`` (``H(t) = lambda t^shape e^eta``) and the
        piecewise ``log_hazard_k`` are per the data's time unit.
        """
        d = self.coefficient_draws()
        lo, hi = (1 - level) / 2, 1 - (1 - level) / 2
        return pd.DataFrame({"term": d.columns, "median": d.median().to_numpy(),
                             "mean": d.mean().to_numpy(), "sd": d.std(ddof=1).to_numpy(),
                             "lower": d.quantile(lo).to_numpy(),
                             "upper": d.quantile(hi).to_numpy()})

    # --- predictions -------------------------------------------------------------------------
    def _eta(self, exposure: Any, covariates: dict[str, float] | None, suffix: str = ""
             ) -> tuple[np.ndarray, np.ndarray]:
        """Per-unit linear predictor at the points (samples x points), from zero predictors."""
        x = np.atleast_1d(np.asarray(exposure, float))
        b = self.slopes(suffix)
        terms = self.meta["terms"]
        cov = dict(covariates or {})
        eta = np.zeros((b.shape[0], x.size))
        for j, t in enumerate(terms):
            if j == 0 and self.exposure_metric is not None:
                v = np.log(x) if self.exposure_scale == "log" else x
            else:
                v = np.full(x.size, float(cov.get(t, self.meta["center"][j])))
            eta += b[:, [j]] * v[None, :]
        return eta, x

    def probability(self, exposure: Any, covariates: dict[str, float] | None = None,
                    threshold: float | None = None) -> np.ndarray:
        """Posterior draws of the event probability at each exposure (samples x points).

        Binary: P(event). Ordinal: P(grade >= ``threshold``) (default the highest grade seen).
        Time to event: P(event by time ``threshold``) (default ``t_ref``); with HSCT as a
        competing event, its cumulative incidence (the probability of the event before any
        transplant). Covariates default to the mean of the data.
        """
        from scipy import special, stats

        eta, _ = self._eta(exposure, covariates)
        d = self.coefficient_draws()
        if self.kind == "binary":
            lin = d["intercept"].to_numpy()[:, None] + eta
            return special.expit(lin) if self.model == "logistic" else stats.norm.cdf(lin)
        if self.kind == "ordinal":
            cats = self.meta["categories"]
            k = int(cats[-1] if threshold is None else threshold)
            if k <= cats[0]:
                return np.ones_like(eta)
            j = min(k - cats[0], len(cats) - 1)
            return special.expit(eta - d[f"cut_{j}"].to_numpy()[:, None])
        t = float(self.meta["t_ref"] if threshold is None else threshold)
        return self.event_probability(exposure, [t], covariates)[..., 0]

    def paired_probability(self, exposure: Any, samples: Any,
                           covariates: dict[str, Any] | None = None,
                           threshold: float | None = None) -> np.ndarray:
        """Event probability of many patients, row ``i`` under posterior sample ``samples[i]``.

        Pairs each row of exposures (e.g. the virtual patients of one CK posterior draw) with
        one E-R posterior sample, so CK and E-R uncertainty travel together without the
        samples x points cross product of :meth:`probability`.

        Parameters
        ----------
        exposure : array, shape (n, m)
            Exposures as entered (natural scale), or ignored without an exposure term.
        samples : int array, shape (n,)
            Stacked (chain-major) posterior sample of each row.
        covariates : mapping of str to array, optional
            Natural-scale values of each covariate column (``BM_BLAST_PCT`` for a
            ``log(BM_BLAST_PCT)`` term), scalar or one per column of ``exposure``; default
            the mean of the data on the model scale.
        threshold : float, optional
            Ordinal: P(grade >= threshold) (default the highest grade seen). Time to event:
            P(event by this time, data time unit; default ``t_ref``), the cumulative incidence
            before any transplant when HSCT competes.

        Returns
        -------
        numpy.ndarray, shape (n, m)
        """
        from scipy import special, stats

        from ckmodel.response.analysis import covariate_column

        idx = np.asarray(samples, dtype=int)
        x = np.asarray(exposure, dtype=float)
        x = np.broadcast_to(x, (idx.size, x.shape[-1])) if x.ndim == 2 else \
            np.broadcast_to(x, (idx.size, x.size))
        cov = dict(covariates or {})

        def linear(suffix: str = "") -> np.ndarray:
            b = self.slopes(suffix)[idx]
            eta = np.zeros(x.shape)
            for j, t in enumerate(self.meta["terms"]):
                if j == 0 and self.exposure_metric is not None:
                    v = np.log(x) if self.exposure_scale == "log" else x
                else:
                    col = covariate_column(t)
                    if col in cov:
                        raw = np.asarray(cov[col], dtype=float)
                        v = np.broadcast_to(np.log(raw) if t.startswith("log(") else raw,
                                            (x.shape[1],))[None, :]
                    else:
                        v = np.full((1, x.shape[1]), float(self.meta["center"][j]))
                eta = eta + b[:, [j]] * v
            return eta

        eta = linear()
        if self.kind == "tte":
            t_at = float(self.meta["t_ref"] if threshold is None else threshold)
            eta_h = linear("_hsct") if "log_lambda_hsct" in self.idata.posterior else None
            return self._incidence(eta, eta_h, idx, [t_at])[..., 0]
        d = self.coefficient_draws()
        if self.kind == "binary":
            lin = d["intercept"].to_numpy()[idx, None] + eta
            return special.expit(lin) if self.model == "logistic" else stats.norm.cdf(lin)
        cats = self.meta["categories"]
        k = int(cats[-1] if threshold is None else threshold)
        if k <= cats[0]:
            return np.ones_like(eta)
        j = min(k - cats[0], len(cats) - 1)
        return special.expit(eta - d[f"cut_{j}"].to_numpy()[idx, None])

    def event_probability(self, exposure: Any, times: Any,
                          covariates: dict[str, float] | None = None) -> np.ndarray:
        """Time to event: P(event by each time), draws x exposures x times.

        1 - S(t); with allo-HSCT as a competing event, the cumulative incidence
        ``int_0^t h1(u) exp(-H1(u) - H2(u)) du`` (midpoint rule on 4000 steps to the last
        time, interpolated at each time).
        """
        if self.kind != "tte":
            raise ValueError("event_probability is for time-to-event models")
        eta, _ = self._eta(exposure, covariates)
        eta_h = (self._eta(exposure, covariates, "_hsct")[0]
                 if "log_lambda_hsct" in self.idata.posterior else None)
        return self._incidence(eta, eta_h, np.arange(eta.shape[0]), times)

    def _incidence(self, eta: np.ndarray, eta_h: np.ndarray | None, idx: np.ndarray,
                   times: Any) -> np.ndarray:
        """P(event by each time) for linear predictors ``eta`` (rows: samples ``idx``)."""
        times = np.atleast_1d(np.asarray(times, float))
        d = self.coefficient_draws().iloc[idx]
        if self.model == "piecewise":
            from ckmodel.response.likelihoods import piece_exposure

            at_risk, _ = piece_exposure(times, np.asarray(self.meta["cuts"]))
            cols = [c for c in d.columns if c.startswith("log_hazard_")]
            base = np.exp(d[cols].to_numpy()) @ at_risk.T  # rows x times
            return 1.0 - np.exp(-base[:, None, :] * np.exp(eta)[:, :, None])
        lam = np.exp(d["log_lambda"].to_numpy())[:, None, None]
        k = d["shape"].to_numpy()[:, None, None]
        e1 = np.exp(eta)[:, :, None]
        if eta_h is None:
            return 1.0 - np.exp(-lam * times[None, None, :] ** k * e1)
        e2 = np.exp(eta_h)[:, :, None]
        lam_h = np.exp(d["hsct: log_lambda"].to_numpy())[:, None, None]
        k_h = d["hsct: shape"].to_numpy()[:, None, None]
        edges = np.linspace(0.0, float(times.max()), 4001)
        mid = ((edges[:-1] + edges[1:]) / 2)[None, None, :]
        out = np.empty(e1.shape[:2] + (times.size,))
        for a in range(0, e1.shape[0], 256):  # chunks of draws bound the memory
            b = slice(a, a + 256)
            dens = (lam[b] * k[b] * mid ** (k[b] - 1) * e1[b]
                    * np.exp(-lam[b] * mid ** k[b] * e1[b] - lam_h[b] * mid ** k_h[b] * e2[b]))
            cif = np.concatenate([np.zeros(dens.shape[:2] + (1,)),
                                  np.cumsum(dens * np.diff(edges), axis=-1)], axis=-1)
            for j, tj in enumerate(times):
                out[b, :, j] = _interp_last(edges, cif, tj)
        return out

    def exposure_at(self, probability: float, covariates: dict[str, float] | None = None,
                    threshold: float | None = None) -> np.ndarray:
        """Posterior draws of the exposure (as entered) at which the probability is reached.

        Binary and ordinal (P(grade >= ``threshold``)) models: closed form per draw; e.g. the
        exposure giving a 30 % DLT probability. NaN where the slope is not positive.
        """
        from scipy import special, stats

        if self.exposure_metric is None:
            raise ValueError("this model has no exposure term")
        if self.kind == "tte":
            raise ValueError("exposure_at is defined for binary and ordinal models")
        if not 0.0 < probability < 1.0:
            raise ValueError(f"probability must be between 0 and 1, got {probability}")
        d = self.coefficient_draws()
        eta0, _ = self._eta(1.0 if self.exposure_scale == "log" else 0.0, covariates)
        b = self.slopes()[:, 0]
        rest = eta0[:, 0]  # the covariates' part: the exposure term is zero at log 1 (or 0)
        if self.kind == "binary":
            target = special.logit(probability) if self.model == "logistic" else \
                stats.norm.ppf(probability)
            g = (target - d["intercept"].to_numpy() - rest) / b
        else:
            cats = self.meta["categories"]
            k = int(cats[-1] if threshold is None else threshold)
            j = min(max(k - cats[0], 1), len(cats) - 1)
            g = (special.logit(probability) + d[f"cut_{j}"].to_numpy() - rest) / b
        g = np.where(b > 0, g, np.nan)
        if self.exposure_scale == "linear":
            return g
        with np.errstate(over="ignore"):  # a slope near 0 puts the exposure out of reach: inf
            return np.exp(g)

    def plot(self, **options: Any) -> Any:
        """:func:`ckmodel.plots.plot_response` of this fit."""
        from ckmodel.plots.response import plot_response

        return plot_response(self, **options)

    # --- files -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the fit as one NetCDF file (atomically); :func:`load_response` reads it."""
        from ckmodel.files import atomic_write

        header = {"endpoint": self.endpoint, "kind": self.kind, "model": self.model,
                  "exposure_metric": self.exposure_metric,
                  "exposure_scale": self.exposure_scale, "covariates": list(self.covariates),
                  "uncertainty": self.uncertainty, "hsct": self.hsct, "meta": self.meta}
        idata = self.idata.copy()
        idata.posterior.attrs["ckmodel_response"] = json.dumps(header, default=_jsonable)
        path = Path(path)
        atomic_write(path, lambda p: idata.to_netcdf(str(p)))
        return path


def _interp_last(x: np.ndarray, y: np.ndarray, t: float) -> np.ndarray:
    """Linear interpolation along the last axis of ``y`` (on the grid ``x``) at ``t``."""
    j = int(np.clip(np.searchsorted(x, t, side="right") - 1, 0, x.size - 2))
    w = (t - x[j]) / (x[j + 1] - x[j])
    return y[..., j] * (1 - w) + y[..., j + 1] * w


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.integer | np.floating):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def load_response(path: str | Path) -> ResponseFit:
    """Read a :meth:`ResponseFit.save` file (text and arrays only; nothing is executed)."""
    import arviz as az

    idata = az.from_netcdf(str(path))
    raw = idata.posterior.attrs.get("ckmodel_response")
    if raw is None:
        raise ValueError(f"{path}: not an exposure-response fit written by ckmodel")
    h = json.loads(raw)
    return ResponseFit(endpoint=h["endpoint"], kind=h["kind"], model=h["model"],
                       exposure_metric=h["exposure_metric"], exposure_scale=h["exposure_scale"],
                       covariates=tuple(h["covariates"]), uncertainty=h["uncertainty"],
                       hsct=h["hsct"], idata=idata, meta=h["meta"])
