"""IIV SDs in signed form: ``omega = |v|``, ``eta = v z``; the same model, another geometry.

Oracles: with ``v ~ Normal(0, s)`` and ``z`` symmetric, ``(|v|, v z)`` has the joint law of
``(omega, omega z)`` under ``omega ~ HalfNormal(s)``, so at matching points the log densities
of the two forms differ by exactly ``log 2`` per SD (the half-normal's normalisation) plus
``log omega`` (the Jacobian of PyMC's log transform); ``(v, z)`` and ``(-v, -z)`` have the same
density; and under the prior ``|v|`` is half-normal (Kolmogorov-Smirnov).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
from scipy import stats

from ckmodel.errors import ModelSpecError
from ckmodel.fitting.centering import describe_centering
from ckmodel.fitting.convergence import convergence_table
from ckmodel.population import prepare
from ckmodel.population.model import PopulationOptions, build_model, iiv_sd_forms
from ckmodel.spec import load_model
from ckmodel.testing import simulate_ckdata


@pytest.fixture(scope="module")
def setup():
    spec = load_model("expansion_biphasic")
    data, _ = simulate_ckdata(spec, n=6, seed=3, lloq={"PB_QPCR": 50.0})
    return spec, prepare(data, spec)


@pytest.mark.parametrize("fused", [True, False])
def test_log_densities_differ_by_log_2_and_the_log_jacobian(setup, fused):
    spec, pdata = setup
    signed = build_model(spec, pdata, options=PopulationOptions(iiv_sd="signed"), fused=fused)
    logged = build_model(spec, pdata, options=PopulationOptions(iiv_sd="log"), fused=fused)
    names = [n for n in spec.param_names if spec.parameter(n).iiv is not None]
    assert {f"omega_{n}_signed" for n in names} <= {v.name for v in signed.value_vars}
    logp_s, logp_l = signed.compile_logp(), logged.compile_logp()
    det = signed.compile_fn(signed.replace_rvs_by_values([signed["omega"], signed["eta"]]),
                            inputs=signed.value_vars, on_unused_input="ignore")
    det_l = logged.compile_fn(logged.replace_rvs_by_values([logged["omega"], logged["eta"]]),
                              inputs=logged.value_vars, on_unused_input="ignore")
    rng = np.random.default_rng(7)
    for _ in range(4):
        point = {k: v + rng.normal(0.0, 0.3, np.shape(v))
                 for k, v in signed.initial_point().items()}
        v = np.array([point[f"omega_{n}_signed"] for n in names])
        v *= rng.choice([-1.0, 1.0], v.size)            # both signs
        point.update({f"omega_{n}_signed": v[k] for k, n in enumerate(names)})
        other = {k: x for k, x in point.items() if not k.endswith("_signed")}
        other.update({f"omega_{n}_log__": np.log(abs(v[k])) for k, n in enumerate(names)})
        other["z"] = point["z"] * np.sign(v)            # the same eta = v z = |v| z'
        expected = logp_l(other) - np.sum(np.log(2.0) + np.log(np.abs(v)))
        np.testing.assert_allclose(logp_s(point), expected, rtol=1e-10, atol=1e-8)
        omega, eta = det(point)
        omega_l, eta_l = det_l(other)
        np.testing.assert_allclose(omega, np.abs(v), rtol=1e-14)
        np.testing.assert_allclose(omega, omega_l, rtol=1e-14)
        np.testing.assert_allclose(eta, eta_l, rtol=1e-14)
        mirror = dict(point, z=-point["z"])             # (v, z) -> (-v, -z): same density
        mirror.update({f"omega_{n}_signed": -v[k] for k, n in enumerate(names)})
        np.testing.assert_allclose(logp_s(mirror), logp_s(point), rtol=1e-12)


def test_under_the_prior_omega_has_the_half_normal_prior_and_eta_sd_omega(setup):
    spec, pdata = setup
    model = build_model(spec, pdata, options=PopulationOptions(iiv_sd="signed"))
    with model:
        prior = pm.sample_prior_predictive(draws=4000, random_seed=8,
                                           var_names=["omega", "eta"]).prior
    omega = prior["omega"].values.reshape(-1, prior["omega"].shape[-1])
    std = (prior["eta"] / prior["omega"]).values.reshape(-1, omega.shape[1])
    for k, name in enumerate(prior["omega"].coords["iiv"].values):
        s = spec.parameter(str(name)).iiv.params["sigma"]
        assert stats.kstest(omega[:, k], stats.halfnorm(scale=s).cdf).pvalue > 1e-3
        assert stats.kstest(std[:, k], "norm").pvalue > 1e-3


def test_forms_per_effect_and_their_checks():
    spec = load_model("expansion_biphasic")
    assert set(iiv_sd_forms(spec, PopulationOptions()).values()) == {"signed"}
    assert set(iiv_sd_forms(spec, PopulationOptions(iiv_sd="log")).values()) == {"log"}
    assert set(iiv_sd_forms(spec, PopulationOptions(centered=("f0",))).values()) == {"log"}
    assert set(iiv_sd_forms(spec, PopulationOptions(correlated=True)).values()) == {"log"}
    weights = np.zeros((3, 6))                  # centring weights given (a pilot run's start)
    assert set(iiv_sd_forms(spec, PopulationOptions(), weights).values()) == {"log"}
    expo = spec.with_parameter("rho", iiv="Exponential(5)")
    forms = iiv_sd_forms(expo, PopulationOptions())
    assert forms["rho"] == "log" and forms["f0"] == "signed"
    with pytest.raises(ModelSpecError, match=r"'rho' \(Exponential\(5\)\) is not a half"):
        PopulationOptions(iiv_sd="signed").check(expo)
    with pytest.raises(ModelSpecError, match="non-centred, uncorrelated"):
        PopulationOptions(iiv_sd="signed", centered=("f0",)).check(spec)
    with pytest.raises(ModelSpecError, match="non-centred, uncorrelated"):
        PopulationOptions(iiv_sd="signed", correlated=True).check(spec)
    with pytest.raises(ModelSpecError, match=r"\(--iiv-sd\) must be one of auto, signed"):
        PopulationOptions(iiv_sd="folded").check(spec)
    PopulationOptions(iiv_sd="signed").check(spec.with_parameter("rho", iiv="HalfCauchy(0.5)"))


def test_a_mixed_model_samples_its_folded_priors_signed(setup):
    spec, pdata = setup
    mixed = spec.with_parameter("rho", iiv="Exponential(5)").with_parameter(
        "tmax", iiv="HalfStudentT(3, 0.3)").with_parameter("alpha", iiv="HalfCauchy(0.4)")
    model = build_model(mixed, pdata, options=PopulationOptions())
    free = {v.name for v in model.free_RVs}
    assert {"omega_f0_signed", "omega_tmax_signed", "omega_alpha_signed"} <= free
    assert "omega_rho" in free and "omega_rho_signed" not in free
    with model:
        prior = pm.sample_prior_predictive(draws=3000, random_seed=9, var_names=["omega"]).prior
    draws = prior["omega"].sel(iiv="tmax").values.ravel()
    assert stats.kstest(draws, lambda x: 2 * stats.t(3, scale=0.3).cdf(x) - 1).pvalue > 1e-3
    draws = prior["omega"].sel(iiv="alpha").values.ravel()
    assert stats.kstest(draws, stats.halfcauchy(scale=0.4).cdf).pvalue > 1e-3


def test_signed_sds_are_judged_by_their_absolute_value():
    import arviz as az

    rng = np.random.default_rng(10)
    v = np.abs(rng.normal(1.0, 0.1, (4, 200))) * np.array([1, -1, 1, -1])[:, None]
    idata = az.from_dict(posterior={"omega_f0_signed": v, "omega_f0": np.abs(v)})
    table = convergence_table(idata)
    assert list(table.index) == ["omega_f0"]        # the mirror modes are not a failure
    assert table.loc["omega_f0", "r_hat"] < 1.01
    text = describe_centering({"iiv_sd": {"f0": "signed", "rho": "log"}, "options": {}})
    assert "signed form" in text and "f0" in text and "log scale: rho" in text
