"""BOIN: boundaries (closed form, published values), elimination cutoffs against the Beta
posterior, decisions on explicit cohort sequences, MTD selection, and the vectorised simulator
against the rule object and against exact enumeration."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from ckmodel.design import (
    BOIN,
    Cohort,
    Decision,
    boin_boundaries,
    boin_boundary_table,
    boin_select_mtd,
    exact_operating_characteristics,
    next_decision,
    pava,
    simulate_design,
)
from ckmodel.design.batch import simulate_rule_batch


def closed_form(phi, phi1, phi2):
    lam_e = math.log((1 - phi1) / (1 - phi)) / math.log(phi * (1 - phi1) / (phi1 * (1 - phi)))
    lam_d = math.log((1 - phi) / (1 - phi2)) / math.log(phi2 * (1 - phi) / (phi * (1 - phi2)))
    return lam_e, lam_d


@pytest.mark.parametrize("target", [0.1, 0.15, 0.2, 0.25, 0.3, 0.33, 0.4, 0.5])
def test_boundaries_match_the_closed_form(target):
    got = boin_boundaries(target)
    np.testing.assert_allclose(got, closed_form(target, 0.6 * target, 1.4 * target), rtol=1e-14)
    got = boin_boundaries(target, phi1=0.5 * target, phi2=1.5 * target)
    np.testing.assert_allclose(got, closed_form(target, 0.5 * target, 1.5 * target), rtol=1e-14)


@pytest.mark.parametrize("target, lam_e, lam_d", [(0.3, 0.236, 0.358), (0.25, 0.197, 0.298),
                                                  (0.2, 0.157, 0.238)])
def test_boundaries_match_the_published_table(target, lam_e, lam_d):
    # the published tables give 3 decimals, some rounded (0.1968 -> 0.197), some cut
    # (0.3585 -> 0.358): agreement to within 6e-4 covers both and no neighbouring value
    got_e, got_d = boin_boundaries(target)
    assert got_e == pytest.approx(lam_e, abs=6e-4)
    assert got_d == pytest.approx(lam_d, abs=6e-4)


def test_boundaries_refuse_bad_intervals():
    with pytest.raises(ValueError, match="phi1 < target < phi2"):
        boin_boundaries(0.3, phi1=0.35)


def test_decision_table_counts_and_the_published_target_03_table():
    tab = boin_boundary_table(0.3, 12)
    lam_e, lam_d = boin_boundaries(0.3)
    n = np.arange(1, 13)
    np.testing.assert_array_equal(tab.escalate, np.floor(lam_e * n))
    # the BOIN package's table for target 0.3 (cohorts of 3): escalate if <=, de-escalate if >=
    assert tab.escalate[2::3].tolist() == [0, 1, 2, 2]
    assert tab.deescalate[2::3].tolist() == [2, 3, 4, 5]
    assert tab.eliminate[2::3].tolist() == [3, 4, 5, 7]
    np.testing.assert_array_equal(tab.deescalate, np.minimum(np.ceil(lam_d * n), tab.eliminate))


@pytest.mark.parametrize("target", [0.2, 0.25, 0.3, 0.4])
def test_elimination_cutoffs_against_the_beta_posterior(target):
    tab = boin_boundary_table(target, 30)
    for n, cut in zip(tab.n, tab.eliminate, strict=True):
        tail = stats.beta.sf(target, np.arange(n + 1) + 1, n - np.arange(n + 1) + 1)
        if n < 3:
            assert cut == n + 1  # never below 3 patients
            continue
        over = np.flatnonzero(tail > 0.95)
        expected = over[0] if over.size and over[0] >= 1 else n + 1
        assert cut == expected
        if cut <= n:
            assert tail[cut] > 0.95 >= tail[cut - 1]


def test_pava_pools_violators_with_weights():
    np.testing.assert_allclose(pava([0.1, 0.4, 0.2, 0.5]), [0.1, 0.3, 0.3, 0.5])
    np.testing.assert_allclose(pava([0.5, 0.1], [3, 1]), [0.4, 0.4])
    np.testing.assert_allclose(pava([0.3, 0.2, 0.1]), [0.2, 0.2, 0.2])
    x = np.array([0.0, 0.2, 0.1, 0.4])
    assert np.all(np.diff(pava(x)) >= 0)


def test_select_mtd_reference_example_and_ties():
    # the BOIN package's select.mtd example selects dose 3 (1-based)
    assert boin_select_mtd([3, 3, 15, 9, 0], [0, 0, 4, 4, 0], 0.3) == 2
    # equal estimates below the target: the highest such dose; above: the lowest
    assert boin_select_mtd([3, 3, 0], [0, 0, 0], 0.3) == 1
    assert boin_select_mtd([6, 6, 0], [3, 3, 0], 0.3) == 0
    # lowest dose eliminated (3/3 at 0.3: P(p > 0.3) = 1 - 0.7^4 > 0.95): no MTD
    assert boin_select_mtd([3, 0, 0], [3, 0, 0], 0.3) is None
    # a dose above an eliminated one is never selected
    assert boin_select_mtd([6, 3, 3], [1, 3, 0], 0.3) == 0


def run(history, rule=None, n_levels=5):
    return next_decision([Cohort(*c) for c in history], rule or BOIN(target=0.3),
                         n_levels=n_levels)


@pytest.mark.parametrize("history, decision, level", [
    ([], Decision.START, 0),
    ([(0, 3, 0)], Decision.ESCALATE, 1),
    ([(0, 3, 1)], Decision.STAY, 0),              # 1/3 = 0.33 in (0.236, 0.358)
    ([(0, 3, 0), (1, 3, 2)], Decision.DE_ESCALATE, 0),
    ([(0, 3, 2)], Decision.STAY, 0),              # de-escalation impossible at the lowest dose
    ([(0, 3, 0), (1, 3, 1), (1, 3, 0)], Decision.ESCALATE, 2),   # 1/6 = 0.17 <= 0.236
    ([(0, 3, 0), (1, 3, 1), (1, 3, 1)], Decision.STAY, 1),       # 2/6 = 0.33
    ([(0, 3, 0), (1, 3, 1), (1, 3, 2)], Decision.DE_ESCALATE, 0),  # 3/6 = 0.5
    ([(0, 3, 0), (1, 3, 3)], Decision.DE_ESCALATE, 0),  # 3/3: level 1 eliminated
    ([(0, 3, 0), (1, 3, 3), (0, 3, 0)], Decision.STAY, 0),  # 0/6 but level 1 eliminated
    ([(0, 3, 0), (1, 3, 0), (2, 3, 0), (3, 3, 0), (4, 3, 0)], Decision.STAY, 4),  # top
])
def test_decisions_on_cohort_sequences(history, decision, level):
    step = run(history)
    assert step.decision is decision
    assert step.next_level == level
    assert step.cohort_size == 3


def test_lowest_dose_eliminated_stops_without_mtd():
    step = run([(0, 3, 3)])
    assert step.decision is Decision.STOP_TOO_TOXIC and step.mtd is None
    assert "eliminated" in step.reason
    step = run([(0, 3, 1), (0, 3, 3)])  # 4/6 at target 0.3 is the elimination count
    assert step.decision is Decision.STOP_TOO_TOXIC


def test_max_sample_size_selects_the_mtd_and_shortens_the_last_cohort():
    rule = BOIN(target=0.3, max_n=10)
    hist = [(0, 3, 0), (1, 3, 1), (1, 3, 0)]
    step = run(hist, rule)
    assert step.next_level == 2 and step.cohort_size == 1  # 9 treated, one more to reach 10
    step = run(hist + [(2, 1, 1)], rule)
    assert step.decision is Decision.STOP_MTD_FOUND and step.mtd == 1


def test_early_stop_at_n_earlystop():
    rule = BOIN(target=0.3, n_earlystop=6)
    step = run([(0, 3, 0), (1, 3, 1), (1, 3, 1)], rule)  # 2/6 at level 1: stay -> stop
    assert step.decision is Decision.STOP_MTD_FOUND and step.mtd == 1
    step = run([(0, 3, 0), (1, 3, 0), (1, 3, 0)], rule)  # 0/6: escalate, no stop
    assert step.decision is Decision.ESCALATE


def test_cohort_size_one_and_settings_checked():
    step = run([(0, 1, 0)], BOIN(target=0.25, cohort_size=1))
    assert step.decision is Decision.ESCALATE and step.cohort_size == 1
    with pytest.raises(ValueError, match="target"):
        BOIN(target=1.2)
    with pytest.raises(ValueError, match="cohort_size"):
        BOIN(cohort_size=0)


@pytest.mark.parametrize("rule", [BOIN(target=0.3), BOIN(target=0.25, cohort_size=2, max_n=20,
                                                           n_earlystop=8)])
def test_vectorised_simulator_gives_the_same_trials_as_the_rule(rule):
    probs = np.array([0.05, 0.15, 0.3, 0.45, 0.6])
    u = np.random.default_rng(7).random((400, rule.max_n))
    fast = rule.simulate_batch(probs, u)
    slow = simulate_rule_batch(rule, probs, u, rule.max_n)
    for f in ("n", "y", "mtd", "n_cohorts", "stop"):
        np.testing.assert_array_equal(getattr(fast, f), getattr(slow, f), err_msg=f)


def test_simulation_matches_exact_enumeration_within_monte_carlo_error():
    rule = BOIN(target=0.3, max_n=18)
    probs = [0.05, 0.15, 0.3, 0.45]
    exact = exact_operating_characteristics(rule, probs)
    sim = simulate_design(rule, probs, 20000, seed=3)
    se = np.sqrt(exact.p_select * (1 - exact.p_select) / sim.n_trials)
    assert np.all(np.abs(sim.p_select - exact.p_select) < 4 * se + 1e-12)
    assert sim.p_none == pytest.approx(exact.p_no_mtd, abs=4 * math.sqrt(
        exact.p_no_mtd * (1 - exact.p_no_mtd) / sim.n_trials) + 1e-3)
    # expected patients per level: SE from the per-trial spread
    sd = sim.trials.n.std(0) / math.sqrt(sim.n_trials)
    assert np.all(np.abs(sim.trials.n.mean(0) - exact.mean_patients_per_level) < 4 * sd + 1e-9)
