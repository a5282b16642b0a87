"""The trial runner: patient table, determinism, sample-size cap, invariants (hypothesis)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ckmodel.design import (
    AcceleratedTitration,
    Decision,
    ThreePlusThree,
    bernoulli_sampler,
    level_tallies,
    run_escalation,
)

PROBS = [0.05, 0.1, 0.2, 0.35, 0.5]


def test_patient_table_layout(scripted):
    sampler = scripted({0: [0], 1: [1, 0, 0, 0, 0, 0], 2: [1, 1, 0]})
    res = run_escalation(AcceleratedTitration(), sampler, 3, 40, rng=5)
    df = res.patients
    assert list(df.columns) == [
        "patient",
        "cohort",
        "phase",
        "level",
        "dlt",
        "grade",
        "decision",
        "next_level",
        "reason",
    ]
    assert df["patient"].tolist() == list(range(1, 11))
    assert df["cohort"].tolist() == [1, 2, 3, 3, 4, 4, 4, 5, 5, 5]
    assert df["level"].tolist() == [0, 1, 1, 1, 1, 1, 1, 2, 2, 2]
    assert df["dlt"].tolist() == [0, 1, 0, 0, 0, 0, 0, 1, 1, 0]
    assert df["decision"].tolist()[-3:] == ["stop_mtd_found"] * 3
    assert df["next_level"].isna().tolist() == [False] * 7 + [True] * 3
    assert df["grade"].isna().all()
    assert df.attrs["random_seed"] == 5
    assert len(res.steps) == len(res.cohorts) + 1
    assert res.mtd == 1


def test_deterministic_for_a_seed():
    rule = AcceleratedTitration(then=ThreePlusThree())
    sampler = bernoulli_sampler(PROBS)
    runs = [run_escalation(rule, sampler, 5, 30, rng=123) for _ in range(2)]
    pd.testing.assert_frame_equal(runs[0].patients, runs[1].patients)
    assert runs[0].mtd == runs[1].mtd and runs[0].stop_reason == runs[1].stop_reason
    gen = run_escalation(rule, sampler, 5, 30, rng=np.random.default_rng(123))
    pd.testing.assert_frame_equal(
        gen.patients.drop(columns=[]), runs[0].patients, check_flags=False
    )
    others = [run_escalation(rule, sampler, 5, 30, rng=s).patients for s in range(5)]
    assert any(not o.equals(runs[0].patients) for o in others)


def test_max_patients_stops_before_an_incomplete_cohort(scripted):
    sampler = scripted({0: [0, 0, 0], 1: [0, 0, 0], 2: [0, 0, 0]})
    res = run_escalation(ThreePlusThree(), sampler, 5, 8, rng=0)
    assert res.stop is Decision.STOP_MAX_PATIENTS and res.mtd is None
    assert res.n_patients == 6
    assert res.stop_reason.startswith(
        "maximum sample size reached (6 of 8 treated); the rule asked for 3 more at level 2"
    )
    empty = run_escalation(ThreePlusThree(), sampler, 5, 0, rng=0)
    assert empty.n_patients == 0 and empty.stop is Decision.STOP_MAX_PATIENTS
    assert empty.patients["level"].dtype == np.int64


def test_default_cap_is_the_rule_bound():
    assert ThreePlusThree().max_sample_size(5) == 30
    assert AcceleratedTitration().max_sample_size(5) == 35
    res = run_escalation(ThreePlusThree(), bernoulli_sampler([0.0] * 5), 5, None, rng=0)
    assert res.mtd == 4 and res.n_patients == 15


@pytest.mark.parametrize(
    ("output", "match"),
    [
        (lambda lvl, n, rng: np.zeros(n + 1), "must return"),
        (lambda lvl, n, rng: np.full(n, 2), "must return"),
        (lambda lvl, n, rng: (np.zeros(n), np.full(n, 7)), "grades"),
        (lambda lvl, n, rng: (np.zeros(n), np.zeros(n), np.zeros(n)), "pair"),
    ],
)
def test_sampler_output_is_checked(output, match):
    with pytest.raises(ValueError, match=match):
        run_escalation(ThreePlusThree(), output, 3, 10, rng=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_patients"):
        run_escalation(ThreePlusThree(), bernoulli_sampler(PROBS), 5, -1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bernoulli_sampler([0.1, 1.2])


rules = st.builds(
    ThreePlusThree,
    six_at_mtd=st.booleans(),
    six_at_top=st.booleans(),
    start_level=st.integers(0, 2),
) | st.builds(
    AcceleratedTitration,
    then=st.builds(ThreePlusThree, six_at_mtd=st.booleans(), six_at_top=st.booleans()),
    start_level=st.integers(0, 2),
)


@settings(max_examples=120, deadline=None)
@given(
    rule=rules,
    probs=st.lists(st.sampled_from([0.0, 0.05, 0.2, 0.35, 0.5, 0.8, 1.0]), min_size=3, max_size=7),
    max_patients=st.integers(0, 45),
    seed=st.integers(0, 2**32 - 1),
)
def test_runner_invariants(rule, probs, max_patients, seed):
    n_levels = len(probs)
    res = run_escalation(rule, bernoulli_sampler(probs), n_levels, max_patients, rng=seed)
    cohorts = res.cohorts
    # never more than max_patients
    assert res.n_patients == sum(c.n for c in cohorts) <= max_patients
    assert res.stop.is_stop and res.stop_reason
    if cohorts:
        assert cohorts[0].level == rule.start_level
    highest = -1
    for i, cohort in enumerate(cohorts):
        n, d = level_tallies(cohorts[:i], n_levels)
        if i:
            # escalation moves one level at a time and never skips an untried level
            assert cohort.level <= cohorts[i - 1].level + 1
            assert cohort.level <= highest + 1
            # never (re-)enters a level, or a level above one, already shown too toxic
            toxic = np.flatnonzero(d >= 2)
            assert toxic.size == 0 or cohort.level < toxic[0]
            step = res.steps[i]
            if step.decision is Decision.ESCALATE:
                assert cohort.level == cohorts[i - 1].level + 1
            if step.decision is Decision.DE_ESCALATE:
                assert cohort.level < cohorts[i - 1].level
        highest = max(highest, cohort.level)
    n, d = level_tallies(cohorts, n_levels)
    assert (n <= 6).all()  # 3+3 (with or without ATD) treats at most 6 per level
    if res.mtd is not None:
        m = res.mtd
        assert d[m] <= 1 and n[m] >= 3
        assert m == n_levels - 1 or d[m + 1] >= 2
        then = rule.then if isinstance(rule, AcceleratedTitration) else rule
        if m < n_levels - 1 and then.six_at_mtd or m == n_levels - 1 and then.six_at_top:
            assert n[m] >= 6
        if m < n_levels - 1 and d[m] == 0 and n[m] < 6:
            assert not then.six_at_mtd
    if res.stop is Decision.STOP_TOO_TOXIC:
        assert d[0] >= 2
    if res.stop is Decision.STOP_MAX_PATIENTS:
        wanted = int(res.stop_reason.split("asked for ")[1].split()[0])
        assert res.n_patients + wanted > max_patients
