"""The PyMC graphs of the exposure-response models, one function per kind.

All models share one linear predictor ``eta = sum_j beta_j (v_j - m_j) / s_j`` over
standardised predictors (the model-scale exposure first, then the covariates; ``m_j``, ``s_j``
their mean and SD), so the default priors mean the same for any unit (Gelman et al. 2008;
rstanarm's defaults):

- slopes per SD of a predictor ``Normal(0, 2.5)``; the intercept of binary models (at the
  predictors' means) ``Normal(0, 2.5)``;
- ordinal cut points ``Normal(0, 5)``, ordered;
- time to event, with times divided by ``t_ref`` (the median observed time): Weibull log
  scale ``Normal(0, 5)`` and log shape ``Normal(0, 1)``; piecewise-exponential log hazards
  ``Normal(0, 5)`` per piece.

With a few hundred subjects these priors are negligible and the posterior median sits on the
maximum-likelihood estimate. The outcome terms are written out (``pm.Potential`` for the
survival models), so a test can compare the compiled log density with the hand formula.

``propagate`` adds a latent model-scale exposure per subject, ``x_i ~ Normal(mu_i, sd_i)``
with ``mu_i``, ``sd_i`` the CK posterior mean and SD of that subject's (log) exposure: the
CK posterior enters as a normal approximation and the outcome model integrates over it, so
an exposure that the kinetics barely pin down widens the slope's interval instead of being
taken as known.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["make_design", "standardised", "linear_predictor", "binary_model", "competing_model",
           "ordinal_model", "weibull_model", "weibull_terms", "piecewise_model", "piece_exposure",
           "SLOPE_SD", "INTERCEPT_SD", "CUT_SD", "SCALE_SD", "SHAPE_SD"]

SLOPE_SD = 2.5
INTERCEPT_SD = 2.5
CUT_SD = 5.0
SCALE_SD = 5.0
SHAPE_SD = 1.0


def make_design(table: Any, terms: list[str], x_sd: np.ndarray | None = None) -> dict[str, Any]:
    """The predictors of a model: values, their mean and SD (standardisation), coords.

    ``table`` has one row per subject (index ID) and the ``terms`` columns (model scale);
    ``x_sd`` (propagate) makes the first term a latent exposure with these SDs around the
    table's values.
    """
    values = table[terms].to_numpy(float) if terms else np.zeros((len(table), 0))
    center = values.mean(axis=0) if terms else np.zeros(0)
    scale = values.std(axis=0, ddof=1) if terms else np.ones(0)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    design = {"terms": terms, "values": values, "center": center, "scale": scale,
              "n": len(table), "coords": {"term": terms, "subject": list(table.index)}}
    if x_sd is not None:
        design["x_mu"], design["x_sd"] = values[:, 0], x_sd
    return design


def standardised(design: dict[str, Any]) -> Any:
    """The standardised predictors of the current model (n x p), latent exposure included.

    ``design``: ``terms`` (names), ``values`` (n x p, model scale; under propagation the
    exposure column becomes the latent ``x_latent``), ``center``, ``scale`` (p), and
    optionally ``x_mu``, ``x_sd`` (per subject: propagate).
    """
    import pymc as pm
    import pytensor.tensor as pt

    values = pt.as_tensor_variable(np.asarray(design["values"], float))
    if design.get("x_mu") is not None:
        x = pm.Normal("x_latent", mu=design["x_mu"], sigma=design["x_sd"], dims="subject")
        values = pt.set_subtensor(values[:, 0], x)
    return (values - np.asarray(design["center"])) / np.asarray(design["scale"])


def linear_predictor(design: dict[str, Any], z: Any = None, suffix: str = "") -> Any:
    """``eta = z @ beta`` with ``beta{suffix}`` per SD of each predictor (zeros without terms)."""
    import pymc as pm
    import pytensor.tensor as pt

    if not design["terms"]:
        return pt.zeros(design["n"])
    z = standardised(design) if z is None else z
    beta = pm.Normal(f"beta{suffix}", 0.0, SLOPE_SD, dims="term")
    return pt.sum(z * beta[None, :], axis=1)  # (not dot: numba warns on strided matrices)


def binary_model(y: np.ndarray, design: dict[str, Any], *, link: str = "logistic") -> Any:
    """Bernoulli outcome, logit or probit link."""
    import pymc as pm

    with pm.Model(coords=design["coords"]) as model:
        eta = linear_predictor(design)
        alpha = pm.Normal("alpha", 0.0, INTERCEPT_SD)
        if link == "logistic":
            pm.Bernoulli("y", logit_p=alpha + eta, observed=y)
        else:
            pm.Bernoulli("y", p=pm.math.invprobit(alpha + eta), observed=y)
    return model


def ordinal_model(y: np.ndarray, design: dict[str, Any], n_categories: int) -> Any:
    """Proportional odds: ``P(Y <= k) = logistic(c_k - eta)``; higher eta, higher grade."""
    import pymc as pm

    coords = dict(design["coords"], cut=list(range(1, n_categories)))
    with pm.Model(coords=coords) as model:
        eta = linear_predictor(design)
        cut = pm.Normal("cutpoints", 0.0, CUT_SD, dims="cut",
                        transform=pm.distributions.transforms.ordered,
                        initval=np.linspace(-2.0, 2.0, n_categories - 1))
        pm.OrderedLogistic("y", eta=eta, cutpoints=cut, observed=y)
    return model


def weibull_model(time: np.ndarray, event: np.ndarray, design: dict[str, Any], t_ref: float,
                  name: str = "y") -> Any:
    """Weibull proportional hazards ``h(t) = lambda k (t/t_ref)^(k-1) e^eta / t_ref``.

    Log likelihood per subject: ``event * log h(t) - lambda (t/t_ref)^k e^eta`` (a censored
    subject contributes its survival only).
    """
    import pymc as pm

    with pm.Model(coords=design["coords"]) as model:
        weibull_terms(time, event, design, t_ref, name)
    return model


def weibull_terms(time: np.ndarray, event: np.ndarray, design: dict[str, Any], t_ref: float,
                  name: str, eta: Any = None) -> Any:
    """Add the Weibull PH likelihood of one cause to the current model (see above)."""
    import pymc as pm
    import pytensor.tensor as pt

    suffix = "" if name == "y" else f"_{name}"
    eta = linear_predictor(design) if eta is None else eta
    log_lam = pm.Normal(f"log_lambda{suffix}", 0.0, SCALE_SD)
    log_k = pm.Normal(f"log_shape{suffix}", 0.0, SHAPE_SD)
    k = pt.exp(log_k)
    u = np.asarray(time, float) / t_ref
    logu = np.log(np.maximum(u, 1e-300))
    d = np.asarray(event, float)
    log_h = log_lam + log_k + (k - 1.0) * logu + eta - np.log(t_ref)
    cum = pt.exp(log_lam + k * logu + eta)
    pm.Potential(name, pt.sum(d * log_h - cum))
    return eta


def competing_model(time: np.ndarray, event: np.ndarray, hsct: np.ndarray,
                    design: dict[str, Any], t_ref: float) -> Any:
    """Cause-specific Weibull hazards of the event and of allo-HSCT.

    Each cause has its own coefficients on the same predictors; a record ending in one cause
    is censored for the other.
    """
    import pymc as pm

    with pm.Model(coords=design["coords"]) as model:
        z = standardised(design) if design["terms"] else None
        eta = linear_predictor(design, z)
        weibull_terms(time, event, design, t_ref, "y", eta=eta)
        eta_h = linear_predictor(design, z, suffix="_hsct")
        weibull_terms(time, hsct, design, t_ref, "hsct", eta=eta_h)
    return model


def piece_exposure(time: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time each subject spends in each piece ``[cuts_j, cuts_j+1)``, and its event's piece."""
    edges = np.concatenate([[0.0], np.asarray(cuts, float), [np.inf]])
    t = np.asarray(time, float)[:, None]
    at_risk = np.clip(t - edges[None, :-1], 0.0, np.diff(edges)[None, :])
    piece = np.searchsorted(edges, np.asarray(time, float), side="right") - 1
    return at_risk, np.clip(piece, 0, len(edges) - 2)


def piecewise_model(time: np.ndarray, event: np.ndarray, design: dict[str, Any],
                    cuts: np.ndarray, t_ref: float) -> Any:
    """Piecewise-exponential PH: constant baseline hazard ``h_j / t_ref`` between cuts."""
    import pymc as pm
    import pytensor.tensor as pt

    at_risk, piece = piece_exposure(time, cuts)
    coords = dict(design["coords"], piece=list(range(1, len(cuts) + 2)))
    with pm.Model(coords=coords) as model:
        eta = linear_predictor(design)
        log_h = pm.Normal("log_hazard", 0.0, SCALE_SD, dims="piece")
        d = np.asarray(event, float)
        rate = pt.exp(log_h - np.log(t_ref))
        pm.Potential("y", pt.sum(d * (log_h[piece] - np.log(t_ref) + eta))
                     - pt.sum(pt.exp(eta) * pt.dot(at_risk, rate)))
    return model
