"""Dose-escalation designs and their operating characteristics.

Rule-based designs for phase I dose finding (accelerated titration, 3+3) as immutable rule
objects with a pure ``decide(history, n_levels)``; a trial runner that plugs in any DLT sampler
(e.g. DLTs derived from simulated CAR-T exposure); and operating characteristics by simulation,
by exact enumeration, and in closed form for the 3+3.
"""

from __future__ import annotations

from ckmodel.design.characteristics import (
    OperatingCharacteristics,
    exact_operating_characteristics,
    operating_characteristics,
    three_plus_three_escalation_probability,
    three_plus_three_mtd_probabilities,
)
from ckmodel.design.records import (
    PHASE_3PLUS3,
    PHASE_ATD,
    Cohort,
    Decision,
    EscalationRule,
    Step,
    level_tallies,
    next_decision,
    tally_key,
)
from ckmodel.design.rules import AcceleratedTitration, ThreePlusThree, ToxicityTrigger
from ckmodel.design.runner import (
    DltSampler,
    EscalationResult,
    bernoulli_sampler,
    run_escalation,
)

__all__ = [
    "PHASE_3PLUS3",
    "PHASE_ATD",
    "AcceleratedTitration",
    "Cohort",
    "Decision",
    "DltSampler",
    "EscalationResult",
    "EscalationRule",
    "OperatingCharacteristics",
    "Step",
    "ThreePlusThree",
    "ToxicityTrigger",
    "bernoulli_sampler",
    "exact_operating_characteristics",
    "level_tallies",
    "next_decision",
    "operating_characteristics",
    "run_escalation",
    "tally_key",
    "three_plus_three_escalation_probability",
    "three_plus_three_mtd_probabilities",
]
