"""Accelerated titration: single patients until the trigger, then the follow-on rule."""

from __future__ import annotations

import pytest

from ckmodel.design import (
    AcceleratedTitration,
    Cohort,
    Decision,
    ThreePlusThree,
    ToxicityTrigger,
    next_decision,
    run_escalation,
)

D = Decision


def decisions(result):
    return [s.decision for s in result.steps[1:]]


def test_switches_at_first_dlt_and_counts_the_trigger_patient(scripted):
    # ATD 0/1, 0/1, 1/1 at level 2 -> switch: 2 more at level 2 (1/3) -> +3 (1/6) -> escalate;
    # level 3: 0/3 -> top cleared -> MTD 3
    sampler = scripted({0: [0], 1: [0], 2: [1, 0, 0, 0, 0, 0], 3: [0, 0, 0]})
    res = run_escalation(AcceleratedTitration(then=ThreePlusThree()), sampler, 4, 40, rng=0)
    assert decisions(res) == [
        D.ESCALATE,
        D.ESCALATE,
        D.SWITCH,
        D.STAY,
        D.ESCALATE,
        D.STOP_MTD_FOUND,
    ]
    assert [(c.level, c.n, c.n_dlt, c.phase) for c in res.cohorts] == [
        (0, 1, 0, "ATD"),
        (1, 1, 0, "ATD"),
        (2, 1, 1, "ATD"),
        (2, 2, 0, "3+3"),
        (2, 3, 0, "3+3"),
        (3, 3, 0, "3+3"),
    ]
    assert res.mtd == 3 and res.n_patients == 11
    assert res.patients["phase"].tolist() == ["ATD"] * 3 + ["3+3"] * 8
    switch = res.steps[3]
    assert switch.decision is D.SWITCH_TO_3PLUS3  # alias of SWITCH
    assert (switch.next_level, switch.cohort_size, switch.phase) == (2, 2, "3+3")
    assert switch.reason == (
        "ATD: level 2: 1/1 DLT, first DLT -> switch to 3+3: level 2: 1/1 DLT -> treat 2 more at "
        "level 2 (complete a cohort of 3)"
    )


def test_trigger_level_too_toxic_de_escalates_to_an_atd_level(scripted):
    # DLT at level 2, 2/3 there -> level 1 has one ATD patient: 2 more, then 3 more -> MTD 1
    sampler = scripted({0: [0], 1: [0, 0, 0, 0, 1, 0], 2: [1, 1, 0]})
    res = run_escalation(AcceleratedTitration(), sampler, 4, 40, rng=0)
    assert decisions(res) == [
        D.ESCALATE,
        D.ESCALATE,
        D.SWITCH,
        D.DE_ESCALATE,
        D.STAY,
        D.STOP_MTD_FOUND,
    ]
    assert [(c.level, c.n) for c in res.cohorts] == [(0, 1), (1, 1), (2, 1), (2, 2), (1, 2), (1, 3)]
    assert res.mtd == 1 and res.n_patients == 10


def test_dlt_in_first_patient_and_lowest_level_too_toxic(scripted):
    res = run_escalation(AcceleratedTitration(), scripted({0: [1, 0, 1]}), 4, 40, rng=0)
    assert decisions(res) == [D.SWITCH, D.STOP_TOO_TOXIC]
    assert res.mtd is None and res.n_patients == 3


def test_top_level_without_trigger_switches_so_the_mtd_has_three(scripted):
    sampler = scripted({0: [0], 1: [0], 2: [0, 0, 0]})
    res = run_escalation(AcceleratedTitration(), sampler, 3, 40, rng=0)
    assert decisions(res) == [D.ESCALATE, D.ESCALATE, D.SWITCH, D.STOP_MTD_FOUND]
    assert res.steps[3].reason.startswith("ATD: level 2: 0/1 DLT, top level reached")
    assert res.mtd == 2 and res.n_patients == 5


def test_grade_trigger_switches_on_grade_two_without_dlt(scripted):
    sampler = scripted(
        {0: [0], 1: [0, 0, 0], 2: [0, 0, 0]}, grades={0: [1], 1: [2, 0, 1], 2: [0, 1, 3]}
    )
    rule = AcceleratedTitration(then=ThreePlusThree(), trigger=ToxicityTrigger(min_grade=2))
    res = run_escalation(rule, sampler, 3, 40, rng=0)
    assert decisions(res) == [D.ESCALATE, D.SWITCH, D.ESCALATE, D.STOP_MTD_FOUND]
    assert res.steps[2].reason.startswith(
        "ATD: level 1: 0/1 DLT, first DLT or 1 patient(s) with grade >= 2 toxicity -> switch"
    )
    assert res.patients["grade"].tolist() == [1, 2, 0, 1, 0, 1, 3]
    assert res.mtd == 2


def test_simon_design_two_trigger_needs_a_second_grade_two():
    trigger = ToxicityTrigger(min_grade=2, n_events=2)
    rule = AcceleratedTitration(trigger=trigger)
    one = [Cohort(0, 1, 0, "ATD", (2,))]
    assert next_decision(one, rule, n_levels=4).decision is D.ESCALATE
    two = [*one, Cohort(1, 1, 0, "ATD", (3,))]
    assert next_decision(two, rule, n_levels=4).decision is D.SWITCH
    dlt = [Cohort(0, 1, 1, "ATD", (3,))]
    assert next_decision(dlt, rule, n_levels=4).decision is D.SWITCH


def test_grade_trigger_without_grades_is_an_error():
    rule = AcceleratedTitration(trigger=ToxicityTrigger(min_grade=2))
    with pytest.raises(ValueError, match="needs toxicity grades"):
        next_decision([Cohort(0, 1, 0, "ATD")], rule, n_levels=3)


def test_callable_trigger_and_custom_follow_on_rule():
    rule = AcceleratedTitration(
        then=ThreePlusThree(six_at_mtd=False), trigger=lambda atd: len(atd) >= 2
    )
    assert rule.name == "ATD -> 3+3"
    assert not rule.tally_sufficient
    h = [Cohort(0, 1, 0, "ATD"), Cohort(1, 1, 0, "ATD")]
    step = next_decision(h, rule, n_levels=5)
    assert (step.decision, step.next_level, step.cohort_size) == (D.SWITCH, 1, 2)
    # after the switch every decision is the follow-on rule's
    h += [Cohort(1, 2, 0, "3+3")]
    assert next_decision(h, rule, n_levels=5) == next_decision(h, rule.then, n_levels=5)


def test_start_and_validation():
    step = next_decision([], AcceleratedTitration(start_level=1), n_levels=3)
    assert (step.decision, step.next_level, step.cohort_size, step.phase) == (D.START, 1, 1, "ATD")
    with pytest.raises(ValueError, match="trigger"):
        AcceleratedTitration(trigger="grade2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="follows the switch"):
        next_decision(
            [Cohort(0, 3, 0, "3+3"), Cohort(1, 1, 0, "ATD")], AcceleratedTitration(), n_levels=3
        )
    with pytest.raises(ValueError, match="min_grade"):
        ToxicityTrigger(min_grade=0)
