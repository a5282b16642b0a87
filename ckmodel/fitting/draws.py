"""Posterior draws of a fit as arrays, and new random effects from them.

The one place that turns a fit's posterior into what a simulation of *new* subjects needs
(diagnostics' replicates, virtual patients for dose selection):

- :func:`stacked_draws`: a posterior variable with chain and draw stacked first, chain-major;
- :func:`sample_index`: stacked indices of :func:`~ckmodel.fitting.result.thinned_draws`;
- :func:`typical_on_scale`: each fitted subject's typical value with its covariate effects,
  ``g(theta_i) - eta_i``, on the parameter's random-effect scale ``g`` (log, logit, linear);
- :func:`random_effects`: ``eta = L_d z`` for given standard normals ``z``, with ``L_d`` the
  draw's ``diag(omega)`` or, for correlated effects, the Cholesky factor of
  ``diag(omega) R diag(omega)``;
- :func:`natural_parameters`: back from the random-effect scale.

The fit builds ``g(theta_i) = mu + x_i beta + eta_i``, so ``g(theta_i) - eta_i`` holds
``mu + x_i beta`` draw by draw without re-deriving the covariate model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ckmodel.spec import from_scale, to_scale

__all__ = ["param_scale", "stacked_draws", "sample_index", "typical_on_scale",
           "random_effects", "natural_parameters", "iiv_names", "parameter_names"]

_EPS = 1e-12


def param_scale(x: Any, scale: str) -> np.ndarray:
    """:func:`ckmodel.spec.to_scale`, kept finite at the edges of the support."""
    lo, hi = {"log": (1e-300, np.inf), "logit": (_EPS, 1.0 - _EPS)}.get(scale, (-np.inf, np.inf))
    return to_scale(np.clip(np.asarray(x, dtype=float), lo, hi), scale)


def stacked_draws(fit: Any, name: str) -> np.ndarray:
    """Posterior variable ``name`` as an array (chain x draw stacked first, chain-major)."""
    da = fit.posterior[name]
    other = [d for d in da.dims if d not in ("chain", "draw")]
    return da.transpose("chain", "draw", *other).values.reshape(-1, *da.shape[2:])


def sample_index(fit: Any, n: int) -> np.ndarray:
    """Stacked (chain-major) indices of about ``n`` draws: the same thinned draws per chain."""
    from ckmodel.fitting.result import thinned_draws

    n_chain, n_draw = fit.posterior.sizes["chain"], fit.posterior.sizes["draw"]
    keep = thinned_draws(n_chain, n_draw, n)
    return (np.arange(n_chain)[:, None] * n_draw + keep[None, :]).ravel()


def parameter_names(fit: Any) -> list[str]:
    """Parameters of ``theta`` in its order."""
    return [str(p) for p in fit.posterior["theta"].parameter.values]


def iiv_names(fit: Any) -> list[str]:
    """Parameters with a random effect, in the order of ``omega`` and ``eta``."""
    if "eta" not in fit.posterior:
        return []
    eta = fit.posterior["eta"]
    return [str(v) for v in eta[eta.dims[-1]].values]


def typical_on_scale(fit: Any) -> np.ndarray:
    """``g(theta_i) - eta_i`` per draw and fitted subject: (samples, subjects, parameters).

    The typical value of each fitted subject with its own covariate effects, on each
    parameter's random-effect scale; samples stacked chain-major (:func:`stacked_draws`).
    """
    spec = fit.spec
    theta = fit.posterior["theta"].transpose("chain", "draw", "subject", "parameter")
    pnames = parameter_names(fit)
    th = theta.values.reshape(-1, *theta.shape[2:])
    g = np.stack([param_scale(th[..., j], spec.parameter(p).scale)
                  for j, p in enumerate(pnames)], axis=-1)
    iiv = iiv_names(fit)
    if iiv:
        eta = stacked_draws(fit, "eta")
        for k, p in enumerate(iiv):
            g[..., pnames.index(p)] -= eta[..., k]
    return g


def random_effects(fit: Any, samples: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Random effects ``L_d z`` of new subjects for posterior samples ``samples``.

    Parameters
    ----------
    fit : Fit
    samples : int array, shape (n,)
        Stacked sample indices (one per row of ``z``).
    z : array, shape (n, m, n_iiv)
        Standard normal deviates: ``m`` new subjects per sample, one per random effect
        (:func:`iiv_names` order).

    Returns
    -------
    numpy.ndarray, shape (n, m, n_iiv)
        Effects on each parameter's random-effect scale, ``N(0, Omega_d)`` given ``z``.
    """
    iiv = iiv_names(fit)
    if not iiv:
        return z
    omega = stacked_draws(fit, "omega")[samples]  # (n, n_iiv)
    if "chol_corr" in fit.posterior:
        corr = stacked_draws(fit, "chol_corr")[samples]
        cov = omega[:, :, None] * corr * omega[:, None, :]
        chol = np.linalg.cholesky(cov + 1e-12 * np.eye(len(iiv)))
        return np.einsum("rij,rsj->rsi", chol, z)
    return z * omega[:, None, :]


def natural_parameters(fit: Any, g: np.ndarray) -> dict[str, np.ndarray]:
    """Natural-scale parameters from random-effect-scale ones (..., n_params), flattened."""
    return {p: from_scale(g[..., j], fit.spec.parameter(p).scale).ravel()
            for j, p in enumerate(parameter_names(fit))}
