"""Fits with whitened random effects: asked for, and chosen by ``centered="auto"``.

Real nutpie sampling on the session's simulated 24 subjects, seeded. Each fit's convergence
checks are asserted before anything is compared; the oracle for the posterior is the converged
non-centred fit of the same data (``small_fit``): the whitened form is the same model, so the
typical values' posterior means (log scale) must agree within 4 times the sum of the two
Monte Carlo standard errors plus a tenth of a posterior SD (bulk ESS >= 400 each).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ckmodel.errors import ConvergenceWarning
from ckmodel.fitting import fit
from ckmodel.fitting import run as run_module
from ckmodel.fitting.run_length import geometry_failed
from ckmodel.population.model import PopulationOptions


@pytest.fixture(scope="module")
def whitened_fit(sim_data):
    data, _ = sim_data
    res = fit(data, "expansion_biphasic", draws=1000, tune=1000, chains=4, seed=2,
              options=PopulationOptions(centered="whitened"), progressbar=False)
    assert res.meta["convergence"]["ok"], res.meta["convergence"]["problems"]
    return res


def test_whitened_fit_agrees_with_the_non_centred_fit(whitened_fit, small_fit):
    import arviz as az

    for p in ("rho", "tmax", "alpha", "f0", "beta", "fb"):
        a = small_fit.posterior[f"{p}_pop"]
        b = whitened_fit.posterior[f"{p}_pop"]
        sd = float(np.log(a).std())
        mcse = float(az.mcse(np.log(a)).to_array().max() + az.mcse(np.log(b)).to_array().max())
        diff = abs(float(np.log(a).mean() - np.log(b).mean()))
        assert diff < 4 * mcse + 0.1 * sd, (p, diff, mcse, sd)


def test_whitened_fit_records_what_it_did(whitened_fit):
    meta = whitened_fit.meta
    assert meta["whitened"]["after"].startswith("a pilot run of")
    assert meta["pilot"]["draws"] > 0
    assert all(a["random_effects"] == "whitened" for a in meta["attempts"])
    assert meta["iiv_sd"]["rho"] == "signed"
    # the predictive groups come from the whitened model too
    assert "y_PB_QPCR" in whitened_fit.idata.posterior_predictive


def _warned_iff_not_converged(caught, res):
    """These short fits test the switch, not convergence: a ConvergenceWarning is raised
    exactly when the fit's own verdict is not ok (kept, not silenced)."""
    warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    assert warned == (not res.meta["convergence"]["ok"])


def test_geometry_failures_are_divergences_and_low_bfmi():
    assert geometry_failed({"divergences": 3, "min_bfmi": 0.8})
    assert geometry_failed({"divergences": 0, "min_bfmi": 0.2})
    assert not geometry_failed({"divergences": 0, "min_bfmi": 0.5, "max_rhat": 1.2})


def test_auto_samples_again_whitened_after_a_geometry_failure(sim_data, monkeypatch):
    """The switch itself, made to happen: the first verdict is taken as a geometry failure."""
    data, _ = sim_data
    calls = []

    def first_fails(verdict):
        calls.append(verdict)
        return len(calls) == 1

    monkeypatch.setattr(run_module, "geometry_failed", first_fails)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        res = fit(data, "expansion_biphasic", draws=300, tune=300, chains=2, seed=4,
                  progressbar=False, until_converged=600, posterior_predictive=False,
                  log_likelihood=False)
    _warned_iff_not_converged(caught, res)
    meta = res.meta
    assert meta["whitened"]["after"].startswith("the non-centred run")
    kinds = [a["random_effects"] for a in meta["attempts"]]
    assert kinds[0] == "non-centred" and kinds[-1] == "whitened"
    assert "z" in res.posterior


def test_none_never_switches(sim_data, monkeypatch):
    data, _ = sim_data
    monkeypatch.setattr(run_module, "geometry_failed", lambda verdict: True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        res = fit(data, "expansion_biphasic", draws=200, tune=200, chains=2, seed=4,
                  progressbar=False, until_converged=60, posterior_predictive=False,
                  log_likelihood=False, options=PopulationOptions(centered=()))
    _warned_iff_not_converged(caught, res)
    assert res.meta["whitened"] is None
    assert all("random_effects" not in a for a in res.meta["attempts"])


def test_auto_whitens_an_ode_fit_after_its_pilot(sim_data):
    """The plan carried out: a model solved as ODEs is sampled whitened after a pilot of
    WHITEN_PILOT_TUNE + WHITEN_PILOT_DRAWS iterations, which the fit records."""
    from ckmodel.fitting.centering import WHITEN_PILOT_DRAWS, WHITEN_PILOT_TUNE

    data, _ = sim_data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        res = fit(data, "expansion_biphasic", draws=100, tune=100, chains=2, seed=4,
                  options=PopulationOptions(method="ode"), progressbar=False,
                  until_converged=1, posterior_predictive=False, log_likelihood=False)
    _warned_iff_not_converged(caught, res)
    meta = res.meta
    assert "centered='auto' whitens the effects of models solved as ODEs" in \
        meta["whitened"]["after"]
    assert (meta["pilot"]["tune"], meta["pilot"]["draws"]) == (WHITEN_PILOT_TUNE,
                                                               WHITEN_PILOT_DRAWS)
    assert {a["random_effects"] for a in meta["attempts"]} == {"whitened"}
    assert "z" in res.posterior


def test_auto_plan_whitens_ode_fits_from_the_start(sim_data):
    """Under ``centered="auto"`` a model solved as ODEs is whitened after a pilot, a closed form
    only after a failed non-centred run; asked-for forms, the samplers without the whitening
    Op, correlated effects and a fit without a time budget get what they ask for."""
    from ckmodel.fitting.run import random_effects_plan
    from ckmodel.population.covariates import apply_time_varying, parse_covariates
    from ckmodel.population.prepare import prepare
    from ckmodel.spec import load_model
    from ckmodel.testing import simulate_ckdata

    data, _ = sim_data
    spec = load_model("expansion_biphasic")
    pdata = prepare(data, spec)

    def plan(options=None, sampler="nutpie", budget=600.0, s=spec, p=pdata):
        return random_effects_plan(s, p, options or PopulationOptions(), sampler=sampler,
                                   until_converged=budget)

    assert plan() == (False, True)
    assert plan(PopulationOptions(method="ode")) == (True, False)
    assert plan(PopulationOptions(method="ode"), sampler="pymc") == (True, False)
    assert plan(PopulationOptions(method="ode"), budget=None) == (False, False)
    assert plan(PopulationOptions(method="ode"), sampler="numpyro") == (False, False)
    assert plan(PopulationOptions(method="ode", correlated=True)) == (False, False)
    assert plan(PopulationOptions(method="ode", centered=())) == (False, False)
    assert plan(PopulationOptions(centered="whitened"), budget=None) == (True, False)
    assert plan(PopulationOptions(centered="whitened"), sampler="numpyro") == (False, False)
    # a closed form with a time-varying effect is solved as ODEs
    switched, _ = apply_time_varying(spec, parse_covariates(["beta ~ after(ADA_TIME)"]))
    ada, _ = simulate_ckdata(switched, n=4, seed=1,
                             onsets={"beta_after_ADA_TIME": np.array([28.0, np.nan] * 2)})
    assert plan(s=switched, p=prepare(ada, switched)) == (True, False)
