"""Centred, non-centred and partially centred random effects: one model, another geometry.

Oracles: the change of variables between parametrisations is affine, so the log densities
differ by exactly its log-Jacobian; under the prior every form gives eta ~ N(0, omega).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
from scipy import stats

from ckmodel.errors import ModelSpecError
from ckmodel.fitting.centering import describe_centering, shrinkage_weights
from ckmodel.population import prepare
from ckmodel.population.model import PopulationOptions, build_model, centering_matrix
from ckmodel.spec import load_model
from ckmodel.testing import simulate_ckdata


@pytest.fixture(scope="module")
def setup():
    spec = load_model("expansion_biphasic")
    data, _ = simulate_ckdata(spec, n=6, seed=3, lloq={"PB_QPCR": 50.0})
    pdata = prepare(data, spec)
    rng = np.random.default_rng(4)
    lam = rng.uniform(0.0, 1.0, (pdata.n_subjects, 6))
    lam[:, 0] = 1.0          # one effect fully centred, one non-centred, the others partial
    lam[:, 1] = 0.0
    return spec, pdata, lam


def _point(model, rng):
    """A random point of ``model``'s value variables (unconstrained)."""
    ip = model.initial_point()
    return {k: v + rng.normal(0.0, 0.3, np.shape(v)) for k, v in ip.items()}


def test_log_densities_differ_by_the_log_jacobian(setup):
    spec, pdata, lam = setup
    nc = build_model(spec, pdata, options=PopulationOptions(centered=(), iiv_sd="log"),
                     fused=True)
    pc = build_model(spec, pdata, options=PopulationOptions(centered=()), fused=True,
                     centering=lam)
    logp_nc, logp_pc = nc.compile_logp(), pc.compile_logp()
    outs = pc.replace_rvs_by_values([pc["eta"], pc["omega"]])
    eta_fn = pc.compile_fn(outs, inputs=pc.value_vars, on_unused_input="ignore")
    rng = np.random.default_rng(5)
    for _ in range(3):
        point = _point(pc, rng)
        eta, omega = eta_fn(point)
        other = dict(point)
        other["z"] = eta / omega                     # the same eta, standardised
        # z_nc = omega^-lam (z_pc - lam m): log |dz_nc / dz_pc| = -lam log(omega)
        expected = logp_nc(other) - np.sum(lam * np.log(omega))
        np.testing.assert_allclose(logp_pc(point), expected, rtol=1e-10, atol=1e-8)


def test_under_the_prior_eta_is_normal_with_sd_omega(setup):
    spec, pdata, lam = setup
    model = build_model(spec, pdata, options=PopulationOptions(centered=()), centering=lam)
    with model:
        prior = pm.sample_prior_predictive(draws=4000, random_seed=6, var_names=["eta",
                                                                                 "omega"]).prior
    std = (prior["eta"] / prior["omega"]).values.reshape(-1, 6)
    for k in range(6):
        assert stats.kstest(std[:, k], "norm").pvalue > 1e-3


def test_centering_options_and_their_checks():
    names = ["f0", "rho", "tmax"]
    assert centering_matrix("shrinkage", names, 2).sum() == 0
    np.testing.assert_array_equal(centering_matrix(("rho",), names, 2)[:, 1], [1.0, 1.0])
    np.testing.assert_array_equal(centering_matrix({"tmax": 0.4}, names, 2)[:, 2], [0.4, 0.4])
    spec = load_model("expansion_biphasic")
    with pytest.raises(ModelSpecError, match="must lie in"):
        PopulationOptions(centered={"rho": 1.5}).check(spec)
    with pytest.raises(ModelSpecError, match="not a parameter"):
        PopulationOptions(centered=("kel",)).check(spec)
    with pytest.raises(ModelSpecError, match="auto, whitened, shrinkage"):
        PopulationOptions(centered="yes").check(spec)
    with pytest.raises(ModelSpecError, match="cannot be combined"):
        PopulationOptions(centered=("rho",), correlated=True).check(spec)


def test_shrinkage_weights_are_one_minus_the_eta_shrinkage():
    import arviz as az

    rng = np.random.default_rng(7)
    omega = np.full((2, 500, 2), 0.5)
    # subject 0 well informed (posterior SD of eta/omega 0.3), subject 1 not at all (SD 1)
    sd = np.array([[0.3, 0.3], [1.0, 1.0]])
    eta = omega[:, :, None, :] * rng.normal(0.0, 1.0, (2, 500, 2, 2)) * sd
    idata = az.from_dict(posterior={"eta": eta, "omega": omega},
                         dims={"eta": ["subject", "iiv"], "omega": ["iiv"]})
    w = shrinkage_weights(idata)
    np.testing.assert_allclose(w[0], 1 - 0.09, atol=0.03)
    np.testing.assert_allclose(w[1], 0.0, atol=0.1)
    text = describe_centering({"centering": {"f0": {"median": 0.5, "min": 0.1, "max": 0.9}},
                               "options": {"centered": "shrinkage"}})
    assert "pilot" in text and "f0 0.50 (0.10-0.90)" in text
