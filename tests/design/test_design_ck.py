"""The CK-guided design: its posterior, decisions, simulator and meeting.

Oracles: the posterior mean rate against two-dimensional numerical integration (scipy) of
the same model; each level's simulated DLT rate against the scenario (Monte-Carlo error); the
vectorised simulator against the rule walked trial by trial on the same uniforms; decisions on
explicit cohort sequences against the rule's definition.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

from ckmodel.design import (
    CKGuided,
    Cohort,
    Decision,
    ExposureModel,
    design_from_name,
    next_decision,
    next_dose,
    read_trial,
    simulate_design,
)
from ckmodel.design.batch import StopCode

DOSES = (1.0, 2.0, 4.0, 8.0, 16.0)
TOX = np.array([0.05, 0.1, 0.2, 0.35, 0.5])


@pytest.fixture(scope="module")
def model():
    return ExposureModel.lognormal(DOSES, median=1000.0, sd=0.6, n_samples=400)


@pytest.fixture(scope="module")
def rule(model):
    return CKGuided(model, target=0.3, overdose_limit=None)


def test_exposure_model_from_virtual_patients():
    import xarray as xr

    v = np.exp(np.random.default_rng(0).normal(size=(2, 5, 30)))
    vp = xr.Dataset({"PB_QPCR_CMAX": (("dose", "draw", "patient"), v, {"unit": "copies"})},
                    coords={"dose": [1.0, 2.0]})
    m = ExposureModel.from_patients(vp, "PB_QPCR_CMAX", max_samples=50)
    assert m.log_exposure.shape == (2, 50) and m.unit == "copies" and m.doses == (1.0, 2.0)
    np.testing.assert_allclose(m.log_exposure[1], np.log(v[1].ravel())[
        np.unique(np.linspace(0, 149, 50).round().astype(int))])
    with pytest.raises(ValueError, match="no exposure"):
        ExposureModel.from_patients(vp, "AUC")
    with pytest.raises(ValueError, match="increasing"):
        ExposureModel((2.0, 1.0), np.zeros((2, 3)))


def test_posterior_mean_against_numerical_integration(model):
    rule = CKGuided(model, target=0.3, n_grid=81)
    x = np.log([800.0, 1500.0, 600.0, 3000.0, 2500.0, 5000.0])
    y = np.array([0, 0, 0, 1, 0, 1])
    mean, p_over = rule.rates(rule.log_likelihood(x, y))
    c = model.reference
    le = model.log_exposure - c
    mu_a, sd_a = special.logit(0.3), 1.5

    def post(a, lb):
        b = np.exp(lb)
        eta = a + b * (x - c)
        ll = np.sum(y * special.log_expit(eta) + (1 - y) * special.log_expit(-eta))
        return np.exp(ll) * stats.norm.pdf(a, mu_a, sd_a) * stats.norm.pdf(lb, 0.0, 0.7)

    box = dict(a=mu_a - 6 * sd_a, b=mu_a + 6 * sd_a, gfun=-4.2, hfun=4.2)
    z, _ = integrate.dblquad(lambda lb, a: post(a, lb), box["a"], box["b"], box["gfun"],
                             box["hfun"], epsabs=1e-12, epsrel=1e-8)
    for k in (0, 2, 4):
        num, _ = integrate.dblquad(
            lambda lb, a, k=k: post(a, lb) * special.expit(a + np.exp(lb) * le[k]).mean(),
            box["a"], box["b"], box["gfun"], box["hfun"], epsabs=1e-12, epsrel=1e-8)
        assert abs(mean[k] - num / z) < 2e-3, k


def test_true_intercepts_give_the_scenario_rates(rule):
    a = rule.true_intercepts(TOX)
    x = rule.exposure.log_exposure - rule.exposure.reference
    np.testing.assert_allclose(special.expit(a[:, None] + x).mean(axis=1), TOX, atol=1e-12)
    flat = CKGuided(rule.exposure, simulation_slope=0.0)
    np.testing.assert_allclose(flat.true_intercepts(TOX), special.logit(TOX), atol=1e-10)
    u = np.random.default_rng(3).random(200_000)
    for k in range(5):
        _, dlt = rule.patient_outcomes(np.full(u.size, k), u, a)
        se = np.sqrt(TOX[k] * (1 - TOX[k]) / u.size)
        assert abs(dlt.mean() - TOX[k]) < 4.5 * se


def test_batch_equals_the_rule_walked_trial_by_trial(rule):
    rng = np.random.default_rng(7)
    u = rng.random((60, rule.max_n))
    batch = rule.simulate_batch(TOX, u)
    alpha = rule.true_intercepts(TOX)
    for t in range(60):
        history: list[Cohort] = []
        step = next_decision(history, rule, n_levels=5)
        pos = 0
        while not step.is_stop:
            lv, size = step.next_level, step.cohort_size
            x, d = rule.patient_outcomes(np.full(size, lv), u[t, pos:pos + size], alpha)
            history.append(Cohort(lv, size, int(d.sum()), phase="CK",
                                  exposures=tuple(np.exp(x)), dlts=tuple(int(v) for v in d)))
            pos += size
            step = next_decision(history, rule, n_levels=5)
        n = np.bincount([c.level for c in history], [c.n for c in history], minlength=5)
        assert np.array_equal(batch.n[t], n), t
        assert batch.mtd[t] == (step.mtd if step.mtd is not None else -1), t


def test_decisions_on_cohort_sequences(model):
    rule = CKGuided(model, target=0.3, overdose_limit=None)
    first = next_decision([], rule, n_levels=5)
    assert first.decision is Decision.START and first.next_level == 0
    low = Cohort(0, 3, 0, exposures=(500.0, 700.0, 400.0))
    step = next_decision([low], rule, n_levels=5)
    assert step.decision is Decision.ESCALATE and step.next_level == 1  # no skipping
    tox = Cohort(0, 3, 3, exposures=(500.0, 700.0, 400.0), dlts=(1, 1, 1))
    assert next_decision([tox], rule, n_levels=5).decision is Decision.STOP_TOO_TOXIC
    # coherence: a cohort at or above the target never leads above its level
    two = Cohort(1, 3, 1, exposures=(300.0, 200.0, 250.0), dlts=(0, 1, 0))
    step = next_decision([low, two], rule, n_levels=5)
    assert step.next_level <= 1
    # which patient had the DLT matters: the DLT at the highest exposure is less alarming
    hi = Cohort(1, 3, 1, exposures=(900.0, 1200.0, 9000.0), dlts=(0, 0, 1))
    lo = Cohort(1, 3, 1, exposures=(900.0, 1200.0, 9000.0), dlts=(1, 0, 0))
    m_hi, _ = rule.posterior_table([low, hi])
    m_lo, _ = rule.posterior_table([low, lo])
    assert m_hi[0] < m_lo[0]
    with pytest.raises(ValueError, match="which"):
        rule.posterior_table([Cohort(1, 3, 1, exposures=(1.0, 2.0, 3.0))])
    with pytest.raises(ValueError, match="no exposures"):
        rule.posterior_table([Cohort(1, 3, 0)])
    # at the sample size the MTD is declared
    full = CKGuided(model, target=0.3, max_n=3)
    assert next_decision([low], full, n_levels=5).decision is Decision.STOP_MTD_FOUND


def test_overdose_control_limits_the_recommendation(model):
    free = CKGuided(model, target=0.3, overdose_limit=None)
    ewoc = CKGuided(model, target=0.3, overdose_limit=0.25)
    hist = [Cohort(0, 3, 0, exposures=(500.0, 700.0, 400.0)),
            Cohort(1, 3, 0, exposures=(900.0, 1300.0, 700.0))]
    mean, over = ewoc.posterior_table(hist)
    rec = int(ewoc.recommend(mean, over))
    assert rec == 0 or over[rec] <= 0.25
    assert int(free.recommend(mean, over)) >= rec


def test_simulation_reproducible_across_workers(model):
    rule = CKGuided(model, target=0.3)
    one = simulate_design(rule, TOX, 300, seed=4, chunk_size=100)
    two = simulate_design(rule, TOX, 300, seed=4, chunk_size=100, workers=2)
    assert np.array_equal(one.trials.n, two.trials.n) and np.array_equal(one.trials.mtd,
                                                                       two.trials.mtd)
    assert set(np.unique(one.trials.stop)) <= {StopCode.MTD_FOUND, StopCode.TOO_TOXIC}


def test_meeting_reads_exposures(model, tmp_path):
    rule = design_from_name("ck", 5, exposure=model, target=0.3)
    assert isinstance(rule, CKGuided) and rule.overdose_limit == 0.25
    path = tmp_path / "trial.csv"
    pd.DataFrame({"DOSE_LEVEL": [1, 1, 1], "DLT": [0, 0, 0],
                  "EXPOSURE": [500, 700, 400]}).to_csv(path, index=False)
    trial = read_trial(path, 5, exposure=True)
    decision = next_dose(rule, trial, 5)
    assert list(decision.table.columns[:6]) == ["DOSE_LEVEL", "N", "N_DLT", "P_DLT",
                                                "RECOMMENDED", "CONTINUE"]
    mean, over = rule.posterior_table([Cohort(0, 3, 0, exposures=(500.0, 700.0, 400.0))])
    np.testing.assert_allclose(decision.table["P_DLT"], mean)
    np.testing.assert_allclose(decision.table["P_OVERDOSE"], over)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"DOSE_LEVEL": [1, 1], "DLT": [0, 0], "EXPOSURE": ["x", -1]}).to_csv(
        bad, index=False)
    from ckmodel.errors import DatasetError

    with pytest.raises(DatasetError) as err:
        read_trial(bad, 5, exposure=True)
    assert "line 2" in str(err.value) or "row 2" in str(err.value)
    assert len(err.value.problems) == 2
    with pytest.raises(ValueError, match="needs an exposure model"):
        design_from_name("ck", 5)
