"""Hand-worked 3+3 trials: each DLT pattern gives one exact decision sequence and MTD."""

from __future__ import annotations

import pytest

from ckmodel.design import Cohort, Decision, ThreePlusThree, next_decision, run_escalation

D = Decision


def decisions(result):
    return [s.decision for s in result.steps[1:]]


def test_brief_sequence_escalate_expand_escalate_then_mtd_below(scripted):
    # 0/3 -> escalate; 1/3 -> +3; 1/6 -> escalate; 2/3 -> exceeds MTD; level 1 has 1/6 -> MTD 1
    sampler = scripted({0: [0, 0, 0], 1: [1, 0, 0, 0, 0, 0], 2: [1, 1, 0]})
    res = run_escalation(ThreePlusThree(), sampler, 4, 30, rng=0)
    assert decisions(res) == [D.ESCALATE, D.STAY, D.ESCALATE, D.STOP_MTD_FOUND]
    assert res.mtd == 1
    assert res.stop is D.STOP_MTD_FOUND
    assert res.n_patients == 12 and res.n_dlt == 3
    assert [(c.level, c.n, c.n_dlt) for c in res.cohorts] == [
        (0, 3, 0),
        (1, 3, 1),
        (1, 3, 0),
        (2, 3, 2),
    ]
    assert res.stop_reason == (
        "level 2: 2/3 DLT exceeds the MTD; level 1 has 1/6 DLT -> MTD = level 1"
    )
    assert sampler.used == {0: 3, 1: 6, 2: 3}


def test_reasons_are_explicit():
    rule = ThreePlusThree()
    cases = {
        (Cohort(0, 3, 0),): "level 0: 0/3 DLT -> escalate to level 1",
        (Cohort(0, 3, 1),): "level 0: 1/3 DLT -> treat 3 more at level 0 (expand to 6)",
        (Cohort(0, 3, 1), Cohort(0, 3, 0)): "level 0: 1/6 DLT -> escalate to level 1",
        (Cohort(0, 3, 2),): "level 0: 2/3 DLT exceeds the MTD; level 0 is the lowest dose -> "
        "stop, no MTD",
    }
    for history, reason in cases.items():
        assert next_decision(history, rule, n_levels=3).reason == reason
    start = next_decision([], rule, n_levels=3)
    assert (start.decision, start.next_level, start.cohort_size) == (D.START, 0, 3)


def test_de_escalation_expands_a_level_with_three_before_declaring_it(scripted):
    # 0/3, 0/3, 2/3 -> back to level 1 for 3 more; 0/6 -> MTD 1
    sampler = scripted({0: [0, 0, 0], 1: [0, 0, 0, 0, 1, 0], 2: [0, 1, 1]})
    res = run_escalation(ThreePlusThree(), sampler, 4, 30, rng=0)
    assert decisions(res) == [D.ESCALATE, D.ESCALATE, D.DE_ESCALATE, D.STOP_MTD_FOUND]
    assert res.mtd == 1 and res.n_patients == 12
    assert res.steps[3].reason == (
        "level 2: 2/3 DLT exceeds the MTD -> de-escalate: treat 3 more at level 1 (0/3 DLT so far)"
    )


def test_without_six_at_mtd_a_zero_of_three_level_is_declared_at_once(scripted):
    sampler = scripted({0: [0, 0, 0], 1: [0, 0, 0], 2: [1, 1, 1]})
    res = run_escalation(ThreePlusThree(six_at_mtd=False), sampler, 4, 30, rng=0)
    assert decisions(res) == [D.ESCALATE, D.ESCALATE, D.STOP_MTD_FOUND]
    assert res.mtd == 1 and res.n_patients == 9


def test_de_escalation_chain_down_to_level_zero(scripted):
    # level 2 fails at 2/6, level 1 fails its confirmation (2/6), level 0 confirms at 1/6
    sampler = scripted({0: [0, 0, 0, 1, 0, 0], 1: [0, 0, 0, 1, 1, 0], 2: [1, 0, 0, 0, 1, 0]})
    res = run_escalation(ThreePlusThree(), sampler, 3, 30, rng=0)
    assert decisions(res) == [
        D.ESCALATE,
        D.ESCALATE,
        D.STAY,
        D.DE_ESCALATE,
        D.DE_ESCALATE,
        D.STOP_MTD_FOUND,
    ]
    assert [c.level for c in res.cohorts] == [0, 1, 2, 2, 1, 0]
    assert res.mtd == 0 and res.n_patients == 18


@pytest.mark.parametrize(
    ("script", "n_patients"),
    [
        ({0: [1, 1, 0]}, 3),  # 2/3 at the lowest level
        ({0: [1, 0, 0, 0, 1, 0]}, 6),  # 2/6 at the lowest level
        ({0: [0, 0, 0, 1, 0, 1], 1: [1, 1, 1]}, 9),  # level 1 too toxic, level 0 fails at 2/6
    ],
)
def test_lowest_level_too_toxic_stops_without_mtd(scripted, script, n_patients):
    res = run_escalation(ThreePlusThree(), scripted(script), 4, 30, rng=0)
    assert res.stop is D.STOP_TOO_TOXIC
    assert res.mtd is None and res.n_patients == n_patients
    assert res.stop_reason.endswith("level 0 is the lowest dose -> stop, no MTD")


def test_top_level_safe_at_zero_of_three_is_declared(scripted):
    res = run_escalation(ThreePlusThree(), scripted({k: [0, 0, 0] for k in range(3)}), 3, 30)
    assert decisions(res) == [D.ESCALATE, D.ESCALATE, D.STOP_MTD_FOUND]
    assert res.mtd == 2 and res.n_patients == 9
    assert res.stop_reason == (
        "level 2: 0/3 DLT and the top level -> MTD = level 2 "
        "(MTD not reached within the dose range)"
    )


def test_top_level_safe_at_one_of_six_is_declared(scripted):
    sampler = scripted({0: [0, 0, 0], 1: [0, 1, 0, 0, 0, 0]})
    res = run_escalation(ThreePlusThree(), sampler, 2, 30)
    assert decisions(res) == [D.ESCALATE, D.STAY, D.STOP_MTD_FOUND]
    assert res.mtd == 1 and res.n_patients == 9


def test_six_at_top_expands_the_top_level_first(scripted):
    sampler = scripted({0: [0, 0, 0], 1: [0, 0, 0, 1, 0, 0]})
    res = run_escalation(ThreePlusThree(six_at_top=True), sampler, 2, 30)
    assert decisions(res) == [D.ESCALATE, D.STAY, D.STOP_MTD_FOUND]
    assert res.mtd == 1 and res.n_patients == 9
    # ... and de-escalates when the expansion shows 2/6
    sampler = scripted({0: [0, 0, 0, 0, 0, 0], 1: [0, 0, 0, 1, 1, 0]})
    res = run_escalation(ThreePlusThree(six_at_top=True), sampler, 2, 30)
    assert decisions(res) == [D.ESCALATE, D.STAY, D.DE_ESCALATE, D.STOP_MTD_FOUND]
    assert res.mtd == 0 and res.n_patients == 12


def test_single_level_grid():
    rule = ThreePlusThree()
    assert next_decision([Cohort(0, 3, 0)], rule, n_levels=1).mtd == 0
    assert next_decision([Cohort(0, 3, 1)], rule, n_levels=1).decision is D.STAY
    assert next_decision([Cohort(0, 3, 2)], rule, n_levels=1).decision is D.STOP_TOO_TOXIC


def test_start_level_above_zero_can_de_escalate_to_a_fresh_level(scripted):
    # start at 2: 2/3 -> level 1 is untreated: 3 patients; 0/3 -> confirm with 6 -> MTD 1
    sampler = scripted({1: [0, 0, 0, 0, 0, 0], 2: [1, 1, 0]})
    res = run_escalation(ThreePlusThree(start_level=2), sampler, 4, 30)
    assert [c.level for c in res.cohorts] == [2, 1, 1]
    assert decisions(res) == [D.DE_ESCALATE, D.STAY, D.STOP_MTD_FOUND]
    assert res.mtd == 1


def test_never_returns_to_a_toxic_level():
    # level 1 at 2/6 is closed even though level 0 is cleared again later
    history = [Cohort(0, 3, 0), Cohort(1, 3, 1), Cohort(1, 3, 1), Cohort(0, 3, 0)]
    step = next_decision(history, ThreePlusThree(), n_levels=3)
    assert step.decision is D.STOP_MTD_FOUND and step.mtd == 0


def test_invalid_configuration():
    with pytest.raises(ValueError, match="start_level"):
        ThreePlusThree(start_level=-1)
    with pytest.raises(ValueError, match="outside"):
        next_decision([], ThreePlusThree(start_level=3), n_levels=3)
    with pytest.raises(ValueError, match="grid has 2"):
        next_decision([Cohort(2, 3, 0)], ThreePlusThree(), n_levels=2)
