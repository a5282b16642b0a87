"""Priors against posteriors: prior densities against their own samplers, contraction."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, special

from ckmodel.diagnostics import prior_posterior_densities, prior_posterior_table
from ckmodel.spec.prior import DISTRIBUTIONS, Prior

EXAMPLES = {
    "Normal": "Normal(1, 2)", "LogNormal": "LogNormal(log(0.9), 0.5)",
    "LogitNormal": "LogitNormal(-1, 0.8)", "HalfNormal": "HalfNormal(0.5)",
    "HalfCauchy": "HalfCauchy(0.3)", "HalfStudentT": "HalfStudentT(3, 0.5)",
    "StudentT": "StudentT(4, 1, 0.5)", "Exponential": "Exponential(2)",
    "Gamma": "Gamma(2, 3)", "Beta": "Beta(2, 5)", "Uniform": "Uniform(-1, 3)",
}


def test_every_distribution_has_an_example():
    assert set(EXAMPLES) == set(DISTRIBUTIONS)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_pdf_is_the_density_of_what_sample_draws(name):
    """The CDF integrated from pdf matches the empirical CDF of 50,000 draws: by the DKW
    inequality the sup distance exceeds 0.012 with probability below 1e-6."""
    prior = Prior.parse(EXAMPLES[name])
    x = np.sort(prior.sample(np.random.default_rng(7), 50_000))
    probe = np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95])
    support = prior.support
    lower = {"real": -np.inf, "positive": 0.0, "unit": 0.0}.get(
        support, prior.params.get("lower"))
    for q, value in zip([0.05, 0.25, 0.5, 0.75, 0.95], probe, strict=True):
        cdf, _ = integrate.quad(lambda t: float(prior.pdf(t)), lower, value, limit=200)
        assert cdf == pytest.approx(q, abs=0.012), (name, q)
    if support != "real":  # nothing below the support
        assert np.all(prior.pdf(np.array([lower - 5.0, lower - 1e-9])) == 0)


def test_densities_are_of_the_transformed_value(small_fit):
    """Prior curves integrate, over the value on the plotted scale, to the prior mass in the
    range (at least the 1st-99th percentile: 0.98); a missing Jacobian would not."""
    for it in prior_posterior_densities(small_fit, seed=1, bins=30):
        u = {"log": np.log, "logit": special.logit}.get(it["scale"], lambda v: v)(it["x"])
        mass = integrate.trapezoid(it["prior_density"], u)
        assert 0.97 < mass < 1.001, (it["name"], mass)
        ue = {"log": np.log, "logit": special.logit}.get(it["scale"], lambda v: v)(it["edges"])
        post = float(np.sum(it["posterior_density"] * np.diff(ue)))
        assert 0.99 < post <= 1.0 + 1e-9, it["name"]


def test_contraction_from_its_formula(small_fit):
    tab = prior_posterior_table(small_fit, seed=1)
    draws = small_fit.posterior["rho_pop"].values.ravel()
    prior = next(p.prior for p in small_fit.spec.parameters if p.name == "rho")
    u_prior = np.log(prior.sample(np.random.default_rng(1), 20_000))
    iqr = np.subtract(*np.quantile(np.log(draws), [0.75, 0.25]))
    iqr0 = np.subtract(*np.quantile(u_prior, [0.75, 0.25]))
    assert tab.loc["rho", "contraction"] == pytest.approx(1 - (iqr / iqr0) ** 2, rel=1e-12)
    assert tab.loc["rho", "median"] == pytest.approx(np.median(draws))
    assert (tab["contraction"] <= 1).all()
    assert {"rho", "omega_rho", "sigma_PB_QPCR"} <= set(tab.index)
