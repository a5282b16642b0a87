"""Cohort, Step and Decision records; next_decision's contract; tally sufficiency."""

from __future__ import annotations

import doctest
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ckmodel.design as design
from ckmodel.design import (
    AcceleratedTitration,
    Cohort,
    Decision,
    EscalationRule,
    Step,
    ThreePlusThree,
    bernoulli_sampler,
    characteristics,
    next_decision,
    records,
    rules,
    run_escalation,
    runner,
    tally_key,
)


def test_public_namespace():
    assert sorted(design.__all__) == sorted(set(design.__all__))
    for name in design.__all__:
        assert hasattr(design, name), name
    assert isinstance(ThreePlusThree(), EscalationRule)
    assert isinstance(AcceleratedTitration(), EscalationRule)


@pytest.mark.parametrize("module", [records, rules, runner, characteristics])
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_decision_aliases_and_stops():
    assert Decision.SWITCH_TO_3PLUS3 is Decision.SWITCH
    assert Decision.DECLARE_MTD is Decision.STOP_MTD_FOUND
    stops = {d for d in Decision if d.is_stop}
    assert stops == {Decision.STOP_MTD_FOUND, Decision.STOP_TOO_TOXIC, Decision.STOP_MAX_PATIENTS}
    assert Decision("escalate") is Decision.ESCALATE


def test_cohort_validation_and_normalisation():
    c = Cohort(np.int64(1), np.int32(3), np.int64(1), grades=[0, 3, 1])
    assert (type(c.level), c.grades) == (int, (0, 3, 1))
    assert hash(c) == hash(Cohort(1, 3, 1, grades=(0, 3, 1)))
    for kwargs, match in [
        (dict(level=-1, n=3, n_dlt=0), "level"),
        (dict(level=0, n=0, n_dlt=0), "at least one"),
        (dict(level=0, n=3, n_dlt=4), "n_dlt"),
        (dict(level=0, n=3, n_dlt=0, phase=""), "phase"),
        (dict(level=0, n=2, n_dlt=0, grades=(1,)), "grades"),
        (dict(level=0, n=1, n_dlt=0, grades=(6,)), "between 0 and 5"),
    ]:
        with pytest.raises(ValueError, match=match):
            Cohort(**kwargs)
    with pytest.raises(TypeError, match="integer"):
        Cohort(0.5, 3, 0)  # type: ignore[arg-type]


def test_step_validation():
    with pytest.raises(ValueError, match="treats nobody"):
        Step(Decision.STOP_TOO_TOXIC, "x", next_level=0)
    with pytest.raises(ValueError, match="mtd is set exactly"):
        Step(Decision.STOP_MTD_FOUND, "x")
    with pytest.raises(ValueError, match="needs a level"):
        Step(Decision.ESCALATE, "x", next_level=1, cohort_size=0, phase="3+3")
    with pytest.raises(ValueError, match="phase"):
        Step(Decision.STAY, "x", next_level=1, cohort_size=3)
    assert Step("stop_too_toxic", "x").decision is Decision.STOP_TOO_TOXIC


class _BadRule:
    name = "bad"

    def __init__(self, step):
        self.step = step

    def decide(self, history, n_levels):
        return self.step

    def max_sample_size(self, n_levels):
        return 10


def test_next_decision_checks_rule_output():
    with pytest.raises(ValueError, match="asked for level 5"):
        next_decision([], _BadRule(Step(Decision.START, "x", 5, 3, "3+3")), n_levels=3)
    with pytest.raises(ValueError, match="declared MTD level 4"):
        next_decision([], _BadRule(Step(Decision.STOP_MTD_FOUND, "x", mtd=4)), n_levels=3)
    with pytest.raises(TypeError, match="expected Step"):
        next_decision([], _BadRule("escalate"), n_levels=3)
    with pytest.raises(TypeError, match="expected Cohort"):
        next_decision([(0, 3, 0)], ThreePlusThree(), n_levels=3)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="n_levels"):
        next_decision([], ThreePlusThree(), n_levels=0)


@settings(max_examples=60, deadline=None)
@given(
    use_atd=st.booleans(),
    probs=st.lists(st.sampled_from([0.0, 0.1, 0.3, 0.6, 1.0]), min_size=2, max_size=6),
    seed=st.integers(0, 10_000),
)
def test_tally_sufficient_rules_ignore_cohort_order(use_atd, probs, seed):
    # the exact enumerator merges histories with equal tally_key; that is only valid if the
    # rule's decision does not change when the cohorts before the last are reordered
    rule = AcceleratedTitration() if use_atd else ThreePlusThree()
    assert rule.tally_sufficient
    res = run_escalation(rule, bernoulli_sampler(probs), len(probs), None, rng=seed)
    shuffle = random.Random(seed).shuffle
    for i in range(2, len(res.cohorts) + 1):
        head = list(res.cohorts[: i - 1])
        shuffle(head)
        permuted = (*head, res.cohorts[i - 1])
        assert tally_key(permuted) == tally_key(res.cohorts[:i])
        a = next_decision(permuted, rule, n_levels=len(probs))
        b = res.steps[i]
        assert (a.decision, a.next_level, a.cohort_size, a.phase, a.mtd) == (
            b.decision,
            b.next_level,
            b.cohort_size,
            b.phase,
            b.mtd,
        )
