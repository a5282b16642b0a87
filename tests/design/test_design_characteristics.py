"""Operating characteristics: closed form vs exact enumeration vs simulation, and the
published 3+3 escalation probability."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ckmodel.design import (
    AcceleratedTitration,
    Decision,
    ThreePlusThree,
    exact_operating_characteristics,
    operating_characteristics,
    three_plus_three_escalation_probability,
    three_plus_three_mtd_probabilities,
)

FLAGS = [
    dict(six_at_mtd=True, six_at_top=False),
    dict(six_at_mtd=False, six_at_top=False),
    dict(six_at_mtd=True, six_at_top=True),
    dict(six_at_mtd=False, six_at_top=True),
]
CURVE = [0.05, 0.12, 0.25, 0.4, 0.55]


def escalation_formula(p):
    """P(escalate past a level) for the 3+3: 0/3, or 1/3 then 0/3 (Storer 1989)."""
    p = np.asarray(p, dtype=float)
    return (1 - p) ** 3 + 3 * p * (1 - p) ** 2 * (1 - p) ** 3


@settings(max_examples=40, deadline=None)
@given(
    probs=st.lists(st.floats(0, 1), min_size=1, max_size=5),
    flags=st.sampled_from(FLAGS),
)
@example(probs=[1.1125369292536007e-308], flags=FLAGS[0])  # subnormal p broke scipy's binom.pmf
def test_closed_form_matches_exact_enumeration(probs, flags):
    # two exact computations, one from the closed form, one by running the rule on every
    # binomial outcome: they agree to rounding error
    closed = three_plus_three_mtd_probabilities(probs, **flags)
    exact = exact_operating_characteristics(ThreePlusThree(**flags), probs)
    np.testing.assert_allclose(closed, exact.p_select, rtol=0, atol=1e-12)
    assert exact.p_no_mtd == pytest.approx(1 - closed.sum(), abs=1e-12)


def test_exact_escalation_probability_matches_the_published_formula():
    probs = [0.03, 0.1, 0.2, 0.33, 0.5, 0.7]
    exact = exact_operating_characteristics(ThreePlusThree(), probs)
    # level k is treated iff the 3+3 escalated past every level below it
    expected = np.concatenate(([1.0], np.cumprod(escalation_formula(probs))[:-1]))
    np.testing.assert_allclose(exact.p_treated, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        three_plus_three_escalation_probability(probs), escalation_formula(probs), atol=1e-15
    )
    # one level then a certainly toxic one: P(level 1 treated) = P(escalate past level 0)
    for p in (0.0, 0.1, 0.25, 0.6, 1.0):
        oc = exact_operating_characteristics(ThreePlusThree(), [p, 1.0])
        assert oc.p_treated[1] == pytest.approx(escalation_formula(p), abs=1e-12)


def test_escalation_probability_tabulated_values():
    # widely tabulated 3+3 values of P(escalation) at true DLT rates 10%..50%
    p = [0.1, 0.2, 0.3, 0.4, 0.5]
    got = three_plus_three_escalation_probability(p)
    np.testing.assert_allclose(got, [0.91, 0.71, 0.49, 0.31, 0.17], atol=0.005)
    assert three_plus_three_escalation_probability(0.0) == 1.0
    assert three_plus_three_escalation_probability(1.0) == 0.0


def test_closed_form_by_hand_for_two_levels():
    p0, p1 = 0.2, 0.5
    q0, q1 = 1 - p0, 1 - p1
    a3 = [q0**3, q1**3]
    a6 = [3 * p0 * q0**5, 3 * p1 * q1**5]
    confirm0 = q0**3 + 3 * p0 * q0**2  # <= 1 DLT in 3 more at level 0
    toxic1 = 1 - a3[1] - a6[1]
    mtd0 = (a6[0] + a3[0] * confirm0) * toxic1
    mtd1 = (a3[0] + a6[0]) * (a3[1] + a6[1])
    np.testing.assert_allclose(
        three_plus_three_mtd_probabilities([p0, p1]), [mtd0, mtd1], rtol=1e-14
    )
    # one level: declared iff escalation would have happened; mean n = 3 + 3 P(1/3)
    oc = exact_operating_characteristics(ThreePlusThree(), [p0])
    assert oc.p_select[0] == pytest.approx(escalation_formula(p0), abs=1e-14)
    assert oc.mean_patients == pytest.approx(3 + 3 * 3 * p0 * q0**2, abs=1e-12)


@pytest.mark.parametrize(
    ("probs", "p_select", "mean_patients", "mean_dlt"),
    [
        ([0.0, 0.0, 0.0], [0, 0, 1], 9, 0),
        ([1.0, 0.0, 0.0], [0, 0, 0], 3, 3),
        ([0.0, 1.0, 1.0], [1, 0, 0], 9, 3),
    ],
)
def test_exact_degenerate_curves(probs, p_select, mean_patients, mean_dlt):
    oc = exact_operating_characteristics(ThreePlusThree(), probs)
    np.testing.assert_allclose(oc.p_select, p_select, atol=1e-15)
    assert (oc.mean_patients, oc.mean_dlt, oc.sd_patients) == (mean_patients, mean_dlt, 0.0)


def _assert_within_mc_error(sim, exact, n_trials):
    # 4 standard errors: with ~8 comparisons per test the chance of a false failure for a
    # correct implementation is about 8 * 6e-5 = 5e-4 (and the seed is fixed)
    se = np.sqrt(exact.p_select * (1 - exact.p_select) / n_trials)
    assert np.all(np.abs(sim.p_select - exact.p_select) <= 4 * se + 1e-12)
    se_none = np.sqrt(exact.p_no_mtd * (1 - exact.p_no_mtd) / n_trials)
    assert abs(sim.p_no_mtd - exact.p_no_mtd) <= 4 * se_none + 1e-12
    se_n = exact.sd_patients / np.sqrt(n_trials)
    assert abs(sim.mean_patients - exact.mean_patients) <= 4 * se_n
    se_d = exact.sd_dlt / np.sqrt(n_trials)
    assert abs(sim.mean_dlt - exact.mean_dlt) <= 4 * se_d


def test_simulated_3plus3_matches_exact_mtd_probabilities():
    n_trials = 20_000
    sim = operating_characteristics(ThreePlusThree(), CURVE, n_trials, seed=20240601)
    exact = exact_operating_characteristics(ThreePlusThree(), CURVE)
    np.testing.assert_allclose(
        exact.p_select, three_plus_three_mtd_probabilities(CURVE), atol=1e-12
    )
    _assert_within_mc_error(sim, exact, n_trials)


def test_simulated_atd_matches_exact_enumeration():
    n_trials = 20_000
    rule = AcceleratedTitration(then=ThreePlusThree())
    sim = operating_characteristics(rule, CURVE, n_trials, seed=7)
    exact = exact_operating_characteristics(rule, CURVE)
    _assert_within_mc_error(sim, exact, n_trials)
    # ATD treats fewer patients than the plain 3+3 on a curve this flat at the bottom
    assert (
        exact.mean_patients < exact_operating_characteristics(ThreePlusThree(), CURVE).mean_patients
    )


class _Opaque:
    """A rule without the tally_sufficient declaration: the full tree is enumerated."""

    def __init__(self, rule):
        self.rule = rule
        self.name = rule.name

    def decide(self, history, n_levels):
        return self.rule.decide(history, n_levels)

    def max_sample_size(self, n_levels):
        return self.rule.max_sample_size(n_levels)


@pytest.mark.parametrize("rule", [ThreePlusThree(), AcceleratedTitration()])
def test_merged_enumeration_equals_full_tree(rule):
    probs = [0.1, 0.3, 0.5]
    merged = exact_operating_characteristics(rule, probs)
    full = exact_operating_characteristics(_Opaque(rule), probs)
    for attr in ("p_select", "p_treated", "mean_patients_per_level", "mean_dlt_per_level"):
        np.testing.assert_allclose(getattr(merged, attr), getattr(full, attr), atol=1e-13)
    assert merged.sd_patients == pytest.approx(full.sd_patients, abs=1e-12)


def test_summary_is_consistent_and_tabulated():
    oc = operating_characteristics(AcceleratedTitration(), CURVE, 500, seed=3)
    assert sum(oc.p_stop.values()) == pytest.approx(1)
    assert oc.p_stop[Decision.STOP_MTD_FOUND] == pytest.approx(oc.p_select.sum())
    assert oc.p_no_mtd == pytest.approx(
        oc.p_stop[Decision.STOP_TOO_TOXIC] + oc.p_stop[Decision.STOP_MAX_PATIENTS]
    )
    assert oc.mean_patients == pytest.approx(oc.mean_patients_per_level.sum())
    assert oc.mean_dlt == pytest.approx(oc.mean_dlt_per_level.sum())
    assert np.all(oc.se_select() >= 0) and oc.method == "simulation"
    frame = oc.to_frame()
    assert list(frame.columns) == [
        "true_dlt_prob",
        "p_select",
        "p_treated",
        "mean_patients",
        "mean_dlt",
    ]
    assert frame.index.name == "level" and frame.attrs["random_seed"] == 3
    again = operating_characteristics(AcceleratedTitration(), CURVE, 500, seed=3)
    np.testing.assert_array_equal(again.p_select, oc.p_select)
    exact = exact_operating_characteristics(ThreePlusThree(), CURVE)
    assert exact.n_trials is None and np.all(exact.se_select() == 0)


def test_sample_size_cap_in_characteristics():
    exact = exact_operating_characteristics(ThreePlusThree(), [0.0, 0.0, 0.0], max_patients=6)
    assert exact.p_stop[Decision.STOP_MAX_PATIENTS] == 1.0 and exact.mean_patients == 6
    sim = operating_characteristics(ThreePlusThree(), [0.0, 0.0, 0.0], 50, 1, max_patients=6)
    assert sim.p_no_mtd == 1.0 and sim.max_patients == 6


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_trials"):
        operating_characteristics(ThreePlusThree(), CURVE, 0, seed=1)
    with pytest.raises(ValueError, match="1-D"):
        exact_operating_characteristics(ThreePlusThree(), [[0.1, 0.2]])
