"""simulate(): layout of the Dataset, seeding, typical curves, residual error, BLQ flags."""

from __future__ import annotations

import numpy as np
import pytest

from ckmodel.simulate import DEFAULT_TIMES, individual_parameters, simulate
from ckmodel.solve import evaluate_outputs, solve_states
from ckmodel.spec import load_model

TIMES = np.array([0.0, 1.0, 3.0, 7.0, 9.0, 14.0, 28.0, 90.0, 180.0, 365.0])


@pytest.fixture(scope="module")
def ds():
    return simulate("qpcr_flow_link", n=4, dose=[0.5, 2.0, 6.0], times=TIMES, seed=42,
                    lloq={"PB_QPCR": 50.0})


def test_dims_and_coords(ds):
    spec = load_model("qpcr_flow_link")
    assert dict(ds.sizes) == {"subject": 12, "time": TIMES.size, "analyte": 2, "state": 2,
                              "parameter": len(spec.param_names)}
    assert ds["pred"].dims == ds["obs"].dims == ds["blq"].dims == ("subject", "analyte", "time")
    assert ds["states"].dims == ("subject", "state", "time")
    assert ds["params"].dims == ("subject", "parameter")
    assert ds["lloq"].dims == ("analyte",)
    assert list(ds.subject.values) == [f"S{i:05d}" for i in range(1, 13)]
    np.testing.assert_array_equal(ds.time.values, TIMES)
    assert list(ds.analyte.values) == ["PB_QPCR", "PB_FLOW"]
    assert list(ds.state.values) == ["E", "M"]
    assert list(ds.parameter.values) == list(spec.param_names)
    assert ds.dose.dims == ("subject",)
    assert ds.attrs["model"] == "qpcr_flow_link" and ds.attrs["seed"] == 42
    assert ds.attrs["model_hash"] == spec.hash()
    assert ds.attrs["time_unit"] == "day" and ds.attrs["iiv"] == 1 and ds.attrs["residual"] == 1
    assert np.all(np.isfinite(ds["obs"].values)) and np.all(ds["obs"].values > 0)


def test_dose_levels_repeat_n_subjects_each(ds):
    np.testing.assert_array_equal(ds.dose.values, np.repeat([0.5, 2.0, 6.0], 4))
    # at t = 0 the blood level is f0 * dose (no residual error in pred)
    f0 = ds["params"].sel(parameter="f0").values
    np.testing.assert_allclose(ds["pred"].sel(analyte="PB_QPCR", time=0.0).values,
                               f0 * ds.dose.values, rtol=1e-12)


def test_outputs_are_consistent_with_states_and_params(ds):
    spec = load_model("qpcr_flow_link")
    pars = {p: ds["params"].sel(parameter=p).values for p in spec.param_names}
    states = solve_states(spec, pars, TIMES, amt=ds.dose.values)
    np.testing.assert_allclose(ds["states"].values, states, rtol=1e-13)
    pred = evaluate_outputs(spec, states, pars, TIMES)
    for a in ds.analyte.values:
        np.testing.assert_allclose(ds["pred"].sel(analyte=a).values, pred[a], rtol=1e-13)
    np.testing.assert_allclose(ds["pred"].sel(analyte="PB_FLOW").values,
                               ds["pred"].sel(analyte="PB_QPCR").values
                               / pars["cpc"][:, None], rtol=1e-13)


def test_lloq_flags(ds):
    obs = ds["obs"].sel(analyte="PB_QPCR").values
    np.testing.assert_array_equal(ds["blq"].sel(analyte="PB_QPCR").values, obs < 50.0)
    assert ds["blq"].sel(analyte="PB_QPCR").values.any()
    assert not ds["blq"].sel(analyte="PB_QPCR").values.all()
    # no LLOQ for the flow analyte: never flagged
    assert not ds["blq"].sel(analyte="PB_FLOW").values.any()
    assert ds["lloq"].sel(analyte="PB_QPCR") == 50.0
    assert np.isnan(ds["lloq"].sel(analyte="PB_FLOW"))
    assert "blq" not in simulate("expansion_biphasic", n=2, times=TIMES, seed=1)


def test_seeded_reproducibility():
    a = simulate("expansion_biphasic", n=5, dose=2.0, times=TIMES, seed=3)
    b = simulate("expansion_biphasic", n=5, dose=2.0, times=TIMES, seed=3)
    c = simulate("expansion_biphasic", n=5, dose=2.0, times=TIMES, seed=4)
    for v in ("obs", "pred", "params", "states"):
        np.testing.assert_array_equal(a[v].values, b[v].values)
        assert not np.array_equal(a[v].values, c[v].values), v
    assert a.identical(b)
    assert simulate("expansion_biphasic", n=2, times=TIMES).attrs["seed"] == -1


def test_typical_curve_equals_solver_output():
    spec = load_model("expansion_biphasic")
    ds = simulate(spec, n=3, dose=[1.0, 4.0], times=TIMES, seed=9, iiv=False, residual=False)
    p = spec.typical_values()
    amt = np.repeat([1.0, 4.0], 3)
    states = solve_states(spec, {k: np.full(6, v) for k, v in p.items()}, TIMES, amt=amt)
    # simulate() maps typical values to the log/logit scale and back: exp(log(x)) differs
    # from x in the last bit, which exp(rho * t) with rho * t ~ 300 amplifies to ~1e-14
    np.testing.assert_allclose(ds["states"].values, states, rtol=1e-13, atol=0)
    pred = evaluate_outputs(spec, states, p, TIMES)["PB_QPCR"]
    np.testing.assert_allclose(ds["pred"].sel(analyte="PB_QPCR").values, pred, rtol=1e-13)
    np.testing.assert_array_equal(ds["obs"].values, ds["pred"].values)
    np.testing.assert_allclose(ds["params"].values,
                               np.tile([p[k] for k in spec.param_names], (6, 1)), rtol=1e-15)
    assert ds.attrs["iiv"] == 0 and ds.attrs["residual"] == 0


def test_default_times():
    ds = simulate("expansion_biphasic", n=1, seed=0)
    np.testing.assert_array_equal(ds.time.values, DEFAULT_TIMES)
    assert DEFAULT_TIMES[0] == 0.0 and 300.0 <= DEFAULT_TIMES[-1] <= 365.0
    assert np.all(np.diff(DEFAULT_TIMES) > 0)


def test_log_normal_residual_sd_is_recovered():
    sigma = 0.35
    ds = simulate("expansion_biphasic", n=400, times=TIMES, seed=5, iiv=False,
                  sigma={"PB_QPCR": sigma})
    eps = np.log(ds["obs"] / ds["pred"]).values.ravel()
    n = eps.size  # 4000 draws of N(0, sigma^2) on the log scale
    # 5 standard errors: SE(mean) = sigma/sqrt(n), SE(SD) ~ sigma/sqrt(2(n-1))
    assert abs(eps.mean()) < 5 * sigma / np.sqrt(n)
    assert abs(eps.std(ddof=1) - sigma) < 5 * sigma / np.sqrt(2 * (n - 1))


def test_proportional_and_default_sigma():
    # one_cmt_oral: proportional error with the median of HalfNormal(0.3) as default SD
    spec = load_model("one_cmt_oral")
    t = np.linspace(1.0, 24.0, 24)
    ds = simulate(spec, n=300, dose=100.0, times=t, seed=8, iiv=False)
    rel = ((ds["obs"] - ds["pred"]) / ds["pred"]).values.ravel()
    sd = spec.output("CP").sigma.median()
    assert sd == pytest.approx(0.3 * 0.6744897501960817, rel=0.02)  # MC median, see prior tests
    assert abs(rel.mean()) < 5 * sd / np.sqrt(rel.size)
    assert abs(rel.std(ddof=1) - sd) < 5 * sd / np.sqrt(2 * (rel.size - 1))


def test_iiv_sd_is_recovered():
    spec = load_model("expansion_biphasic")
    ds = simulate(spec, n=4000, times=[0.0], seed=6, residual=False)
    for p in spec.parameters:
        x = ds["params"].sel(parameter=p.name).values
        eta = np.log(x / p.value) if p.scale == "log" else (
            np.log(x / (1 - x)) - np.log(p.value / (1 - p.value)))
        omega = p.iiv.median()
        assert abs(eta.mean()) < 5 * omega / np.sqrt(eta.size), p.name
        assert abs(eta.std(ddof=1) - omega) < 5 * omega / np.sqrt(2 * (eta.size - 1)), p.name


def test_draw_typical_samples_the_priors():
    spec = load_model("expansion_biphasic")
    rng = np.random.default_rng(12)
    n = 4000
    pars = individual_parameters(spec, n, rng, iiv=False, draw_typical=True)
    for p in spec.parameters:
        mu, sd = p.prior.normal_on(p.scale)
        z = np.log(pars[p.name]) if p.scale == "log" else np.log(pars[p.name]
                                                                 / (1 - pars[p.name]))
        assert abs(z.mean() - mu) < 5 * sd / np.sqrt(n), p.name
        assert abs(z.std(ddof=1) - sd) < 5 * sd / np.sqrt(2 * (n - 1)), p.name
    # via simulate: typical values differ between subjects even without IIV
    ds = simulate(spec, n=50, times=[0.0, 10.0], seed=2, iiv=False, residual=False,
                  draw_typical=True)
    assert np.unique(ds["params"].sel(parameter="rho").values).size == 50
    fixed = simulate(spec, n=50, times=[0.0, 10.0], seed=2, iiv=False, residual=False)
    assert np.unique(fixed["params"].sel(parameter="rho").values).size == 1


def test_params_given_directly_and_covariates():
    spec = load_model("antigen_driven")
    p = spec.typical_values()
    ds = simulate(spec, n=2, dose=1.0, times=[0.0, 7.0, 14.0], seed=1, params=p,
                  covariates={"BM_BLAST_PCT": [10.0, 60.0]}, residual=False)
    np.testing.assert_array_equal(ds["params"].values,
                                  np.tile([p[k] for k in spec.param_names], (2, 1)))
    np.testing.assert_array_equal(ds["BM_BLAST_PCT"].values, [10.0, 60.0])
    blasts = ds["pred"].sel(analyte="BM_BLAST", time=0.0).values
    np.testing.assert_allclose(blasts, [10.0, 60.0], rtol=1e-14)
