"""Centring of random effects chosen from the data: a pilot run and the subjects' shrinkage.

Whether a random effect samples well centred (``g(theta_i) ~ N(m_i, omega)``) or non-centred
(``eta_i = omega z_i``) depends on how much subject i's data say about it. In the normal
approximation, with data information ``I_i`` about ``g(theta_i)``, the centred coordinate's
conditional variance ``1 / (1/omega^2 + I_i)`` and the non-centred one's ``1 / (1 + I_i omega^2)``
both depend on ``omega`` (the funnel), and the partially centred coordinate of weight

    lambda_i = I_i omega^2 / (1 + I_i omega^2)

is the one whose variance does not change with ``omega`` near the posterior: to first order the
funnel is gone (Papaspiliopoulos, Roberts & Skold, Stat Sci 2007; Gorinova, Moore & Hoffman,
ICML 2020). The same quantity is familiar from NONMEM: ``1 - lambda_i = var(eta_i | y) /
omega^2`` is subject i's variance-based eta shrinkage. So a short pilot run (non-centred, the
chains' own warm-up) gives every subject and effect its weight,

    lambda_ik = 1 - var(eta_ik / omega_k | y),

clipped to [0, 1], and the main run samples that parametrisation: the compiled model keeps the
weights in a data container, so nothing is compiled again. Sparse subjects (few samples, BLQ)
get weights near 0, rich ones near 1, and one effect can be centred for some subjects and not
for others (``fit(options=PopulationOptions(centered="shrinkage"))``, ``--centered shrinkage``).

It is not the default, because it lost: on the example trial, the sparse set and a rich
40-subject set the non-centred form gave the same or a higher lowest ESS
(``benchmarks/README.md``). The rule weighs each effect alone, and CK parameters are
confounded across effects: when the typical expansion rate moves, every subject's centred
``log f0_i`` must move with it (the data fix ``log f0_i + rho_i t``), a collective motion that a
diagonal mass matrix cannot make, while non-centred ``z_i`` stay put and one typical value
moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["shrinkage_weights", "centering_summary", "PILOT_TUNE", "PILOT_DRAWS",
           "WHITEN_PILOT_TUNE", "WHITEN_PILOT_DRAWS"]

#: Warm-up and draws per chain of the pilot run that sets the centring weights.
PILOT_TUNE = 200
#: Pilot draws per chain: enough for a subject's eta variance to about +-10 %.
PILOT_DRAWS = 100
#: Warm-up and draws per chain of the pilot run a whitening is built from: it needs each
#: subject's posterior mean and the SDs, not variances. On the 30-subject antigen_driven
#: benchmark (seeds 1, 2) 100 + 50 gave R-hat 1.01 and lowest ESS 586 and 232 in 448 and
#: 407 s of sampling, against 1.000 / 524 and 1.02 / 168 in 487 and 457 s after 200 + 100.
WHITEN_PILOT_TUNE = 100
WHITEN_PILOT_DRAWS = 50


def shrinkage_weights(idata: Any) -> np.ndarray:
    """Centring weights (subject, effect) from a posterior: 1 - var(eta / omega), in [0, 1].

    Parameters
    ----------
    idata : arviz.InferenceData
        A posterior with ``eta`` (chain, draw, subject, iiv) and ``omega`` (chain, draw, iiv).

    Returns
    -------
    ndarray
        Weights, subjects by random effects, in the order of the ``iiv`` coordinate.
    """
    post = idata.posterior
    ratio = (post["eta"] / post["omega"]).transpose("chain", "draw", "subject", "iiv").values
    flat = ratio.reshape(-1, *ratio.shape[2:])
    lam = 1.0 - np.nanvar(flat, axis=0)
    return np.clip(np.nan_to_num(lam, nan=0.0), 0.0, 1.0)


def centering_summary(weights: np.ndarray, iiv_names: list[str]) -> Mapping[str, dict[str, float]]:
    """Median and range of the weights per effect, for the fit's metadata and summary."""
    w = np.asarray(weights, dtype=float)
    return {name: {"median": round(float(np.median(w[:, k])), 3),
                   "min": round(float(w[:, k].min()), 3),
                   "max": round(float(w[:, k].max()), 3)}
            for k, name in enumerate(iiv_names)}


def describe_centering(meta: Mapping[str, Any]) -> str:
    """How a fit's random effects were parametrised, in words (summary and report).

    Says also which IIV SDs were sampled in signed form (``omega = |v|``,
    :func:`ckmodel.population.model.iiv_sd_forms`).
    """
    forms = meta.get("iiv_sd") or {}
    signed = [k for k, v in forms.items() if v == "signed"]
    text = _describe_weights(meta)
    if signed:
        text += ("; IIV SDs sampled in signed form (omega = |v|, v from the symmetric parent "
                 "of the prior): " + ", ".join(signed))
        logged = [k for k, v in forms.items() if v != "signed"]
        if logged:
            text += "; on the log scale: " + ", ".join(logged)
    return text


def _describe_weights(meta: Mapping[str, Any]) -> str:
    weights = meta.get("centering")
    centered = (meta.get("options") or {}).get("centered")
    if meta.get("whitened"):
        return ("random effects whitened by their conditional posterior given the typical "
                "values, IIV and residual SDs (ckmodel.population.whitening), built after "
                f"{meta['whitened']['after']}")
    if weights:
        how = ("chosen per subject from a pilot run" if centered == "shrinkage"
               else "as requested")
        parts = [f"{k} {v['median']:.2f}" + (f" ({v['min']:.2f}-{v['max']:.2f})"
                                              if v["max"] - v["min"] >= 0.005 else "")
                 for k, v in weights.items()]
        return (f"centring weights (0 non-centred, 1 centred), {how}: median (range) "
                + ", ".join(parts))
    if centered in ("shrinkage", "auto", "whitened") or not centered:
        return "all random effects non-centred"
    if isinstance(centered, Mapping):
        return "centring weights: " + ", ".join(f"{k} {float(v):.2f}" for k, v in
                                                centered.items())
    return "centred: " + ", ".join(centered)
