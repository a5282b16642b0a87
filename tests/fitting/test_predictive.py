"""Replicates and pointwise log-likelihood from the fused kernel against PyMC's."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from ckmodel.fitting.predictive import record_draws
from ckmodel.population import PopulationOptions, build_model, prepare
from ckmodel.population.predict import predict_outputs
from ckmodel.spec import load_model

ERRORS = ("log_normal", "proportional", "additive", "combined", "student_t")


def replicate_records(post, spec, pdata, errors, *, seed):
    return record_draws(post, spec, pdata, errors, seed=seed, loglik=False)[0]


@pytest.fixture(scope="module")
def setting(small_fit, sim_data):
    """The small fit's posterior thinned to 2 x 500 draws, its spec and records."""
    spec = load_model("expansion_biphasic")
    pdata = prepare(sim_data[0], spec)
    post = small_fit.idata.posterior.isel(chain=[0, 1], draw=slice(0, 1000, 2))
    return post, spec, pdata


def _with_sigma(post, sigma, prop=None):
    shape = (post.sizes["chain"], post.sizes["draw"])
    out = post.copy()
    out["sigma_PB_QPCR"] = (("chain", "draw"), np.broadcast_to(sigma, shape).copy())
    if prop is not None:
        out["sigma_prop_PB_QPCR"] = (("chain", "draw"), np.broadcast_to(prop, shape).copy())
    return out


@pytest.mark.parametrize("error", ERRORS)
def test_replicates_without_noise_are_the_closed_form_graph(setting, error):
    """With a residual SD of 1e-12 a replicate is the prediction: the plain PyTensor closed
    form (``closed_graph``) of each draw's theta, to 1e-9 relative."""
    post, spec, pdata = setting
    post = _with_sigma(post, 1e-12, 1e-12 if error == "combined" else None)
    y = replicate_records(post, spec, pdata, {"PB_QPCR": error}, seed=3)["y_PB_QPCR"]
    theta = pt.matrix("theta")
    graph = pytensor.function([theta], predict_outputs(spec, pdata, theta,
                                                       method="closed_graph")["PB_QPCR"])
    for c, d in [(0, 0), (1, 137), (0, 499)]:
        t = post["theta"].isel(chain=c, draw=d).sel(parameter=list(spec.param_names)).values
        np.testing.assert_allclose(y.isel(chain=c, draw=d).values, graph(t), rtol=1e-9,
                                   atol=1e-12 if error in ("additive", "combined") else 0)


@pytest.mark.parametrize("error", ERRORS)
def test_replicates_match_pymc_in_distribution(setting, error):
    """Per record, median and interquartile range of 1,000 replicates agree with PyMC's
    ``sample_posterior_predictive`` on the model with observed ``y`` (same posterior,
    other random numbers). Tolerances from the null: two runs of ``replicate_records`` with
    other seeds differed, over the ~250 records and 10 repetitions per error model, by at most
    0.16 IQR in the median (median of the maxima 0.11) and 27 % in the IQR (median 0.17); a
    residual SD off by half moves the IQR of the noise-dominated records by 50 % or more."""
    import pymc as pm

    post, spec, pdata = setting
    prop = 0.2 if error == "combined" else None
    sigma = {"additive": 20.0, "combined": 5.0}.get(error, 0.4)
    post = _with_sigma(post, sigma, prop)
    ours = replicate_records(post, spec, pdata, {"PB_QPCR": error}, seed=4)["y_PB_QPCR"]
    model = build_model(spec, pdata, options=PopulationOptions(error={"PB_QPCR": error}))
    with model:
        ref = pm.sample_posterior_predictive(post, random_seed=5, progressbar=False,
                                             extend_inferencedata=False)
    ref = ref.posterior_predictive["y_PB_QPCR"]
    assert ours.dims == ref.dims and ours.shape == ref.shape
    np.testing.assert_array_equal(ours["obs_PB_QPCR"].values, ref["obs_PB_QPCR"].values)
    a = ours.stack(s=("chain", "draw")).values
    b = ref.stack(s=("chain", "draw")).values
    qa = np.quantile(a, [0.25, 0.5, 0.75], axis=1)
    qb = np.quantile(b, [0.25, 0.5, 0.75], axis=1)
    iqr = qb[2] - qb[0]
    assert np.max(np.abs(qa[1] - qb[1]) / iqr) < 0.25
    assert np.max(np.abs((qa[2] - qa[0]) / iqr - 1)) < 0.35


def test_each_draw_uses_its_own_residual_sd(setting):
    """Residual SDs from 0.05 to 1 over the draws: each draw's SD of log(y / prediction)
    over its ~250 records is that draw's sigma (relative SE ~4.5 %; 25 % allowed)."""
    post, spec, pdata = setting
    sig = np.exp(np.linspace(np.log(0.05), 0.0, post.sizes["draw"]))[None, :].repeat(2, 0)
    noisy = replicate_records(_with_sigma(post, sig), spec, pdata, {"PB_QPCR": "log_normal"},
                              seed=6)["y_PB_QPCR"].values
    clean = replicate_records(_with_sigma(post, 1e-12), spec, pdata,
                              {"PB_QPCR": "log_normal"}, seed=6)["y_PB_QPCR"].values
    sd = np.log(noisy / clean).std(axis=-1)
    np.testing.assert_allclose(sd, sig, rtol=0.25)


def test_same_seed_same_replicates(setting):
    post, spec, pdata = setting
    a = replicate_records(post, spec, pdata, {"PB_QPCR": "log_normal"}, seed=9)
    b = replicate_records(post, spec, pdata, {"PB_QPCR": "log_normal"}, seed=9)
    c = replicate_records(post, spec, pdata, {"PB_QPCR": "log_normal"}, seed=10)
    assert a.equals(b) and not a.equals(c)


@pytest.mark.parametrize("error", ERRORS)
def test_pointwise_loglik_is_pymcs(setting, error):
    """The pointwise log-likelihood (M3 terms on the BLQ records included) equals
    :func:`pymc.compute_log_likelihood` on the model with observed ``y``, draw by draw, to
    1e-9 (the same definition evaluated by another backend)."""
    import pymc as pm

    post, spec, pdata = setting
    assert pdata.blq.any()
    post = _with_sigma(post.isel(draw=slice(0, 100)),
                       {"additive": 20.0, "combined": 5.0}.get(error, 0.4),
                       0.2 if error == "combined" else None)
    pp, ours = record_draws(post, spec, pdata, {"PB_QPCR": error}, seed=1, replicates=False)
    assert pp is None
    model = build_model(spec, pdata, options=PopulationOptions(error={"PB_QPCR": error}))
    with model:
        ref = pm.compute_log_likelihood(_as_idata(post), progressbar=False,
                                        extend_inferencedata=False)["y_PB_QPCR"]
    ours = ours["y_PB_QPCR"]
    assert ours.dims == ref.dims
    np.testing.assert_allclose(ours.values, ref.values, rtol=1e-9, atol=1e-9)


def _as_idata(post):
    from ckmodel._arviz import az

    return az.InferenceData(posterior=post)
