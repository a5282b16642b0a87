"""Censored and uncensored log-likelihood pieces against scipy and numerical integration."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import integrate, special, stats

from ckmodel.population.residual import (
    FUSED_ERRORS,
    RESIDUAL_MODELS,
    log_ndtr,
    pointwise_loglik,
    sample_residual,
)
from ckmodel.spec.model import ERROR_MODELS


def test_log_ndtr_matches_scipy_far_into_both_tails():
    z = np.concatenate([np.linspace(-60, -19.5, 200), np.linspace(-19.5, 8, 600)])
    f = pytensor.function([], log_ndtr(pt.as_tensor_variable(z)))
    # 1e-6 relative: below z = -20 the asymptotic series truncated after z^-6 errs by about
    # 105/z^8 < 1e-8; above it erfc is evaluated directly (accurate to ~1e-15 relative).
    np.testing.assert_allclose(f(), special.log_ndtr(z), rtol=1e-6, atol=1e-12)


def test_log_ndtr_gradient_is_finite_at_switch_and_in_tail():
    x = pt.dvector("x")
    g = pytensor.function([x], pytensor.grad(log_ndtr(x).sum(), x))
    z = np.array([-40.0, -20.0 - 1e-9, -20.0, -19.999, -5.0, 0.0, 3.0])
    grad = g(z)
    assert np.all(np.isfinite(grad))
    # d/dz log Phi(z) = phi(z)/Phi(z) (inverse Mills ratio); check to 1e-5 relative
    exact = np.exp(stats.norm.logpdf(z) - special.log_ndtr(z))
    np.testing.assert_allclose(grad, exact, rtol=1e-5)


def _ll(error, pred, value, blq, sigma, **kw):
    return pytensor.function([], pointwise_loglik(error, pt.as_tensor_variable(pred), value,
                                                  blq, pt.as_tensor_variable(sigma), **kw))()


@pytest.mark.parametrize("error,dens", [
    ("log_normal", lambda y, m, s: stats.lognorm.pdf(y, s, scale=m)),
    ("proportional", lambda y, m, s: stats.norm.pdf(y, m, s * m)),
    ("additive", lambda y, m, s: stats.norm.pdf(y, m, s)),
    ("student_t", lambda y, m, s: stats.t.pdf(np.log(y), 4.0, np.log(m), s) / y),
])
def test_censored_term_equals_integral_of_density_below_lloq(error, dens):
    pred = np.array([30.0, 80.0, 400.0])
    lloq = np.array([50.0, 50.0, 50.0])
    sigma = 0.6 if error != "additive" else 20.0
    got = np.exp(_ll(error, pred, lloq, np.ones(3, bool), sigma))
    lower = 0.0 if error in ("log_normal", "student_t") else -np.inf
    for i in range(3):
        want, _ = integrate.quad(dens, lower, lloq[i], args=(pred[i], sigma), epsabs=1e-13,
                                 limit=200)
        assert got[i] == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("error,logpdf", [
    ("log_normal", lambda y, m, s: stats.lognorm.logpdf(y, s, scale=m)),
    ("proportional", lambda y, m, s: stats.norm.logpdf(y, m, s * m)),
    ("additive", lambda y, m, s: stats.norm.logpdf(y, m, s)),
    ("combined", lambda y, m, s: stats.norm.logpdf(y, m, np.sqrt(s**2 + (0.2 * m) ** 2))),
])
def test_uncensored_density_is_density_of_dv(error, logpdf):
    pred = np.array([30.0, 80.0, 400.0])
    y = np.array([25.0, 120.0, 390.0])
    kw = {"sigma_prop": pt.as_tensor_variable(0.2)} if error == "combined" else {}
    got = _ll(error, pred, y, np.zeros(3, bool), 0.5, **kw)
    np.testing.assert_allclose(got, logpdf(y, pred, 0.5), rtol=1e-8)


def test_mixed_records_and_m1():
    pred = np.array([30.0, 80.0])
    value = np.array([50.0, 70.0])
    blq = np.array([True, False])
    m3 = _ll("log_normal", pred, value, blq, 0.5)
    m1 = _ll("log_normal", pred, value, blq, 0.5, blq_method="M1")
    assert m3[0] == pytest.approx(stats.norm.logcdf(np.log(50 / 30) / 0.5), rel=1e-10)
    assert m1[0] == 0.0
    assert m1[1] == pytest.approx(m3[1])


def test_every_error_model_is_in_the_table_and_samples_its_own_law():
    """The table covers the spec's error models; each sampler draws from the law whose
    density pointwise_loglik gives (Kolmogorov-Smirnov at n = 4000: a Monte-Carlo check)."""
    assert set(RESIDUAL_MODELS) == set(ERROR_MODELS)
    assert set(FUSED_ERRORS) == set(ERROR_MODELS) - {"student_t"}
    cdf = {"log_normal": lambda y: stats.norm.cdf(np.log(y / 50.0) / 0.3),
           "student_t": lambda y: stats.t.cdf(np.log(y / 50.0) / 0.3, 4.0),
           "proportional": lambda y: stats.norm.cdf(y, 50.0, 15.0),
           "additive": lambda y: stats.norm.cdf(y, 50.0, 0.3),
           "combined": lambda y: stats.norm.cdf(y, 50.0, np.hypot(0.3, 10.0))}
    for error in ERROR_MODELS:
        y = sample_residual(error, np.full(4000, 50.0), 0.3, np.random.default_rng(1),
                            sigma_prop=0.2, nu=4.0)
        assert stats.kstest(y, cdf[error]).pvalue > 1e-3, error
