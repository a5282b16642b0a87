"""The fused closed-form log-likelihood against the pointwise PyTensor likelihood it replaces
when sampling (values and gradients, per error model, censored and not), its normal log-CDF
against scipy, and the whole fused model against the pointwise one."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from scipy import special, stats

from ckmodel.population import prepare
from ckmodel.population.closed_kernel import ClosedFormOp
from ckmodel.population.closed_loglik import ClosedFormLogLik, closed_loglik
from ckmodel.population.model import PopulationOptions, build_model
from ckmodel.population.predict import closed_kernels
from ckmodel.population.residual import (
    CENSORED,
    FUSED_ERRORS,
    QUANTIFIED,
    RESIDUAL_MODELS,
    pointwise_loglik,
    scalar_log_ndtr,
)
from ckmodel.spec import load_model
from ckmodel.testing import simulate_ckdata

# residual SDs on each error model's own scale, and the proportional part of "combined"
SIGMA = {"log_normal": 0.5, "proportional": 0.4, "additive": 300.0, "combined": 200.0}
SIGMA_PROP = 0.3


@pytest.fixture(scope="module")
def records():
    """Simulated records of two outputs with many BLQ ones (high LLOQ), and random thetas."""
    spec = load_model("blood_marrow")
    data, _ = simulate_ckdata(spec, n=5, seed=11, lloq={"PB_QPCR": 400.0, "BM_QPCR": 400.0,
                                                         "PB_FLOW": 2.0})
    pdata = prepare(data, spec)
    assert 0.1 < pdata.blq.mean() < 0.9
    rng = np.random.default_rng(12)
    base = np.array([p.value for p in spec.parameters])
    theta = base * np.exp(rng.normal(0.0, 0.3, (pdata.n_subjects, base.size)))
    return spec, pdata, closed_kernels(spec, pdata), theta


def _analyte_arrays(pdata, a):
    sel = pdata.analyte_index == pdata.analytes.index(a)
    blq = pdata.blq[sel]
    return np.where(blq, pdata.lloq[sel], pdata.dv[sel]), blq


@pytest.mark.parametrize("error,blq_method,mode", [
    *[(e, "M3", "FAST_RUN") for e in FUSED_ERRORS],
    ("log_normal", "M1", "FAST_RUN"),
    ("log_normal", "M3", "NUMBA"),  # the dispatch nutpie uses
])
def test_fused_matches_pointwise_value_and_gradients(records, error, blq_method, mode):
    """Sum of the pointwise graph vs the fused kernel, and their gradients in theta and both
    SDs: the same function evaluated in a different order, so equal to rounding (1e-10)."""
    spec, pdata, kernels, theta = records
    th, s, sp_ = pt.dmatrix("theta"), pt.dscalar("s"), pt.dscalar("sp")
    a = "PB_QPCR"
    value, blq = _analyte_arrays(pdata, a)
    pred = ClosedFormOp(kernels[a])(th)[0]
    if error in ("log_normal", "proportional"):
        pred = pt.maximum(pred, 1e-300)
    ref = pointwise_loglik(error, pred, value, blq, s, sigma_prop=sp_,
                           blq_method=blq_method).sum()
    lik = ClosedFormLogLik(kernels[a], error, value, blq, blq_method)
    fused = closed_loglik(lik, th, s, sp_ if error == "combined" else None)
    wrt = [th, s, sp_] if error == "combined" else [th, s]
    outs = [ref, *pt.grad(ref, wrt), fused, *pt.grad(fused, wrt)]
    f = pytensor.function([th, s, sp_], outs, mode=mode, on_unused_input="ignore")
    got = f(theta, SIGMA[error], SIGMA_PROP)
    n = len(wrt) + 1
    assert np.isfinite(got[0])
    for x, y in zip(got[:n], got[n:], strict=True):
        np.testing.assert_allclose(y, x, rtol=1e-10, atol=1e-10 * np.abs(x).max(),
                                   err_msg=f"{a} {error} {blq_method} {mode}")


@pytest.mark.parametrize("error", FUSED_ERRORS)
def test_fused_gradient_matches_finite_differences(records, error):
    """Central differences in each subject's parameters (relative step 1e-6) and in the SDs:
    truncation ~1e-12, rounding ~1e-9 of the log-likelihood scale; asserted at 1e-5."""
    spec, pdata, kernels, theta = records
    a = "PB_QPCR"
    value, blq = _analyte_arrays(pdata, a)
    lik = ClosedFormLogLik(kernels[a], error, value, blq)
    sig = np.array([SIGMA[error], SIGMA_PROP])
    ll, gtheta, gsig = lik(theta, sig)
    for i in range(0, theta.shape[0], 2):
        for j in range(theta.shape[1]):
            h = 1e-6 * theta[i, j]
            up, dn = theta.copy(), theta.copy()
            up[i, j] += h
            dn[i, j] -= h
            fd = (lik(up, sig)[0] - lik(dn, sig)[0]) / (2 * h)
            assert gtheta[i, j] == pytest.approx(fd, rel=1e-5, abs=1e-7 * abs(ll) / theta[i, j])
    for j in range(2 if error == "combined" else 1):
        h = 1e-6 * sig[j]
        up, dn = sig.copy(), sig.copy()
        up[j] += h
        dn[j] -= h
        fd = (lik(theta, up)[0] - lik(theta, dn)[0]) / (2 * h)
        assert gsig[j] == pytest.approx(fd, rel=1e-5)
    if error != "combined":
        assert gsig[1] == 0.0


def test_log_ndtr_and_derivative_match_scipy():
    """Value to 1e-6 relative (the truncated tail series, as in the PyTensor version) and the
    derivative against the inverse Mills ratio phi/Phi (1e-5; exact on the erfc branches)."""
    z = np.concatenate([np.linspace(-60, -20.5, 100), np.linspace(-19.5, 8, 300)])
    got = np.array([scalar_log_ndtr(v) for v in z])
    np.testing.assert_allclose(got[:, 0], special.log_ndtr(z), rtol=1e-6, atol=1e-12)
    mills = np.exp(stats.norm.logpdf(z) - special.log_ndtr(z))
    np.testing.assert_allclose(got[:, 1], mills, rtol=1e-5)
    body = z > -20
    np.testing.assert_allclose(got[body, 1], mills[body], rtol=1e-12)


def test_prediction_floor_has_no_gradient():
    """A prediction under 1e-300 is floored as in the pointwise graph (pt.maximum): finite
    log density, zero derivative in the prediction."""
    lik = RESIDUAL_MODELS["log_normal"].numba
    for cens in (QUANTIFIED, CENSORED):
        lv, dp, ds, _ = lik(1e-320, 10.0, np.log(10.0), cens, 0.5, 0.0)
        assert np.isfinite(lv) and np.isfinite(ds) and dp == 0.0


def test_refuses_unknown_error_model_and_non_positive_values(records):
    spec, pdata, kernels, _ = records
    value, blq = _analyte_arrays(pdata, "PB_QPCR")
    with pytest.raises(ValueError, match="student_t"):
        ClosedFormLogLik(kernels["PB_QPCR"], "student_t", value, blq)
    bad = value.copy()
    bad[np.flatnonzero(~blq)[0]] = 0.0
    with pytest.raises(ValueError, match="PB_QPCR: log-normal error needs positive values"):
        ClosedFormLogLik(kernels["PB_QPCR"], "log_normal", bad, blq)


@pytest.fixture(scope="module")
def fused_pair(records):
    spec, pdata, _, _ = records
    opts = PopulationOptions(error={"PB_FLOW": "combined"})
    return {f: build_model(spec, pdata, options=opts, fused=f) for f in (False, True)}


def test_fused_model_has_the_same_free_variables_and_no_observed(fused_pair):
    plain, fused = fused_pair[False], fused_pair[True]
    assert [v.name for v in fused.free_RVs] == [v.name for v in plain.free_RVs]
    assert not fused.observed_RVs
    assert sorted(p.name for p in fused.potentials) == [
        "loglik_BM_QPCR", "loglik_PB_FLOW", "loglik_PB_QPCR"]


def test_fused_model_log_density_and_gradient_match_pointwise(fused_pair):
    """Whole-model log density (priors, hierarchy, three analytes, M3) and its gradient at
    random points: equal to rounding (1e-9 relative). (The numba dispatch is checked per
    analyte above, and by the nutpie fits in tests/test_fit.py.)"""
    fns = {}
    for f, m in fused_pair.items():
        logp = m.logp()
        fns[f] = pytensor.function(m.value_vars, [logp, *pt.grad(logp, m.value_vars)])
    m = fused_pair[False]
    ip = m.initial_point()
    rng = np.random.default_rng(13)
    for _ in range(3):
        args = [np.asarray(ip[v.name]) + rng.normal(0, 0.3, np.shape(ip[v.name]))
                for v in m.value_vars]
        for x, y in zip(fns[False](*args), fns[True](*args), strict=True):
            np.testing.assert_allclose(y, x, rtol=1e-9, atol=1e-9)


def test_student_t_analyte_keeps_the_pointwise_likelihood(records):
    spec, pdata, _, _ = records
    m = build_model(spec, pdata, options=PopulationOptions(error={"PB_QPCR": "student_t"}),
                    fused=True)
    assert [v.name for v in m.observed_RVs] == ["y_PB_QPCR"]
    assert {p.name for p in m.potentials} == {"loglik_BM_QPCR", "loglik_PB_FLOW"}
    assert isinstance(m, pm.Model)
