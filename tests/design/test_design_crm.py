"""CRM: posterior against adaptive quadrature (scipy.integrate.quad), decisions on explicit
cohort sequences (no skipping, coherence, overdose control), the skeleton, and the vectorised
simulator against the rule object and exact enumeration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy.special import xlog1py, xlogy

from ckmodel.design import (
    CRM,
    Cohort,
    Decision,
    crm_posterior,
    crm_skeleton,
    exact_operating_characteristics,
    next_decision,
    simulate_design,
)
from ckmodel.design.batch import simulate_rule_batch
from ckmodel.design.crm import DFCRM_PRIOR_SD

SKELETON = np.array([0.05, 0.12, 0.25, 0.4, 0.55])
DATA = [
    ([0, 0, 0, 0, 0], [0, 0, 0, 0, 0]),
    ([3, 3, 0, 0, 0], [0, 1, 0, 0, 0]),
    ([3, 6, 12, 6, 3], [0, 1, 3, 3, 2]),
    ([3, 0, 0, 0, 0], [3, 0, 0, 0, 0]),
    ([30, 0, 0, 0, 0], [0, 0, 0, 0, 0]),
    ([3, 3, 3, 3, 18], [0, 0, 0, 0, 0]),
    ([0, 0, 0, 0, 30], [0, 0, 0, 0, 30]),
]


def quad_posterior(n, y, sd, target):
    n, y = np.asarray(n, float), np.asarray(y, float)

    def dens(a):
        p = SKELETON ** math.exp(a)
        return math.exp(np.sum(xlogy(y, p) + xlog1py(n - y, -p)) - a * a / (2 * sd * sd))

    kw = dict(epsabs=1e-13, epsrel=1e-10, limit=500)  # tighter hits quad roundoff warnings
    z = integrate.quad(dens, -30, 30, **kw)[0]
    mean = [integrate.quad(lambda a, k=k: dens(a) * SKELETON[k] ** math.exp(a), -30, 30,
                           **kw)[0] / z for k in range(5)]
    a_mean = integrate.quad(lambda a: a * dens(a), -30, 30, **kw)[0] / z
    over = [integrate.quad(dens, -30, math.log(math.log(target) / math.log(SKELETON[k])),
                           **kw)[0] / z for k in range(5)]
    return np.array(mean), a_mean, np.array(over)


@pytest.mark.parametrize("n, y", DATA)
@pytest.mark.parametrize("sd", [DFCRM_PRIOR_SD, 1.34])
def test_posterior_matches_numerical_integration(n, y, sd):
    post = crm_posterior(SKELETON, n, y, prior_sd=sd, target=0.25)
    mean, a_mean, over = quad_posterior(n, y, sd, 0.25)
    # deterministic quadrature: tight tolerances
    np.testing.assert_allclose(post.p_mean, mean, rtol=0, atol=1e-8)
    assert post.a_mean == pytest.approx(a_mean, abs=1e-8)
    np.testing.assert_allclose(post.p_plugin, SKELETON ** math.exp(a_mean), atol=1e-8)
    np.testing.assert_allclose(post.p_overdose, over, rtol=0, atol=1e-7)


def test_posterior_is_vectorised_over_data_sets():
    n = np.array([d[0] for d in DATA])
    y = np.array([d[1] for d in DATA])
    batch = crm_posterior(SKELETON, n, y)
    for i, (ni, yi) in enumerate(DATA):
        np.testing.assert_allclose(batch.p_mean[i], crm_posterior(SKELETON, ni, yi).p_mean,
                                   atol=1e-14)


def test_prior_is_dfcrm_default():
    assert DFCRM_PRIOR_SD == pytest.approx(math.sqrt(1.34))
    assert CRM().prior_sd == DFCRM_PRIOR_SD


def test_skeleton_by_indifference_intervals():
    sk = crm_skeleton(0.25, 5, halfwidth=0.05, prior_mtd=2)
    np.testing.assert_allclose(sk, [0.0840, 0.1567, 0.25, 0.3545, 0.4603], atol=1e-4)
    # switching points: neighbours cross target -/+ halfwidth at the same a
    for k in range(4):
        b = math.log(math.log(0.3) / math.log(sk[k + 1]))
        assert sk[k] ** math.exp(b) == pytest.approx(0.2, abs=1e-12) or k >= 2
    with pytest.raises(ValueError, match="halfwidth"):
        crm_skeleton(0.25, 5, halfwidth=0.3)


def run(history, rule=None):
    rule = rule or CRM(skeleton=tuple(SKELETON), target=0.25)
    return next_decision([Cohort(*c) for c in history], rule, n_levels=5)


def test_decisions_on_cohort_sequences():
    step = run([])
    assert step.decision is Decision.START and step.next_level == 0
    # 0/3: the model would jump ahead, no skipping keeps it one level up
    step = run([(0, 3, 0)])
    assert step.next_level == 1 and "no skipping" in step.reason
    # a toxic cohort (2/3 >= target) never leads to escalation (coherence)
    step = run([(0, 3, 0), (1, 3, 0), (2, 3, 2)])
    assert step.next_level <= 2
    # de-escalation to the dose closest to the target
    step = run([(0, 3, 0), (1, 3, 3)])
    assert step.decision is Decision.DE_ESCALATE and step.next_level == 0


def test_next_dose_is_the_posterior_mean_closest_to_target():
    history = [(0, 3, 0), (1, 3, 0), (2, 3, 1), (2, 3, 1)]
    step = run(history)
    post = crm_posterior(SKELETON, [3, 3, 6, 0, 0], [0, 0, 2, 0, 0])
    best = int(np.argmin(np.abs(post.p_mean - 0.25)))
    assert step.next_level == min(best, 2 + 1)


def test_stop_at_max_n_declares_the_unrestricted_recommendation():
    rule = CRM(skeleton=tuple(SKELETON), target=0.25, max_n=6)
    step = run([(0, 3, 0), (1, 3, 0)], rule)
    post = crm_posterior(SKELETON, [3, 3, 0, 0, 0], [0, 0, 0, 0, 0])
    assert step.decision is Decision.STOP_MTD_FOUND
    assert step.mtd == int(np.argmin(np.abs(post.p_mean - 0.25)))  # may lie above level 2


def test_overdose_control_and_safety_stop():
    free = run([(0, 3, 0), (1, 3, 0)])
    rule = CRM(skeleton=tuple(SKELETON), target=0.25, overdose_limit=0.25)
    ctl = run([(0, 3, 0), (1, 3, 0)], rule)
    post = crm_posterior(SKELETON, [3, 3, 0, 0, 0], [0] * 5, target=0.25)
    assert post.p_overdose[ctl.next_level] <= 0.25
    assert ctl.next_level <= free.next_level
    stop = CRM(skeleton=tuple(SKELETON), target=0.25, safety_stop=0.9)
    step = run([(0, 3, 3)], stop)
    assert step.decision is Decision.STOP_TOO_TOXIC and step.mtd is None


def test_plugin_estimate_is_dfcrm_ptox():
    rule = CRM(skeleton=tuple(SKELETON), target=0.25, estimate="plugin")
    step = run([(0, 3, 0), (1, 3, 1)], rule)
    post = crm_posterior(SKELETON, [3, 3, 0, 0, 0], [0, 1, 0, 0, 0])
    assert f"{post.p_plugin[2]:.3f}" in step.reason


@pytest.mark.parametrize("rule", [
    CRM(skeleton=tuple(SKELETON), target=0.25),
    CRM(skeleton=tuple(SKELETON), target=0.3, cohort_size=2, max_n=15, overdose_limit=0.3,
        safety_stop=0.85),
])
def test_vectorised_simulator_gives_the_same_trials_as_the_rule(rule):
    probs = np.array([0.05, 0.15, 0.3, 0.45, 0.6])
    u = np.random.default_rng(11).random((300, rule.max_n))
    fast = rule.simulate_batch(probs, u)
    slow = simulate_rule_batch(rule, probs, u, rule.max_n)
    for f in ("n", "y", "mtd", "n_cohorts", "stop"):
        np.testing.assert_array_equal(getattr(fast, f), getattr(slow, f), err_msg=f)


def test_simulation_matches_exact_enumeration_within_monte_carlo_error():
    rule = CRM(skeleton=(0.1, 0.2, 0.3, 0.4), target=0.3, max_n=12)
    probs = [0.05, 0.15, 0.3, 0.45]
    exact = exact_operating_characteristics(rule, probs)
    sim = simulate_design(rule, probs, 20000, seed=5)
    se = np.sqrt(exact.p_select * (1 - exact.p_select) / sim.n_trials)
    assert np.all(np.abs(sim.p_select - exact.p_select) < 4 * se + 1e-12)
